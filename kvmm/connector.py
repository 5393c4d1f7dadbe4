"""``VisionLanguageConnector``: vision tower + projector, spliced into a language model's
token embeddings at the image placeholder positions (LLaVA style)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

IGNORE_INDEX = -100


def expand_image_placeholders(token_ids, image_token_id: int, num_image_tokens: int,
                              sequence_length: int | None = None, pad_id: int = 0) -> np.ndarray:
    """Replace every single ``image_token_id`` in each row of ``token_ids`` (lists of ids)
    by ``num_image_tokens`` copies, as LLaVA's processor does, and pad with ``pad_id`` to
    ``sequence_length`` (default: the longest row). Returns an int32 array."""
    rows = []
    for row in token_ids:
        out = []
        for token in row:
            out.extend([token] * num_image_tokens if token == image_token_id else [token])
        rows.append(out)
    length = sequence_length or max(len(r) for r in rows)
    too_long = [i for i, r in enumerate(rows) if len(r) > length]
    if too_long:
        raise ValueError(
            f"Rows {too_long} are longer than sequence_length={length} once each image "
            f"placeholder is expanded to {num_image_tokens} tokens."
        )
    return np.array([r + [pad_id] * (length - len(r)) for r in rows], "int32")


def splice_image_features(token_embeddings, token_ids, image_features, image_token_id: int,
                          padding_mask=None, labels=None) -> dict:
    """Put ``image_features`` ``(num_images, tokens, dim)`` at the positions of
    ``token_ids == image_token_id`` in ``token_embeddings`` ``(batch, length, dim)``, in
    reading order (image ``i`` fills the ``i``-th run of ``tokens`` placeholders).

    Returns ``{"embeddings", "padding_mask", "labels"}``: ``padding_mask`` as given (default
    all ones), ``labels`` = ``labels`` (default ``token_ids``) with ``-100`` at image and
    padding positions. When the values are concrete (eager), a placeholder count that is
    not ``num_images * tokens`` raises ``ValueError``.
    """
    is_image = ops.equal(token_ids, image_token_id)
    num_images, num_tokens = image_features.shape[0], image_features.shape[1]
    try:
        count = int(np.sum(ops.convert_to_numpy(is_image)))
    except Exception:  # symbolic (graph tracing): the shapes alone must do
        count = None
    # count == 0: Keras' torch trainer traces the model once with all-zero token ids.
    if count and num_images is not None and count != num_images * num_tokens:
        per_row = np.sum(ops.convert_to_numpy(is_image), axis=1).tolist()
        raise ValueError(
            f"The token ids hold {count} image placeholders (id {image_token_id}; per row "
            f"{per_row}) but there are {num_images} image(s) x {num_tokens} tokens = "
            f"{num_images * num_tokens} image tokens. Expand each image placeholder to "
            f"{num_tokens} tokens (see expand_image_placeholders)."
        )
    dim = ops.shape(token_embeddings)[-1]
    flat_features = ops.reshape(ops.cast(image_features, token_embeddings.dtype), (-1, dim))
    flat_mask = ops.reshape(is_image, (-1,))
    index = ops.cumsum(ops.cast(flat_mask, "int32")) - 1
    index = ops.clip(index, 0, ops.maximum(ops.shape(flat_features)[0] - 1, 0))
    gathered = ops.reshape(ops.take(flat_features, index, axis=0), ops.shape(token_embeddings))
    embeddings = ops.where(is_image[..., None], gathered, token_embeddings)
    if padding_mask is None:
        padding_mask = ops.ones_like(token_ids, dtype="int32")
    labels = token_ids if labels is None else labels
    ignore = ops.logical_or(is_image, ops.logical_not(ops.cast(padding_mask, "bool")))
    labels = ops.where(ignore, ops.full_like(labels, IGNORE_INDEX), labels)
    return {"embeddings": embeddings, "padding_mask": padding_mask, "labels": labels}


@keras.saving.register_keras_serializable(package="kvmm")
class VisionLanguageConnector(keras.Model):
    """Encoder + projector + splice into a language model's token embeddings.

    Args:
        encoder: a :class:`kvmm.encoders.VisionTower` (or any model mapping images to
            ``(batch, tokens, dim)``).
        projector: a projector from :mod:`kvmm.projectors`.
        token_embedding: the language model's token embedding layer (e.g. keras-hub
            ``backbone.token_embedding``).
        image_token_id: the placeholder id; each image needs ``tokens`` placeholders, where
            ``tokens`` is the projector's output length (see ``expand_image_placeholders``).

    Call with ``{"images", "token_ids"[, "padding_mask", "labels"]}``; returns
    ``{"embeddings", "padding_mask", "labels"}`` (see :func:`splice_image_features`).
    """

    def __init__(self, encoder, projector, token_embedding, image_token_id: int, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.projector = projector
        self.token_embedding = token_embedding
        self.image_token_id = int(image_token_id)

    def image_features(self, images):
        """Projected image tokens ``(num_images, tokens, llm_dim)``."""
        return self.projector(self.encoder(images))

    def call(self, inputs):
        token_ids = inputs["token_ids"]
        features = self.image_features(inputs["images"])
        # Placeholder ids may lie outside the LLM's vocabulary: embed them as token 0.
        safe_ids = ops.where(ops.equal(token_ids, self.image_token_id), 0, token_ids)
        embeddings = self.token_embedding(safe_ids)
        return splice_image_features(
            embeddings, token_ids, features, self.image_token_id,
            padding_mask=inputs.get("padding_mask"), labels=inputs.get("labels"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            projector=keras.saving.serialize_keras_object(self.projector),
            token_embedding=keras.saving.serialize_keras_object(self.token_embedding),
            image_token_id=self.image_token_id,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "projector", "token_embedding"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
