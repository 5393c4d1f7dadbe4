"""A stack of encoder blocks, with access to every layer's output."""

from __future__ import annotations

import keras

from kvmm.layers.encoder_block import TransformerEncoderBlock
from kvmm.layers.sublayer import call_sublayer


@keras.saving.register_keras_serializable(package="kvmm")
class TransformerEncoder(keras.layers.Layer):
    """``num_layers`` :class:`TransformerEncoderBlock` s applied in turn (pre-LN, or
    post-LN with ``norm_first=False``).

    Call arguments:
        x: ``(batch, length, hidden_dim)``.
        padding_mask: optional ``(batch, length)`` mask of tokens to attend to.
        is_causal: causal self-attention in every block.
        return_hidden_states: also return the list of the input and every block's
            output (``num_layers + 1`` tensors), indexed like transformers'
            ``output_hidden_states``.
    """

    def __init__(
        self,
        num_layers: int,
        hidden_dim: int,
        num_heads: int,
        intermediate_dim: int,
        activation: str = "gelu_tanh",
        layer_norm_epsilon: float = 1e-6,
        norm_first: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.norm_first = bool(norm_first)
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.blocks = [
            TransformerEncoderBlock(
                hidden_dim,
                num_heads,
                intermediate_dim,
                activation=activation,
                layer_norm_epsilon=layer_norm_epsilon,
                norm_first=norm_first,
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)
        self.built = True

    def call(self, x, padding_mask=None, is_causal=False, return_hidden_states=False):
        hidden_states = [x]
        for block in self.blocks:
            x = call_sublayer(block, x, padding_mask=padding_mask, is_causal=is_causal)
            hidden_states.append(x)
        return (x, hidden_states) if return_hidden_states else x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_layers=self.num_layers,
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            norm_first=self.norm_first,
        )
        return config
