"""Projectors mapping vision features ``(batch, tokens, dim)`` to a language model's width."""

from __future__ import annotations

import keras
from keras import ops

from kvmm.layers import MLP, Dense, MultiHeadAttention, get_activation


def _dense(units, policy, name, use_bias=True):
    return Dense(units, use_bias=use_bias, dtype=policy, name=name)


def _norm(policy, name):
    return keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name=name)


@keras.saving.register_keras_serializable(package="kvmm")
class MLPProjector(keras.layers.Layer):
    """LLaVA's ``mlpNx_gelu``: ``depth`` Dense layers with GELU (exact) between them.

    Args:
        output_dim: the language model's width (LLaVA ``hidden_size``).
        depth: number of Dense layers (``mlp2x_gelu`` -> 2; 1 is LLaVA's ``linear``).
        hidden_dim: width of the inner layers (default ``output_dim``, as LLaVA).
        activation: activation between layers: ``"gelu"`` (exact, torch ``nn.GELU``, the
            default), ``"gelu_tanh"`` or ``"quick_gelu"``.
    """

    def __init__(self, output_dim: int, depth: int = 2, hidden_dim: int | None = None,
                 activation: str = "gelu", **kwargs):
        super().__init__(**kwargs)
        if depth < 1:
            raise ValueError(f"MLPProjector depth must be >= 1, got {depth}.")
        self.output_dim, self.depth, self.activation = output_dim, depth, activation
        self.hidden_dim = hidden_dim or output_dim
        widths = [self.hidden_dim] * (depth - 1) + [output_dim]
        self.dense_layers = [_dense(w, self.dtype_policy, f"dense_{i}") for i, w in enumerate(widths)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.dense_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)

    def call(self, features):
        x = features
        for i, layer in enumerate(self.dense_layers):
            if i:
                x = get_activation(self.activation)(x)
            x = layer(x)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(output_dim=self.output_dim, depth=self.depth, hidden_dim=self.hidden_dim,
                      activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="kvmm")
class IdentityProjector(keras.layers.Layer):
    """Passes features through; ``output_dim`` (if given) must equal the feature width."""

    def __init__(self, output_dim: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim

    def build(self, input_shape):
        if self.output_dim is not None and input_shape[-1] != self.output_dim:
            raise ValueError(
                f"IdentityProjector cannot map features of width {input_shape[-1]} to "
                f"{self.output_dim}: the widths must be equal (use an 'mlp2x_gelu' or "
                f"'linear' projector instead)."
            )

    def call(self, features):
        return features

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="kvmm")
class GatedProjector(keras.layers.Layer):
    """``Dense(x) * sigmoid(Dense_gate(x))``."""

    def __init__(self, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.value = _dense(output_dim, self.dtype_policy, "value")
        self.gate = _dense(output_dim, self.dtype_policy, "gate")

    def build(self, input_shape):
        self.value.build(input_shape)
        self.gate.build(input_shape)

    def call(self, features):
        return self.value(features) * ops.sigmoid(self.gate(features))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim}


class _QueryProjector(keras.layers.Layer):
    """Shared by Q-Former and Perceiver: learned queries, ``num_layers`` pre-LN blocks,
    a final LayerNorm and a Dense to ``output_dim``. Output ``(batch, num_queries,
    output_dim)`` whatever the number of image tokens. ``padding_mask`` ``(batch, tokens)``
    marks the image tokens to attend to."""

    def __init__(self, output_dim: int, num_queries: int = 32, num_layers: int = 2,
                 num_heads: int = 8, hidden_dim: int | None = None,
                 intermediate_dim: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.output_dim, self.num_queries = output_dim, num_queries
        self.num_layers, self.num_heads = num_layers, num_heads
        self.hidden_dim = hidden_dim or output_dim
        self.intermediate_dim = intermediate_dim or 4 * self.hidden_dim
        p = self.dtype_policy
        self.blocks = [self._make_block(i, p) for i in range(num_layers)]
        self.final_norm = _norm(p, "final_norm")
        self.output_dense = _dense(output_dim, p, "output")

    def _mlp(self, i, p):
        return MLP(self.hidden_dim, self.intermediate_dim, activation="gelu", dtype=p, name=f"mlp_{i}")

    def build(self, input_shape):
        self.queries = self.add_weight(
            name="queries", shape=(self.num_queries, self.hidden_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        q_shape = (input_shape[0], self.num_queries, self.hidden_dim)
        self._build_blocks(q_shape, tuple(input_shape))
        self.final_norm.build(q_shape)
        self.output_dense.build(q_shape)

    def _initial(self, features):
        batch = ops.shape(features)[0]
        q = ops.cast(self.queries, self.compute_dtype)
        return ops.broadcast_to(q[None], (batch, self.num_queries, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_queries, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(output_dim=self.output_dim, num_layers=self.num_layers,
                      num_heads=self.num_heads, hidden_dim=self.hidden_dim,
                      intermediate_dim=self.intermediate_dim)
        return config


@keras.saving.register_keras_serializable(package="kvmm")
class QFormerProjector(_QueryProjector):
    """BLIP-2 style: learned queries; each block is self-attention among the queries,
    cross-attention from the queries to the image features, and an MLP (pre-LN,
    residual). Output length = ``num_queries``."""

    def _make_block(self, i, p):
        return dict(
            norm1=_norm(p, f"self_norm_{i}"),
            self_attn=MultiHeadAttention(self.hidden_dim, self.num_heads, dtype=p, name=f"self_attention_{i}"),
            norm2=_norm(p, f"cross_norm_{i}"),
            cross_attn=MultiHeadAttention(self.hidden_dim, self.num_heads, dtype=p, name=f"cross_attention_{i}"),
            norm3=_norm(p, f"mlp_norm_{i}"),
            mlp=self._mlp(i, p),
        )

    def _build_blocks(self, q_shape, f_shape):
        for b in self.blocks:
            b["norm1"].build(q_shape)
            b["self_attn"].build(q_shape)
            b["norm2"].build(q_shape)
            b["cross_attn"].build(q_shape, f_shape)
            b["norm3"].build(q_shape)
            b["mlp"].build(q_shape)

    def call(self, features, padding_mask=None):
        x = self._initial(features)
        for b in self.blocks:
            x = x + b["self_attn"](b["norm1"](x))
            x = x + b["cross_attn"](b["norm2"](x), features, padding_mask=padding_mask)
            x = x + b["mlp"](b["norm3"](x))
        return self.output_dense(self.final_norm(x))

    def get_config(self):
        return {**super().get_config(), "num_query_tokens": self.num_queries}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["num_queries"] = config.pop("num_query_tokens")
        return cls(**config)


@keras.saving.register_keras_serializable(package="kvmm")
class PerceiverProjector(_QueryProjector):
    """Flamingo / IDEFICS perceiver resampler: the image features are projected to
    ``hidden_dim``; in each block the latents attend to ``[features; latents]`` (both
    LayerNormed), then an MLP (residual). Output length = ``num_latents``."""

    def _make_block(self, i, p):
        return dict(
            norm_f=_norm(p, f"feature_norm_{i}"),
            norm_l=_norm(p, f"latent_norm_{i}"),
            attn=MultiHeadAttention(self.hidden_dim, self.num_heads, dtype=p, name=f"attention_{i}"),
            norm_mlp=_norm(p, f"mlp_norm_{i}"),
            mlp=self._mlp(i, p),
        )

    def _build_blocks(self, q_shape, f_shape):
        self.input_dense = _dense(self.hidden_dim, self.dtype_policy, "input")
        self.input_dense.build(f_shape)
        f_shape = f_shape[:-1] + (self.hidden_dim,)
        for b in self.blocks:
            b["norm_f"].build(f_shape)
            b["norm_l"].build(q_shape)
            b["attn"].build(q_shape)
            b["norm_mlp"].build(q_shape)
            b["mlp"].build(q_shape)

    def call(self, features, padding_mask=None):
        x = self._initial(features)
        f = self.input_dense(features)
        mask = None
        if padding_mask is not None:
            latents_mask = ops.ones((ops.shape(features)[0], self.num_queries), "bool")
            mask = ops.concatenate([ops.cast(padding_mask, "bool"), latents_mask], axis=1)
        for b in self.blocks:
            latents = b["norm_l"](x)
            kv = ops.concatenate([b["norm_f"](f), latents], axis=1)
            x = x + b["attn"](latents, kv, padding_mask=mask)
            x = x + b["mlp"](b["norm_mlp"](x))
        return self.output_dense(self.final_norm(x))

    def get_config(self):
        return {**super().get_config(), "num_latents": self.num_queries}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["num_queries"] = config.pop("num_latents")
        return cls(**config)
