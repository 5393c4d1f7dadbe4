"""kvmm.zero_shot.ZeroShotClassifier on tiny random SigLIP and CLIP models: prompt
ensembling, the family's activation, input kinds, and bad arguments."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import keras
import numpy as np
import PIL.Image
import pytest
from tiny_family import CLIP_TINY_FAMILY, TINY_FAMILY

from kvmm.loading import create_model
from kvmm.models.clip import CLIPProcessor
from kvmm.models.siglip import SigLIPProcessor
from kvmm.zero_shot import ZeroShotClassifier

LABELS = ["cat", "dog", "red circle", "astronaut"]
TEMPLATES = ["a photo of a {}", "a blurry drawing of the {}", "{}"]


def _siglip():
    family = dataclasses.replace(TINY_FAMILY, variants={
        **TINY_FAMILY.variants,
        "SigLIPTiny": {**TINY_FAMILY.variants["SigLIPTiny"], "vocabulary_size": 640},
    })
    model = create_model(family, "SigLIPTiny", weights=None)
    # Scale and bias away from the training init (10, -10), so probabilities are mid-range.
    model.logit_scale.assign(np.array([math.log(25.0)], "float32"))
    model.logit_bias.assign(np.array([-1.5], "float32"))
    return model


def _clip(clip_vocab):
    vocab = json.loads((Path(clip_vocab) / "vocab.json").read_text(encoding="utf-8"))
    variant = {**CLIP_TINY_FAMILY.variants["ClipTiny"], "vocabulary_size": len(vocab),
               "eos_token_id": vocab["<|endoftext|>"]}
    family = dataclasses.replace(CLIP_TINY_FAMILY,
                                 variants={**CLIP_TINY_FAMILY.variants, "ClipTiny": variant})
    model = create_model(family, "ClipTiny", weights=None)
    model.logit_scale.assign(np.full(model.logit_scale.shape, math.log(20.0), "float32"))
    return model


@pytest.fixture(scope="module")
def siglip(spm_vocab):
    model = _siglip()
    return model, SigLIPProcessor(image_size=32, sequence_length=model.max_text_length,
                                  vocabulary=spm_vocab)


@pytest.fixture(scope="module")
def clip(clip_vocab):
    model = _clip(clip_vocab)
    return model, CLIPProcessor(image_size=32, sequence_length=model.max_text_length,
                                vocabulary=clip_vocab)


@pytest.fixture(scope="module")
def photos(sample_images):
    return [sample_images[name].convert("RGB") for name in ("chelsea", "coffee", "astronaut")]


def direct_logits(model, processor, images, labels, templates):
    """The computation written out: ensembled, normalized label embeddings against the
    normalized image embeddings, times exp(scale) (+ bias for SigLIP)."""
    rows = []
    for label in labels:
        ids = processor(text=[t.replace("{}", label) for t in templates])["token_ids"]
        emb = model.encode_texts(ids)
        emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
        mean = emb.mean(axis=0)
        rows.append(mean / np.linalg.norm(mean))
    text = np.stack(rows)
    image = model.encode_images(processor(images=images)["images"])
    cosine = image.astype(np.float64) @ text.T.astype(np.float64)
    scale = float(np.exp(keras.ops.convert_to_numpy(model.logit_scale)).reshape(-1)[0])
    bias = 0.0
    if model.family == "siglip":
        bias = float(keras.ops.convert_to_numpy(model.logit_bias).reshape(-1)[0])
    return cosine * scale + bias


def test_siglip_matches_the_direct_computation_with_sigmoid(siglip, photos):
    model, processor = siglip
    classifier = ZeroShotClassifier(model, LABELS, templates=TEMPLATES, processor=processor)
    logits = direct_logits(model, processor, photos, LABELS, TEMPLATES)
    np.testing.assert_allclose(classifier.logits(photos), logits, atol=1e-4)
    probs = classifier.predict_proba(photos)
    assert probs.dtype == np.float32 and probs.shape == (3, len(LABELS))
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-5)
    # sigmoid scores each pair on its own: rows do not sum to one
    assert np.abs(probs.sum(axis=1) - 1).max() > 0.05
    assert classifier.predict(photos) == [LABELS[i] for i in logits.argmax(axis=1)]


def test_clip_matches_the_direct_computation_with_softmax(clip, photos):
    model, processor = clip
    classifier = ZeroShotClassifier(model, LABELS, templates=TEMPLATES, processor=processor)
    logits = direct_logits(model, processor, photos, LABELS, TEMPLATES)
    np.testing.assert_allclose(classifier.logits(photos), logits, atol=1e-4)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    probs = classifier.predict_proba(photos)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert classifier.predict(photos) == [LABELS[i] for i in logits.argmax(axis=1)]


def test_ensemble_differs_from_any_single_template(siglip, photos):
    model, processor = siglip
    ensemble = ZeroShotClassifier(model, LABELS, templates=TEMPLATES, processor=processor)
    for template in TEMPLATES:
        single = ZeroShotClassifier(model, LABELS, templates=[template], processor=processor)
        np.testing.assert_allclose(single.logits(photos),
                                   direct_logits(model, processor, photos, LABELS, [template]),
                                   atol=1e-4)
        assert np.abs(single.logits(photos) - ensemble.logits(photos)).max() > 1e-3
    norms = np.linalg.norm(ensemble.text_embeddings, axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_default_template_is_a_photo_of_a(siglip, photos):
    model, processor = siglip
    default = ZeroShotClassifier(model, LABELS, processor=processor)
    np.testing.assert_allclose(
        default.logits(photos),
        direct_logits(model, processor, photos, LABELS, ["a photo of a {}."]), atol=1e-4)


def test_image_inputs_paths_pil_arrays_and_preprocessed(siglip, photos, tmp_path):
    model, processor = siglip
    classifier = ZeroShotClassifier(model, LABELS, templates=TEMPLATES, processor=processor,
                                    batch_size=2)  # 3 images: two batches
    expected = classifier.predict_proba(photos)
    paths = []
    for i, photo in enumerate(photos):
        paths.append(tmp_path / f"{i}.png")
        photo.save(paths[-1])
    arrays = [np.asarray(photo) for photo in photos]
    preprocessed = processor(images=photos)["images"]
    for images in (paths, [str(p) for p in paths], arrays, preprocessed):
        np.testing.assert_allclose(classifier.predict_proba(images), expected, atol=1e-5)
    # one image on its own and a uint8 batch of equal-size images
    np.testing.assert_allclose(classifier.predict_proba(photos[1]), expected[1:2], atol=1e-5)
    squares = [photo.resize((40, 40)) for photo in photos]
    np.testing.assert_allclose(
        classifier.predict_proba(np.stack([np.asarray(s) for s in squares])),
        classifier.predict_proba(squares), atol=1e-5)


def test_text_embeddings_are_computed_once(siglip, photos, monkeypatch):
    model, processor = siglip
    calls = []
    original = model.encode_texts
    monkeypatch.setattr(model, "encode_texts", lambda *a, **k: calls.append(1) or original(*a, **k))
    classifier = ZeroShotClassifier(model, LABELS, templates=TEMPLATES, processor=processor)
    made = len(calls)
    assert made >= 1
    classifier.predict_proba(photos)
    classifier.predict(photos)
    classifier.logits(photos[:1])
    assert len(calls) == made


@pytest.mark.parametrize("labels, templates, error, message", [
    ([], None, ValueError, "labels is empty"),
    (["cat", "dog", "cat"], None, ValueError, "'cat'"),
    (["cat", "  "], None, ValueError, "labels[1] is an empty string"),
    ("cat", None, TypeError, "wrap a single label in a list"),
    (["cat", 3], None, TypeError, "labels[1] is a int"),
    (["cat"], ["a photo of a cat"], ValueError, "exactly one '{}'"),
    (["cat"], ["a {} and a {}"], ValueError, "exactly one '{}'"),
    (["cat"], ["a photo of a {"], ValueError, "not a valid format string"),
    (["cat"], [], ValueError, "templates is empty"),
])
def test_bad_arguments_are_clear_errors(siglip, labels, templates, error, message):
    model, processor = siglip
    with pytest.raises(error) as info:
        ZeroShotClassifier(model, labels, templates=templates, processor=processor)
    assert message in str(info.value)


def test_bad_batch_size_and_empty_images(siglip):
    model, processor = siglip
    with pytest.raises(ValueError, match="batch_size"):
        ZeroShotClassifier(model, LABELS, processor=processor, batch_size=0)
    classifier = ZeroShotClassifier(model, LABELS, processor=processor)
    with pytest.raises(ValueError, match="No images"):
        classifier.predict_proba([])


def test_unreadable_image_names_the_file(siglip, tmp_path):
    from kvmm.errors import ImageReadError

    model, processor = siglip
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    good = tmp_path / "good.png"
    PIL.Image.new("RGB", (20, 20), (10, 200, 30)).save(good)
    classifier = ZeroShotClassifier(model, LABELS, processor=processor)
    with pytest.raises(ImageReadError, match="broken.png"):
        classifier.predict_proba([good, bad])
