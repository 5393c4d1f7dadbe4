"""Two-layer feed-forward block of a transformer."""

from __future__ import annotations

import keras

from kvmm.layers.activations import get_activation
from kvmm.layers.dense import Dense
from kvmm.layers.initialization import initializer
from kvmm.layers.sublayer import call_sublayer


@keras.saving.register_keras_serializable(package="kvmm")
class MLP(keras.layers.Layer):
    """``fc2(activation(fc1(x)))``.

    Args:
        hidden_dim: input and output width.
        intermediate_dim: width of the hidden layer.
        activation: ``"gelu_tanh"``, ``"gelu"`` or ``"quick_gelu"``.
        use_bias: whether both Dense layers have a bias.
    """

    def __init__(
        self,
        hidden_dim: int,
        intermediate_dim: int,
        activation: str = "gelu_tanh",
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.use_bias = use_bias
        self._activation_fn = get_activation(activation)
        self.fc1 = Dense(
            intermediate_dim,
            use_bias=use_bias,
            kernel_initializer=initializer("glorot_uniform"),
            dtype=self.dtype_policy,
            name="fc1",
        )
        self.fc2 = Dense(
            hidden_dim,
            use_bias=use_bias,
            kernel_initializer=initializer("glorot_uniform"),
            dtype=self.dtype_policy,
            name="fc2",
        )

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        self.built = True

    def call(self, x):
        return call_sublayer(self.fc2, self._activation_fn(call_sublayer(self.fc1, x)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            use_bias=self.use_bias,
        )
        return config
