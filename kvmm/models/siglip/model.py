"""SigLIP image and text towers and the dual-encoder model, in Keras 3."""

from __future__ import annotations

import math

import keras
from keras import ops

from kvmm.layers import (
    AttentionPoolingHead,
    Dense,
    PatchEmbedding,
    PositionEmbedding,
    TransformerEncoder,
)
from kvmm.layers.initialization import initializer
from kvmm.models.dual_encoder import (
    DualEncoder,
    RecordedConfig,
    check_images,
    check_token_ids,
    tower_arguments,
)
from kvmm.utils.images import image_size_pair


@keras.saving.register_keras_serializable(package="kvmm")
class SigLIPVisionEncoder(RecordedConfig, keras.Model):
    """SigLIP image tower: patches + positions, pre-LN encoder, post-LN, attention-pooling head.

    Calling it on ``(batch, H, W, 3)`` images (values in [-1, 1], see
    :class:`SigLIPImageProcessor`) returns the pooled ``(batch, hidden_dim)`` embedding,
    not normalized (transformers' ``pooler_output``). With ``return_hidden_states=True``
    it returns a dict with ``"pooled_output"``, ``"last_hidden_state"`` (after the post
    LayerNorm) and ``"hidden_states"``: the embeddings and the output of every encoder
    layer, ``num_layers + 1`` tensors of ``(batch, tokens, hidden_dim)``, indexed like
    transformers' ``output_hidden_states`` (``[-2]`` is the second to last layer).
    """

    def __init__(
        self,
        image_size=224,
        patch_size: int = 16,
        hidden_dim: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        intermediate_dim: int = 3072,
        layer_norm_epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._record_arguments(locals())
        self.image_size = image_size_pair(image_size)
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.layer_norm_epsilon = layer_norm_epsilon
        self.grid_size = (self.image_size[0] // patch_size, self.image_size[1] // patch_size)
        if min(self.grid_size) < 1:
            raise ValueError(
                f"image_size {self.image_size} is smaller than one {patch_size}px patch."
            )
        policy = self.dtype_policy
        self.patch_embedding = PatchEmbedding(
            hidden_dim, patch_size, dtype=policy, name="patch_embedding"
        )
        self.position_embedding = PositionEmbedding(
            self.grid_size[0] * self.grid_size[1],
            hidden_dim,
            initializer=keras.initializers.RandomNormal(stddev=1 / math.sqrt(hidden_dim)),
            dtype=policy,
            name="position_embedding",
        )
        self.encoder = TransformerEncoder(
            num_layers,
            hidden_dim,
            num_heads,
            intermediate_dim,
            activation="gelu_tanh",
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=policy,
            name="encoder",
        )
        self.post_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="post_layer_norm"
        )
        self.head = AttentionPoolingHead(
            hidden_dim,
            num_heads,
            intermediate_dim,
            activation="gelu_tanh",
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=policy,
            name="head",
        )
        self.build((None, *self.image_size, 3))

    def build(self, input_shape=None):
        if self.built:
            return
        tokens = (None, self.grid_size[0] * self.grid_size[1], self.hidden_dim)
        self.patch_embedding.build((None, *self.image_size, 3))
        self.position_embedding.build(tokens)
        self.encoder.build(tokens)
        self.post_layer_norm.build(tokens)
        self.head.build(tokens)
        self.built = True

    @property
    def num_tokens(self) -> int:
        """Number of patch tokens (no class token in SigLIP)."""
        return self.grid_size[0] * self.grid_size[1]

    @property
    def output_dim(self) -> int:
        return self.hidden_dim

    def call(self, images, return_hidden_states: bool = False):
        check_images(self.name, self.image_size, images)
        x = self.position_embedding(self.patch_embedding(images))
        x, hidden_states = self.encoder(x, return_hidden_states=True)
        last_hidden_state = self.post_layer_norm(x)
        pooled = self.head(last_hidden_state)
        if not return_hidden_states:
            return pooled
        return {
            "pooled_output": pooled,
            "last_hidden_state": last_hidden_state,
            "hidden_states": hidden_states,
        }

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_dim)



@keras.saving.register_keras_serializable(package="kvmm")
class SigLIPTextEncoder(RecordedConfig, keras.Model):
    """SigLIP text tower: token + position embeddings, encoder (no mask), final LN, head.

    Takes ``(batch, length)`` int token ids, ``length <= max_length``, and returns
    ``head(final_ln(x)[:, -1])``: the last position is pooled (SigLIP pads with
    ``</s>``, so this is an end-of-text token when the text was padded to full length).
    With ``return_hidden_states=True`` it returns a dict like :class:`SigLIPVisionEncoder`.
    """

    def __init__(
        self,
        vocabulary_size: int = 32000,
        max_length: int = 64,
        hidden_dim: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        intermediate_dim: int = 3072,
        projection_dim: int | None = None,
        layer_norm_epsilon: float = 1e-6,
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
        self.projection_dim = projection_dim or hidden_dim
        self.layer_norm_epsilon = layer_norm_epsilon
        policy = self.dtype_policy
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size,
            hidden_dim,
            embeddings_initializer=initializer(
                keras.initializers.RandomNormal(stddev=1 / math.sqrt(hidden_dim))
            ),
            dtype=policy,
            name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            max_length,
            hidden_dim,
            initializer=keras.initializers.RandomNormal(stddev=1 / math.sqrt(hidden_dim)),
            dtype=policy,
            name="position_embedding",
        )
        self.encoder = TransformerEncoder(
            num_layers,
            hidden_dim,
            num_heads,
            intermediate_dim,
            activation="gelu_tanh",
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=policy,
            name="encoder",
        )
        self.final_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="final_layer_norm"
        )
        self.head = Dense(
            self.projection_dim,
            kernel_initializer=initializer("glorot_uniform"),
            dtype=policy,
            name="head",
        )
        self.build((None, max_length))

    def build(self, input_shape=None):
        if self.built:
            return
        tokens = (None, self.max_length, self.hidden_dim)
        self.token_embedding.build((None, self.max_length))
        self.position_embedding.build(tokens)
        self.encoder.build(tokens)
        self.final_layer_norm.build(tokens)
        self.head.build((None, self.hidden_dim))
        self.built = True

    @property
    def output_dim(self) -> int:
        return self.projection_dim

    def call(self, token_ids, return_hidden_states: bool = False):
        check_token_ids(self.name, self.max_length, token_ids)
        x = self.position_embedding(self.token_embedding(ops.cast(token_ids, "int32")))
        x, hidden_states = self.encoder(x, return_hidden_states=True)
        last_hidden_state = self.final_layer_norm(x)
        pooled = self.head(last_hidden_state[:, -1, :])
        if not return_hidden_states:
            return pooled
        return {
            "pooled_output": pooled,
            "last_hidden_state": last_hidden_state,
            "hidden_states": hidden_states,
        }

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.projection_dim)



@keras.saving.register_keras_serializable(package="kvmm")
class SigLIPModel(DualEncoder):
    """SigLIP dual encoder.

    Build it through a variant (:func:`SigLIPBaseP16`, :func:`SigLIPLargeP16`,
    :func:`SigLIPSo400mP14`), which also loads pretrained weights.

    Call on ``{"images": (N, H, W, 3) float, "token_ids": (M, L) int}`` (the processor's
    output, which also carries ``"input_ids"``, can be passed as it is). Returns
    ``{"image_logits": (N, M), "text_logits": (M, N)}`` where
    ``text_logits = normalize(text) @ normalize(image).T * exp(logit_scale) + logit_bias``.
    Probabilities are ``keras.ops.sigmoid(logits)``: every image-text pair is an
    independent yes/no, so do not use softmax.

    Attributes:
        vision_model: the image tower (:class:`SigLIPVisionEncoder`).
        text_model: the text tower (:class:`SigLIPTextEncoder`).
        logit_scale, logit_bias: the learned temperature (log scale) and bias, shape (1,).
    """

    family = "siglip"
    probability = "sigmoid"

    def __init__(
        self,
        image_size=224,
        patch_size: int = 16,
        vision_hidden_dim: int = 768,
        vision_num_layers: int = 12,
        vision_num_heads: int = 12,
        vision_intermediate_dim: int = 3072,
        vocabulary_size: int = 32000,
        max_text_length: int = 64,
        text_hidden_dim: int = 768,
        text_num_layers: int = 12,
        text_num_heads: int = 12,
        text_intermediate_dim: int = 3072,
        layer_norm_epsilon: float = 1e-6,
        variant: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._init_attributes(variant, locals())
        self.layer_norm_epsilon = layer_norm_epsilon
        policy = self.dtype_policy
        arguments = self._recorded_arguments
        self.vision_model = SigLIPVisionEncoder(
            image_size=image_size,
            patch_size=patch_size,
            **tower_arguments(arguments, "vision_"),
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=policy,
            name="vision_model",
        )
        self.text_model = SigLIPTextEncoder(
            vocabulary_size=vocabulary_size,
            max_length=max_text_length,
            **tower_arguments(arguments, "text_"),
            projection_dim=vision_hidden_dim,
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=policy,
            name="text_model",
        )
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        # Initialised as in the SigLIP paper for training from scratch: t' = log 10, b = -10.
        self.logit_scale = self.add_weight(
            shape=(1,),
            initializer=keras.initializers.Constant(math.log(10.0)),
            name="logit_scale",
        )
        self.logit_bias = self.add_weight(
            shape=(1,), initializer=keras.initializers.Constant(-10.0), name="logit_bias"
        )
        self.built = True

    def _scale_logits(self, cosine):
        scale = ops.exp(ops.cast(self.logit_scale, "float32"))
        return cosine * scale + ops.cast(self.logit_bias, "float32")

