"""Transformer encoder block: pre-LayerNorm (ViT / CLIP / SigLIP) or post-LayerNorm (BERT)."""

from __future__ import annotations

import keras

from kvmm.layers.attention import MultiHeadAttention
from kvmm.layers.mlp import MLP
from kvmm.layers.sublayer import call_sublayer


@keras.saving.register_keras_serializable(package="kvmm")
class TransformerEncoderBlock(keras.layers.Layer):
    """``x + attn(ln1(x))`` then ``x + mlp(ln2(x))`` (pre-LN, the default), or with
    ``norm_first=False`` ``ln1(x + attn(x))`` then ``ln2(x + mlp(x))`` (post-LN, BERT).

    Args:
        hidden_dim: model width.
        num_heads: attention heads.
        intermediate_dim: MLP hidden width.
        activation: MLP activation name (see :func:`kvmm.layers.get_activation`).
        layer_norm_epsilon: epsilon of both LayerNorms.
        use_bias: biases in the attention projections and the MLP.
        norm_first: pre-LN (True) or post-LN (False) residual blocks.

    Call arguments:
        x: ``(batch, length, hidden_dim)``.
        padding_mask: optional ``(batch, length)`` mask of tokens to attend to.
        is_causal: causal self-attention.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        intermediate_dim: int,
        activation: str = "gelu_tanh",
        layer_norm_epsilon: float = 1e-6,
        use_bias: bool = True,
        norm_first: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.norm_first = bool(norm_first)
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.use_bias = use_bias
        policy = self.dtype_policy
        self.layer_norm1 = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="layer_norm1"
        )
        self.attention = MultiHeadAttention(
            hidden_dim, num_heads, use_bias=use_bias, dtype=policy, name="attention"
        )
        self.layer_norm2 = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="layer_norm2"
        )
        self.mlp = MLP(
            hidden_dim, intermediate_dim, activation, use_bias=use_bias, dtype=policy, name="mlp"
        )

    def build(self, input_shape):
        for layer in (self.layer_norm1, self.attention, self.layer_norm2, self.mlp):
            layer.build(input_shape)
        self.built = True

    def call(self, x, padding_mask=None, is_causal=False):
        attend = lambda h: call_sublayer(  # noqa: E731
            self.attention, h, padding_mask=padding_mask, is_causal=is_causal)
        if not self.norm_first:
            x = call_sublayer(self.layer_norm1, x + attend(x))
            return call_sublayer(self.layer_norm2, x + call_sublayer(self.mlp, x))
        x = x + attend(call_sublayer(self.layer_norm1, x))
        return x + call_sublayer(self.mlp, call_sublayer(self.layer_norm2, x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            use_bias=self.use_bias,
            norm_first=self.norm_first,
        )
        return config
