"""CLIP image and text towers and the dual-encoder model, in Keras 3."""

from __future__ import annotations

import keras
from keras import ops

from kvmm.layers import (
    ClassToken,
    Dense,
    PatchEmbedding,
    PositionEmbedding,
    TransformerEncoder,
)
from kvmm.layers.initialization import initializer
from kvmm.models.dual_encoder import (
    RecordedConfig,
    SoftmaxDualEncoder,
    check_images,
    check_token_ids,
    tower_arguments,
)
from kvmm.utils.images import image_size_pair


def _projection(dim, policy, name):
    return Dense(
        dim,
        use_bias=False,
        kernel_initializer=initializer("glorot_uniform"),
        dtype=policy,
        name=name,
    )


@keras.saving.register_keras_serializable(package="kvmm")
class CLIPVisionEncoder(RecordedConfig, keras.Model):
    """CLIP image tower: class token + patches, ``pre_layrnorm``, encoder, post-LN on the
    class token, bias-free projection.

    The same ViT serves BiomedCLIP's timm ViT-B/16 (``use_patch_bias=True``,
    ``use_pre_layer_norm=False``, exact GELU, eps 1e-6): timm's final LayerNorm over all
    tokens followed by class-token pooling equals the post-LN on the class token here.

    Calling it on ``(batch, H, W, 3)`` images (CLIP-normalized, see :class:`CLIPProcessor`)
    returns the projected ``(batch, projection_dim)`` embedding, not normalized
    (transformers' ``image_embeds`` before normalization). With
    ``return_hidden_states=True`` it returns a dict with ``"image_embeds"``,
    ``"pooled_output"`` (post-LN class token), ``"last_hidden_state"`` (encoder output)
    and ``"hidden_states"``: the embeddings after ``pre_layrnorm`` and every encoder layer's
    output, ``num_layers + 1`` tensors of ``(batch, 1 + patches, hidden_dim)`` indexed like
    transformers' ``output_hidden_states``. Token 0 is the class token.
    """

    def __init__(
        self,
        image_size=224,
        patch_size: int = 32,
        hidden_dim: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        intermediate_dim: int = 3072,
        projection_dim: int = 512,
        activation: str = "quick_gelu",
        layer_norm_epsilon: float = 1e-5,
        use_patch_bias: bool = False,
        use_pre_layer_norm: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._record_arguments(locals())
        self.use_pre_layer_norm = use_pre_layer_norm
        self.image_size = image_size_pair(image_size)
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.projection_dim = projection_dim
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.grid_size = (self.image_size[0] // patch_size, self.image_size[1] // patch_size)
        if min(self.grid_size) < 1:
            raise ValueError(
                f"image_size {self.image_size} is smaller than one {patch_size}px patch."
            )
        policy = self.dtype_policy
        self.patch_embedding = PatchEmbedding(
            hidden_dim, patch_size, use_bias=use_patch_bias, dtype=policy, name="patch_embedding"
        )
        self.class_token = ClassToken(hidden_dim, dtype=policy, name="class_token")
        self.position_embedding = PositionEmbedding(
            self.num_tokens,
            hidden_dim,
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            dtype=policy,
            name="position_embedding",
        )
        self.pre_layer_norm = None
        if use_pre_layer_norm:
            self.pre_layer_norm = keras.layers.LayerNormalization(
                epsilon=layer_norm_epsilon, dtype=policy, name="pre_layer_norm"
            )
        self.encoder = TransformerEncoder(
            num_layers,
            hidden_dim,
            num_heads,
            intermediate_dim,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=policy,
            name="encoder",
        )
        self.post_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="post_layer_norm"
        )
        self.projection = _projection(projection_dim, policy, "projection")
        self.build((None, *self.image_size, 3))

    def build(self, input_shape=None):
        if self.built:
            return
        tokens = (None, self.num_tokens, self.hidden_dim)
        self.patch_embedding.build((None, *self.image_size, 3))
        self.class_token.build()
        self.position_embedding.build(tokens)
        if self.pre_layer_norm is not None:
            self.pre_layer_norm.build(tokens)
        self.encoder.build(tokens)
        self.post_layer_norm.build((None, self.hidden_dim))
        self.projection.build((None, self.hidden_dim))
        self.built = True

    @property
    def num_tokens(self) -> int:
        """Class token + patch tokens."""
        return 1 + self.grid_size[0] * self.grid_size[1]

    @property
    def output_dim(self) -> int:
        return self.projection_dim

    def call(self, images, return_hidden_states: bool = False):
        check_images(self.name, self.image_size, images)
        x = self.class_token(self.patch_embedding(images))
        x = self.position_embedding(x)
        if self.pre_layer_norm is not None:
            x = self.pre_layer_norm(x)
        x, hidden_states = self.encoder(x, return_hidden_states=True)
        pooled = self.post_layer_norm(x[:, 0, :])
        embeds = self.projection(pooled)
        if not return_hidden_states:
            return embeds
        return {
            "image_embeds": embeds,
            "pooled_output": pooled,
            "last_hidden_state": x,
            "hidden_states": hidden_states,
        }

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.projection_dim)



@keras.saving.register_keras_serializable(package="kvmm")
class CLIPTextEncoder(RecordedConfig, keras.Model):
    """CLIP text tower: token + position embeddings, causal encoder, final LN, pooling at
    the end-of-text token, bias-free projection.

    Takes ``(batch, length)`` token ids (``length <= max_length``) and an optional
    ``padding_mask`` ``(batch, length)``; returns the projected ``(batch, projection_dim)``
    embedding. Pooling takes the first ``eos_token_id`` of each row, as transformers does
    (for legacy configs with ``eos_token_id == 2``, the position of the largest id).
    """

    def __init__(
        self,
        vocabulary_size: int = 49408,
        max_length: int = 77,
        hidden_dim: int = 512,
        num_layers: int = 12,
        num_heads: int = 8,
        intermediate_dim: int = 2048,
        projection_dim: int = 512,
        activation: str = "quick_gelu",
        layer_norm_epsilon: float = 1e-5,
        eos_token_id: int = 49407,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._record_arguments(locals())
        self.vocabulary_size = vocabulary_size
        self.max_length = max_length
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.projection_dim = projection_dim
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.eos_token_id = eos_token_id
        policy = self.dtype_policy
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size,
            hidden_dim,
            embeddings_initializer=initializer(keras.initializers.RandomNormal(stddev=0.02)),
            dtype=policy,
            name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            max_length,
            hidden_dim,
            initializer=keras.initializers.RandomNormal(stddev=0.01),
            dtype=policy,
            name="position_embedding",
        )
        self.encoder = TransformerEncoder(
            num_layers,
            hidden_dim,
            num_heads,
            intermediate_dim,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=policy,
            name="encoder",
        )
        self.final_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="final_layer_norm"
        )
        self.projection = _projection(projection_dim, policy, "projection")
        self.build((None, max_length))

    def build(self, input_shape=None):
        if self.built:
            return
        tokens = (None, self.max_length, self.hidden_dim)
        self.token_embedding.build((None, self.max_length))
        self.position_embedding.build(tokens)
        self.encoder.build(tokens)
        self.final_layer_norm.build(tokens)
        self.projection.build((None, self.hidden_dim))
        self.built = True

    @property
    def output_dim(self) -> int:
        return self.projection_dim

    def _eos_positions(self, token_ids):
        if self.eos_token_id == 2:  # legacy transformers configs: the largest id is EOS
            return ops.argmax(token_ids, axis=-1)
        return ops.argmax(ops.cast(ops.equal(token_ids, self.eos_token_id), "int32"), axis=-1)

    def call(self, token_ids, padding_mask=None, return_hidden_states: bool = False):
        check_token_ids(self.name, self.max_length, token_ids)
        token_ids = ops.cast(token_ids, "int32")
        x = self.position_embedding(self.token_embedding(token_ids))
        x, hidden_states = self.encoder(
            x, padding_mask=padding_mask, is_causal=True, return_hidden_states=True
        )
        x = self.final_layer_norm(x)
        select = ops.one_hot(self._eos_positions(token_ids), ops.shape(x)[1], dtype=x.dtype)
        pooled = ops.einsum("bl,bld->bd", select, x)
        embeds = self.projection(pooled)
        if not return_hidden_states:
            return embeds
        return {
            "text_embeds": embeds,
            "pooled_output": pooled,
            "last_hidden_state": x,
            "hidden_states": hidden_states,
        }

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.projection_dim)



@keras.saving.register_keras_serializable(package="kvmm")
class CLIPModel(SoftmaxDualEncoder):
    """CLIP dual encoder (OpenAI / LAION).

    Build it through a variant (:func:`ClipVitBase32`, :func:`ClipVitBase16`,
    :func:`ClipVitLarge14`), which also loads pretrained weights.

    Call on ``{"images": (N, H, W, 3), "token_ids": (M, L)}`` (optionally
    ``"padding_mask": (M, L)``). Returns ``{"image_logits": (N, M), "text_logits": (M, N)}``,
    ``logits = normalize(image) @ normalize(text).T * exp(logit_scale)``. Probabilities are
    ``keras.ops.softmax(image_logits, axis=-1)``: a distribution over the texts.
    """

    family = "clip"

    def __init__(
        self,
        image_size=224,
        patch_size: int = 32,
        vision_hidden_dim: int = 768,
        vision_num_layers: int = 12,
        vision_num_heads: int = 12,
        vision_intermediate_dim: int = 3072,
        vocabulary_size: int = 49408,
        max_text_length: int = 77,
        text_hidden_dim: int = 512,
        text_num_layers: int = 12,
        text_num_heads: int = 8,
        text_intermediate_dim: int = 2048,
        projection_dim: int = 512,
        activation: str = "quick_gelu",
        layer_norm_epsilon: float = 1e-5,
        eos_token_id: int = 49407,
        variant: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._init_attributes(variant, locals())
        policy = self.dtype_policy
        arguments = self._recorded_arguments
        self.vision_model = CLIPVisionEncoder(
            image_size=image_size,
            patch_size=patch_size,
            **tower_arguments(arguments, "vision_"),
            projection_dim=projection_dim,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=policy,
            name="vision_model",
        )
        self.text_model = CLIPTextEncoder(
            vocabulary_size=vocabulary_size,
            max_length=max_text_length,
            **tower_arguments(arguments, "text_"),
            projection_dim=projection_dim,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            eos_token_id=eos_token_id,
            dtype=policy,
            name="text_model",
        )
        self.build()

    def _text_arguments(self, inputs) -> dict:
        return {"padding_mask": inputs.get("padding_mask")}
