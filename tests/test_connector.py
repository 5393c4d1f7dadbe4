"""VisionLanguageConnector / splice: placement against a NumPy loop, labels, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kvmm.connector import (
    IGNORE_INDEX,
    VisionLanguageConnector,
    expand_image_placeholders,
    splice_image_features,
)
from kvmm.projectors import MLPProjector

IMG = 99


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_expand_placeholders():
    ids = expand_image_placeholders([[1, IMG, 5], [IMG, 7, IMG, 2]], IMG, 3, pad_id=0)
    np.testing.assert_array_equal(ids, [[1, IMG, IMG, IMG, 5, 0, 0, 0],
                                        [IMG, IMG, IMG, 7, IMG, IMG, IMG, 2]])
    with pytest.raises(ValueError, match="longer than sequence_length=4"):
        expand_image_placeholders([[1, IMG, 5]], IMG, 3, sequence_length=4)


def test_splice_places_images_in_reading_order():
    rng = np.random.default_rng(0)
    token_ids = np.array([[1, IMG, IMG, 4, 5, 0], [IMG, IMG, 3, IMG, IMG, 2]], "int32")
    padding_mask = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]], "int32")
    embeds = rng.normal(size=(2, 6, 4)).astype("float32")
    features = rng.normal(size=(3, 2, 4)).astype("float32")
    out = splice_image_features(embeds, token_ids, features, IMG, padding_mask=padding_mask)
    expected = embeds.copy()
    flat = iter(features.reshape(-1, 4))
    for r in range(2):
        for c in range(6):
            if token_ids[r, c] == IMG:
                expected[r, c] = next(flat)
    np.testing.assert_allclose(_np(out["embeddings"]), expected, atol=1e-7)
    np.testing.assert_array_equal(_np(out["padding_mask"]), padding_mask)
    labels = np.where((token_ids == IMG) | (padding_mask == 0), IGNORE_INDEX, token_ids)
    np.testing.assert_array_equal(_np(out["labels"]), labels)
    given = token_ids + 1000
    out = splice_image_features(embeds, token_ids, features, IMG, labels=given)
    np.testing.assert_array_equal(_np(out["labels"]), np.where(token_ids == IMG, IGNORE_INDEX, given))


@pytest.mark.parametrize("placeholders", [3, 5])
def test_count_mismatch_is_a_clear_error(placeholders):
    token_ids = np.array([[1] + [IMG] * placeholders + [2] * (6 - placeholders)], "int32")
    embeds = np.zeros((1, 7, 4), "float32")
    with pytest.raises(ValueError, match=f"hold {placeholders} image placeholders.*1 image\\(s\\) x 4 tokens"):
        splice_image_features(embeds, token_ids, np.zeros((1, 4, 4), "float32"), IMG)


class _Flatten(keras.layers.Layer):
    """A stand-in tower: (batch, 2, 2, 3) images -> (batch, 4, 3) tokens."""

    def call(self, images):
        return keras.ops.reshape(images, (-1, 4, 3))


def test_connector_runs_encoder_projector_and_embedding():
    rng = np.random.default_rng(1)
    embedding = keras.layers.Embedding(10, 6)
    projector = MLPProjector(6, depth=2)
    connector = VisionLanguageConnector(_Flatten(), projector, embedding, image_token_id=IMG)
    images = rng.normal(size=(2, 2, 2, 3)).astype("float32")
    token_ids = expand_image_placeholders([[1, IMG, 3], [IMG, 4, 5]], IMG, 4)
    out = connector({"images": images, "token_ids": token_ids})
    features = _np(projector(images.reshape(2, 4, 3)))
    table = _np(embedding.embeddings)
    expected = table[np.where(token_ids == IMG, 0, token_ids)]
    expected[0, 1:5] = features[0]
    expected[1, 0:4] = features[1]
    np.testing.assert_allclose(_np(out["embeddings"]), expected, atol=1e-6)
    assert (_np(out["labels"])[token_ids == IMG] == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="image placeholders"):
        connector({"images": images[:1], "token_ids": token_ids})
