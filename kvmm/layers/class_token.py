"""A learned class token prepended to a token sequence (CLIP, timm ViT)."""

from __future__ import annotations

import keras
from keras import ops

from kvmm.layers.initialization import initializer


@keras.saving.register_keras_serializable(package="kvmm")
class ClassToken(keras.layers.Layer):
    """``(batch, n, dim)`` -> ``(batch, 1 + n, dim)`` with a learned ``(dim,)`` vector first."""

    def __init__(self, hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim

    def build(self, input_shape=None):
        self.token = self.add_weight(
            shape=(self.hidden_dim,),
            initializer=initializer(keras.initializers.RandomNormal(stddev=self.hidden_dim**-0.5)),
            name="token",
        )
        self.built = True

    def call(self, x):
        batch = ops.shape(x)[0]
        token = ops.broadcast_to(ops.cast(self.token, x.dtype), (batch, 1, self.hidden_dim))
        return ops.concatenate([token, x], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim)
        return config
