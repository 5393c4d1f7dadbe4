"""BiomedCLIP in Keras 3: a timm ViT-B/16 image tower and a PubMedBERT text tower.

The reference is open_clip's ``CustomTextCLIP`` as built from the checkpoint's
``open_clip_config.json``: ``TimmModel`` (``vit_base_patch16_224``: class token, fused
qkv, exact GELU, LayerNorm eps 1e-6, class-token pooling, ``head.proj`` Linear 768->512
without bias) and ``HFTextEncoder`` (BERT: post-LN blocks, padding mask from the pad id,
``cls_last_hidden_state_pooler``, ``proj`` MLP 768->640->512 without biases, exact GELU).
"""

from __future__ import annotations

import keras
from keras import ops

from kvmm.layers import MLP, PositionEmbedding, TransformerEncoder
from kvmm.layers.initialization import initializer
from kvmm.models.clip.model import CLIPVisionEncoder
from kvmm.models.dual_encoder import (
    RecordedConfig,
    SoftmaxDualEncoder,
    check_token_ids,
    tower_arguments,
)


@keras.saving.register_keras_serializable(package="kvmm")
class BiomedCLIPTextEncoder(RecordedConfig, keras.Model):
    """BiomedCLIP text tower: BERT embeddings (token + position + token type 0, then
    LayerNorm), post-LN BERT encoder attending only to non-pad tokens, the ``[CLS]``
    token's final state, and a bias-free two-layer GELU projection.

    Takes ``(batch, length)`` token ids (``length <= max_length``; the padding mask is
    ``token_ids != pad_token_id``, as open_clip computes it) and returns the projected
    ``(batch, projection_dim)`` embedding, not normalized. With
    ``return_hidden_states=True`` it returns a dict with ``"text_embeds"``,
    ``"pooled_output"`` (the ``[CLS]`` state), ``"last_hidden_state"`` and
    ``"hidden_states"`` (the embeddings after their LayerNorm and every layer's output).

    Args:
        vocabulary_size: WordPiece vocabulary rows (30522 for PubMedBERT).
        max_length: the text context (256 for BiomedCLIP; open_clip's ``context_length``).
        num_positions: rows of BERT's position table (512); at least ``max_length``.
        type_vocabulary_size: rows of BERT's token-type table (only row 0 is used).
        projection_hidden_dim: width of the projection MLP's hidden layer; defaults to
            ``(hidden_dim + projection_dim) // 2`` as open_clip's ``"mlp"`` projection.
        layer_norm_epsilon: BERT's ``layer_norm_eps`` (1e-12).
        pad_token_id: the ``[PAD]`` id (0 in PubMedBERT's vocabulary).
    """

    def __init__(
        self,
        vocabulary_size: int = 30522,
        max_length: int = 256,
        num_positions: int = 512,
        type_vocabulary_size: int = 2,
        hidden_dim: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        intermediate_dim: int = 3072,
        projection_dim: int = 512,
        projection_hidden_dim: int | None = None,
        layer_norm_epsilon: float = 1e-12,
        pad_token_id: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._record_arguments(locals())
        if num_positions < max_length:
            raise ValueError(
                f"num_positions ({num_positions}) must be at least max_length ({max_length})."
            )
        self.vocabulary_size = vocabulary_size
        self.max_length = max_length
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.projection_dim = projection_dim
        self.pad_token_id = pad_token_id
        policy = self.dtype_policy
        normal = keras.initializers.RandomNormal(stddev=0.02)
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size, hidden_dim, embeddings_initializer=initializer(normal),
            dtype=policy, name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            num_positions, hidden_dim, initializer=normal, dtype=policy, name="position_embedding"
        )
        self.token_type_embedding = keras.layers.Embedding(
            type_vocabulary_size, hidden_dim, embeddings_initializer=initializer(normal),
            dtype=policy, name="token_type_embedding",
        )
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="embeddings_layer_norm"
        )
        self.encoder = TransformerEncoder(
            num_layers,
            hidden_dim,
            num_heads,
            intermediate_dim,
            activation="gelu",
            layer_norm_epsilon=layer_norm_epsilon,
            norm_first=False,
            dtype=policy,
            name="encoder",
        )
        self.projection = MLP(
            projection_dim,
            projection_hidden_dim or (hidden_dim + projection_dim) // 2,
            activation="gelu",
            use_bias=False,
            dtype=policy,
            name="projection",
        )
        self.build((None, max_length))

    def build(self, input_shape=None):
        if self.built:
            return
        tokens = (None, self.max_length, self.hidden_dim)
        self.token_embedding.build((None, self.max_length))
        self.position_embedding.build(tokens)
        self.token_type_embedding.build((None, self.max_length))
        self.embeddings_layer_norm.build(tokens)
        self.encoder.build(tokens)
        self.projection.build((None, self.hidden_dim))
        self.built = True

    @property
    def output_dim(self) -> int:
        return self.projection_dim

    def call(self, token_ids, padding_mask=None, return_hidden_states: bool = False):
        """``padding_mask`` is accepted for a uniform signature; the reference derives the
        mask from the ids (``token_ids != pad_token_id``), and so does this tower."""
        check_token_ids(self.name, self.max_length, token_ids)
        token_ids = ops.cast(token_ids, "int32")
        mask = ops.not_equal(token_ids, self.pad_token_id)
        x = self.position_embedding(self.token_embedding(token_ids))
        x = x + ops.cast(self.token_type_embedding.embeddings[0], x.dtype)
        x = self.embeddings_layer_norm(x)
        x, hidden_states = self.encoder(x, padding_mask=mask, return_hidden_states=True)
        pooled = x[:, 0, :]
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
class BiomedCLIPModel(SoftmaxDualEncoder):
    """BiomedCLIP dual encoder (Microsoft; open_clip ``CustomTextCLIP``).

    Build it through :func:`BiomedClipVitBase16`, which also loads pretrained weights.

    Call on ``{"images": (N, H, W, 3), "token_ids": (M, L)}`` (the processor's output can be
    passed as it is). Returns ``{"image_logits": (N, M), "text_logits": (M, N)}``,
    ``logits = normalize(image) @ normalize(text).T * exp(logit_scale)``. Probabilities are
    ``keras.ops.softmax(image_logits, axis=-1)``: a distribution over the texts.

    Attributes:
        vision_model: the image tower (a :class:`kvmm.models.clip.CLIPVisionEncoder`
            configured as timm's ViT: patch bias, no pre-LayerNorm, exact GELU).
        text_model: the text tower (:class:`BiomedCLIPTextEncoder`).
        logit_scale: the learned log temperature (a scalar).
    """

    family = "biomedclip"

    def __init__(
        self,
        image_size=224,
        patch_size: int = 16,
        vision_hidden_dim: int = 768,
        vision_num_layers: int = 12,
        vision_num_heads: int = 12,
        vision_intermediate_dim: int = 3072,
        vocabulary_size: int = 30522,
        max_text_length: int = 256,
        text_num_positions: int = 512,
        text_hidden_dim: int = 768,
        text_num_layers: int = 12,
        text_num_heads: int = 12,
        text_intermediate_dim: int = 3072,
        projection_dim: int = 512,
        vision_layer_norm_epsilon: float = 1e-6,
        text_layer_norm_epsilon: float = 1e-12,
        pad_token_id: int = 0,
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
            activation="gelu",
            use_patch_bias=True,
            use_pre_layer_norm=False,
            dtype=policy,
            name="vision_model",
        )
        self.text_model = BiomedCLIPTextEncoder(
            vocabulary_size=vocabulary_size,
            max_length=max_text_length,
            **{**tower_arguments(arguments, "text_"),
               "num_positions": max(text_num_positions, max_text_length)},
            projection_dim=projection_dim,
            pad_token_id=pad_token_id,
            dtype=policy,
            name="text_model",
        )
        self.build()
