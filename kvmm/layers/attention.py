"""Multi-head attention on top of ``keras.ops.dot_product_attention``.

Going through the fused op lets every backend pick its best kernel (XLA's fused
attention on JAX, ``scaled_dot_product_attention`` / flash attention on PyTorch).
"""

from __future__ import annotations

import keras
from keras import ops
from kvmm.layers.initialization import initializer


@keras.saving.register_keras_serializable(package="kvmm")
class MultiHeadAttention(keras.layers.Layer):
    """Self- or cross-attention with separate query/key/value/output projections.

    Args:
        hidden_dim: model width (query/key/value/output width).
        num_heads: number of heads; must divide ``hidden_dim``.
        use_bias: whether the four projections have biases.
        key_dim: width of the key/value *inputs* for cross-attention (defaults to
            ``hidden_dim``).

    Call arguments:
        query: ``(batch, query_length, hidden_dim)``.
        key_value: ``(batch, kv_length, key_dim)``; defaults to ``query`` (self-attention).
        padding_mask: optional ``(batch, kv_length)``; truthy entries are attended to.
        is_causal: apply a causal mask (text towers of CLIP-style models).
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        use_bias: bool = True,
        key_dim: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})."
            )
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.head_dim = hidden_dim // num_heads
        self.use_bias = use_bias
        self.key_dim = key_dim
        dense = dict(
            use_bias=use_bias,
            kernel_initializer=initializer("glorot_uniform"),
            dtype=self.dtype_policy,
        )
        self.query = keras.layers.Dense(hidden_dim, name="query", **dense)
        self.key = keras.layers.Dense(hidden_dim, name="key", **dense)
        self.value = keras.layers.Dense(hidden_dim, name="value", **dense)
        self.output_dense = keras.layers.Dense(hidden_dim, name="output", **dense)

    def build(self, query_shape, key_value_shape=None):
        key_value_shape = key_value_shape or tuple(query_shape[:-1]) + (
            self.key_dim or query_shape[-1],
        )
        self.query.build(query_shape)
        self.key.build(key_value_shape)
        self.value.build(key_value_shape)
        self.output_dense.build(tuple(query_shape[:-1]) + (self.hidden_dim,))
        self.built = True

    def _split_heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        return ops.reshape(x, (batch, length, self.num_heads, self.head_dim))

    def call(self, query, key_value=None, padding_mask=None, is_causal=False):
        key_value = query if key_value is None else key_value
        q = self._split_heads(self.query(query))
        k = self._split_heads(self.key(key_value))
        v = self._split_heads(self.value(key_value))
        mask = None
        if padding_mask is not None:
            mask = ops.cast(padding_mask, "bool")[:, None, None, :]
        x = ops.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal)
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.hidden_dim))
        return self.output_dense(x)

    def compute_output_shape(self, query_shape, key_value_shape=None):
        return tuple(query_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            use_bias=self.use_bias,
            key_dim=self.key_dim,
        )
        return config
