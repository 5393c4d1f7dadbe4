"""Multihead attention pooling ("MAP") head: a learned probe attends to all tokens."""

from __future__ import annotations

import keras
from keras import ops

from kvmm.layers.attention import MultiHeadAttention
from kvmm.layers.initialization import initializer
from kvmm.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="kvmm")
class AttentionPoolingHead(keras.layers.Layer):
    """Pools ``(batch, tokens, dim)`` to ``(batch, dim)`` as SigLIP's vision head does.

    ``h = attn(probe, x)``; ``h = h + mlp(ln(h))``; return ``h[:, 0]``.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        intermediate_dim: int,
        activation: str = "gelu_tanh",
        layer_norm_epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        policy = self.dtype_policy
        self.attention = MultiHeadAttention(hidden_dim, num_heads, dtype=policy, name="attention")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="layer_norm"
        )
        self.mlp = MLP(hidden_dim, intermediate_dim, activation, dtype=policy, name="mlp")

    def build(self, input_shape):
        self.probe = self.add_weight(
            shape=(1, 1, self.hidden_dim), initializer=initializer("glorot_uniform"), name="probe"
        )
        probe_shape = (input_shape[0], 1, self.hidden_dim)
        self.attention.build(probe_shape, input_shape)
        self.layer_norm.build(probe_shape)
        self.mlp.build(probe_shape)
        self.built = True

    def call(self, x):
        batch = ops.shape(x)[0]
        probe = ops.broadcast_to(ops.cast(self.probe, x.dtype), (batch, 1, self.hidden_dim))
        h = self.attention(probe, key_value=x)
        h = h + self.mlp(self.layer_norm(h))
        return h[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config
