"""Image to patch tokens."""

from __future__ import annotations

import keras
from keras import ops
from kvmm.layers.initialization import initializer


@keras.saving.register_keras_serializable(package="kvmm")
class PatchEmbedding(keras.layers.Layer):
    """Non-overlapping ``patch_size`` patches projected to ``hidden_dim`` by a strided Conv2D.

    ``(batch, H, W, C)`` -> ``(batch, (H // p) * (W // p), hidden_dim)``, patches in
    row-major order (the order of PyTorch's ``flatten(2)`` on an NCHW conv output).
    """

    def __init__(self, hidden_dim: int, patch_size: int, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.patch_size = patch_size
        self.use_bias = use_bias
        self.projection = keras.layers.Conv2D(
            hidden_dim,
            kernel_size=patch_size,
            strides=patch_size,
            padding="valid",
            use_bias=use_bias,
            kernel_initializer=initializer("glorot_uniform"),
            data_format="channels_last",
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, input_shape):
        self.projection.build(input_shape)
        self.built = True

    def call(self, images):
        x = self.projection(images)
        batch = ops.shape(x)[0]
        return ops.reshape(x, (batch, -1, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[0], input_shape[1], input_shape[2]
        tokens = None
        if height is not None and width is not None:
            tokens = (height // self.patch_size) * (width // self.patch_size)
        return (batch, tokens, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim, patch_size=self.patch_size, use_bias=self.use_bias
        )
        return config
