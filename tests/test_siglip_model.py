"""SigLIP model behaviour: serialization, dtype policies, inputs, training step."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kvmm.models.siglip import SigLIPModel, l2_normalize
from tiny_family import build_tiny


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    return {
        "images": rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32"),
        "token_ids": rng.integers(0, 120, (3, 12)).astype("int32"),
    }


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_output_shapes_and_relation(inputs):
    model = build_tiny()
    out = model(inputs)
    assert set(out) == {"image_logits", "text_logits"}
    assert tuple(out["image_logits"].shape) == (2, 3)
    np.testing.assert_allclose(_np(out["text_logits"]), _np(out["image_logits"]).T, atol=1e-6)
    # logits = cos * exp(scale) + bias, recomputed from the embeddings
    cos = model.encode_texts(inputs["token_ids"]) @ model.encode_images(inputs["images"]).T
    scale = np.exp(_np(model.logit_scale)[0])
    np.testing.assert_allclose(_np(out["text_logits"]), cos * scale + _np(model.logit_bias)[0], atol=1e-4)


def test_embeddings_are_unit_norm(inputs):
    model = build_tiny()
    for emb in (model.encode_images(inputs["images"]), model.encode_texts(inputs["token_ids"])):
        assert emb.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        _np(l2_normalize(model.vision_model(inputs["images"]))),
        model.encode_images(inputs["images"]), atol=1e-5,
    )


def test_encode_in_batches_equals_one_batch(inputs):
    model = build_tiny()
    images = np.concatenate([inputs["images"]] * 3)
    np.testing.assert_allclose(
        model.encode_images(images, batch_size=4), model.encode_images(images, batch_size=6), atol=1e-5
    )


def test_accepts_processor_style_input_ids(inputs):
    model = build_tiny()
    a = model(inputs)
    b = model({"images": inputs["images"], "input_ids": inputs["token_ids"], "token_ids": inputs["token_ids"]})
    c = model({"images": inputs["images"], "input_ids": inputs["token_ids"]})
    np.testing.assert_allclose(_np(a["image_logits"]), _np(b["image_logits"]), atol=1e-6)
    np.testing.assert_allclose(_np(a["image_logits"]), _np(c["image_logits"]), atol=1e-6)


def test_text_longer_than_positions_is_refused(inputs):
    model = build_tiny()
    too_long = np.ones((1, 13), "int32")
    with pytest.raises(ValueError, match="13 tokens long but .* has 12 positions"):
        model({"images": inputs["images"], "token_ids": too_long})
    with pytest.raises(ValueError, match="length <= 12"):
        model.encode_texts(too_long)


def test_wrong_image_shape_is_refused(inputs):
    model = build_tiny()
    with pytest.raises(ValueError, match=r"\(batch, 32, 32, 3\).*channels-last"):
        model.encode_images(np.zeros((1, 3, 32, 32), "float32"))
    with pytest.raises(ValueError, match=r"\(batch, 32, 32, 3\)"):
        model({"images": np.zeros((1, 48, 48, 3), "float32"), "token_ids": inputs["token_ids"]})


def test_missing_input_key_is_refused(inputs):
    with pytest.raises(KeyError, match="token_ids"):
        build_tiny()({"images": inputs["images"]})


def test_config_round_trip(inputs):
    model = build_tiny(input_shape=(40, 24, 3))
    clone = SigLIPModel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.image_size == (40, 24)
    clone.set_weights(model.get_weights())
    images = np.random.default_rng(1).uniform(-1, 1, (1, 40, 24, 3)).astype("float32")
    np.testing.assert_allclose(
        clone.encode_images(images), model.encode_images(images), atol=1e-6
    )


def test_keras_file_round_trip(inputs, tmp_path):
    model = build_tiny()
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SigLIPModel) and loaded.variant == "SigLIPTiny"
    np.testing.assert_allclose(_np(loaded(inputs)["image_logits"]), _np(model(inputs)["image_logits"]), atol=1e-6)


def test_save_and_load_weights(inputs, tmp_path):
    model = build_tiny()
    model.save_weights(tmp_path / "w.weights.h5")
    other = build_tiny()
    other.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(_np(other(inputs)["image_logits"]), _np(model(inputs)["image_logits"]))


@pytest.mark.parametrize("policy", ["float32", "bfloat16", "mixed_bfloat16"])
def test_dtype_policies_run_and_stay_close(inputs, policy):
    reference = build_tiny()
    model = build_tiny(dtype=policy)
    model.set_weights(reference.get_weights())
    expected_var = "bfloat16" if policy == "bfloat16" else "float32"
    assert model.vision_model.encoder.blocks[0].attention.query.kernel.dtype == expected_var
    out = model(inputs)
    assert keras.backend.standardize_dtype(out["image_logits"].dtype) == "float32"
    tol = 1e-6 if policy == "float32" else 0.05
    np.testing.assert_allclose(
        model.encode_images(inputs["images"]), reference.encode_images(inputs["images"]), atol=tol
    )
    assert np.isfinite(_np(out["image_logits"])).all()


def _sigmoid_pair_loss(y_true, y_pred):
    n = keras.ops.shape(y_pred)[0]
    labels = 2.0 * keras.ops.eye(n) - 1.0
    return -keras.ops.mean(keras.ops.log_sigmoid(labels * y_pred))


def test_one_fit_step_changes_weights_and_lowers_loss():
    model = build_tiny()
    rng = np.random.default_rng(0)
    x = {
        "images": rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32"),
        "token_ids": rng.integers(0, 120, (4, 12)).astype("int32"),
    }
    y = {"image_logits": np.zeros((4, 4), "float32")}
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={"image_logits": _sigmoid_pair_loss})
    history = model.fit(x, y, batch_size=4, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
