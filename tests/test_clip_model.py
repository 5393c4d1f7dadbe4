"""CLIP: parity with transformers' CLIPModel, loading paths, serialization.

Tolerances (float32): embeddings 1e-4 abs, logits 1e-3 abs.
"""

from __future__ import annotations

import gc
import json
import shutil

import keras
import numpy as np
import pytest
import torch

import hf_checkpoints as hfc
from kvmm.errors import WeightsError
from kvmm.models.clip import CLIPModel, ClipVitBase16, ClipVitBase32, ClipVitLarge14
from tiny_family import build_clip_tiny

EMBED_TOL = 1e-4
LOGIT_TOL = 1e-3


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _clip_inputs(rng, image_size, num_images, lengths, vocab, bos, eos, total):
    """Images and token ids laid out as CLIP's tokenizer does: BOS, text, EOS, EOS padding."""
    images = rng.normal(size=(num_images, image_size, image_size, 3)).astype("float32")
    token_ids = np.full((len(lengths), total), eos, "int32")
    for row, length in enumerate(lengths):
        token_ids[row, 0] = bos
        token_ids[row, 1 : 1 + length] = rng.integers(0, eos - 1, length)
    mask = (np.arange(total)[None] <= np.array(lengths)[:, None] + 1).astype("int32")
    return images, token_ids, mask


def _assert_parity(model, images, token_ids, ref, **extra):
    out = model({"images": images, "token_ids": token_ids, **extra})
    np.testing.assert_allclose(_np(out["image_logits"]), ref["image_logits"], atol=LOGIT_TOL, rtol=0)
    np.testing.assert_allclose(_np(out["text_logits"]), ref["text_logits"], atol=LOGIT_TOL, rtol=0)
    np.testing.assert_allclose(model.encode_images(images), ref["image_embeds"], atol=EMBED_TOL, rtol=0)
    np.testing.assert_allclose(model.encode_texts(token_ids), ref["text_embeds"], atol=EMBED_TOL, rtol=0)


@pytest.fixture(scope="module")
def b32_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip-vit-base-patch32")
    reference = hfc.build_clip(hfc.CLIP_B32, seed=2)
    hfc.save_checkpoint(reference, folder)
    rng = np.random.default_rng(0)
    images, token_ids, _ = _clip_inputs(rng, 224, 2, [5, 20, 75], 49408, 49406, 49407, 77)
    ref = hfc.reference_outputs(reference, images, token_ids)
    del reference
    gc.collect()
    yield dict(folder=folder, images=images, token_ids=token_ids, ref=ref)
    shutil.rmtree(folder, ignore_errors=True)  # GB-sized: not kept to the end of the run


def test_b32_parity_named_weight_from_hf_cache(b32_checkpoint, hf_cache):
    c = b32_checkpoint
    hfc.install_in_hf_cache(c["folder"], "openai/clip-vit-base-patch32", hf_cache)
    model = ClipVitBase32(weights="openai_224")
    assert model.embedding_dim == 512 and model.max_text_length == 77
    _assert_parity(model, c["images"], c["token_ids"], c["ref"])
    assert model.vocabulary_repo == "openai/clip-vit-base-patch32"


def test_b32_checkpoint_is_refused_by_other_variants(b32_checkpoint):
    with pytest.raises(WeightsError, match="patch_size=32 \\(expected 16\\).*ClipVitBase32"):
        ClipVitBase16(weights=str(b32_checkpoint["folder"]))
    with pytest.raises(WeightsError, match="ClipVitBase32"):
        ClipVitLarge14(weights=str(b32_checkpoint["folder"]))


@pytest.fixture(scope="module")
def tiny_reference():
    return hfc.build_clip(hfc.CLIP_TINY, seed=5)


@pytest.fixture
def tiny_folder(tiny_reference, tmp_path):
    return hfc.save_checkpoint(tiny_reference, tmp_path / "clip-tiny")


def _tiny_inputs(seed=0, image_size=32, lengths=(3, 9, 14)):
    rng = np.random.default_rng(seed)
    return _clip_inputs(rng, image_size, 2, list(lengths), 300, 298, 299, 16)


def test_tiny_parity_with_padding_mask(tiny_reference, tiny_folder):
    model = build_clip_tiny(weights=str(tiny_folder))
    images, token_ids, mask = _tiny_inputs()
    ref = hfc.reference_outputs(tiny_reference, images, token_ids, attention_mask=torch.tensor(mask))
    _assert_parity(model, images, token_ids, ref, padding_mask=mask)


def test_hidden_states_match_transformers(tiny_reference, tiny_folder):
    model = build_clip_tiny(weights=str(tiny_folder))
    images, token_ids, _ = _tiny_inputs(1)
    with torch.no_grad():
        vision = tiny_reference.vision_model(
            pixel_values=torch.tensor(images).permute(0, 3, 1, 2), output_hidden_states=True
        )
        text = tiny_reference.text_model(input_ids=torch.tensor(token_ids).long(), output_hidden_states=True)
    ours_v = model.vision_model(images, return_hidden_states=True)
    ours_t = model.text_model(token_ids, return_hidden_states=True)
    for ours, theirs in ((ours_v, vision), (ours_t, text)):
        assert len(ours["hidden_states"]) == len(theirs.hidden_states)
        for a, b in zip(ours["hidden_states"], theirs.hidden_states):
            np.testing.assert_allclose(_np(a), b.numpy(), atol=1e-4)
        np.testing.assert_allclose(_np(ours["pooled_output"]), theirs.pooler_output.numpy(), atol=1e-4)


@pytest.mark.parametrize("image_size", [48, 24])
def test_other_resolution_matches_interpolate_pos_encoding(tiny_reference, tiny_folder, image_size):
    model = build_clip_tiny(weights=str(tiny_folder), input_shape=(image_size, image_size, 3))
    assert model.vision_model.num_tokens == 1 + (image_size // 8) ** 2
    images, token_ids, _ = _tiny_inputs(2, image_size)
    ref = hfc.reference_outputs(tiny_reference, images, token_ids, interpolate_pos_encoding=True)
    _assert_parity(model, images, token_ids, ref)


def test_laion_style_gelu_and_legacy_eos_config(tmp_path):
    """LAION checkpoints use exact GELU; old OpenAI configs say eos_token_id=2 (pool at argmax)."""
    config = json.loads(json.dumps(hfc.CLIP_TINY))
    config["vision_config"]["hidden_act"] = "gelu"
    config["text_config"].update(hidden_act="gelu", eos_token_id=2)
    reference = hfc.build_clip(config, seed=6)
    folder = hfc.save_checkpoint(reference, tmp_path / "laion-tiny")
    model = build_clip_tiny(weights=str(folder))
    assert model.vision_model.activation == "gelu" and model.text_model.eos_token_id == 2
    images, token_ids, _ = _tiny_inputs(3)
    _assert_parity(model, images, token_ids, hfc.reference_outputs(reference, images, token_ids))


def test_siglip_checkpoint_is_refused(tmp_path):
    folder = hfc.save_checkpoint(hfc.build_siglip(hfc.TINY), tmp_path / "siglip")
    with pytest.raises(WeightsError, match="'siglip' model, not CLIP"):
        build_clip_tiny(weights=str(folder))


def test_softmax_probabilities_and_shapes():
    model = build_clip_tiny()
    images, token_ids, _ = _tiny_inputs(4)
    out = model({"images": images, "token_ids": token_ids})
    assert tuple(out["image_logits"].shape) == (2, 3) and tuple(out["text_logits"].shape) == (3, 2)
    probs = _np(keras.ops.softmax(out["image_logits"], axis=-1))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_keras_file_round_trip_and_config(tmp_path):
    model = build_clip_tiny()
    images, token_ids, _ = _tiny_inputs(5)
    clone = CLIPModel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    model.save(tmp_path / "clip.keras")
    loaded = keras.saving.load_model(tmp_path / "clip.keras")
    assert isinstance(loaded, CLIPModel)
    x = {"images": images, "token_ids": token_ids}
    np.testing.assert_allclose(_np(loaded(x)["image_logits"]), _np(model(x)["image_logits"]), atol=1e-5)


@pytest.mark.parametrize("policy", ["bfloat16", "mixed_bfloat16"])
def test_dtype_policies_run(policy):
    reference = build_clip_tiny()
    model = build_clip_tiny(dtype=policy)
    model.set_weights(reference.get_weights())
    images, token_ids, _ = _tiny_inputs(6)
    np.testing.assert_allclose(
        model.encode_images(images), reference.encode_images(images), atol=0.05
    )
    out = model({"images": images, "token_ids": token_ids})
    assert keras.backend.standardize_dtype(out["image_logits"].dtype) == "float32"


def test_processor_output_feeds_the_model(b32_checkpoint, clip_vocab, tmp_path, sample_images):
    """A checkpoint folder with its own vocabulary: CLIPProcessor.for_model(model) picks it
    up, and its output goes straight into the model, matching transformers end to end."""
    import shutil

    from kvmm.models.clip import CLIPProcessor

    folder = tmp_path / "clip-with-vocab"
    shutil.copytree(b32_checkpoint["folder"], folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(f"{clip_vocab}/{name}", folder / name)
    model = ClipVitBase32(weights=str(folder))
    processor = CLIPProcessor.for_model(model)
    assert model.vocabulary_path == str(folder)
    inputs = processor(text=["a photo of a cat", "coffee!"], images=[sample_images["chelsea"]])
    out = model(inputs)
    reference = _reference_from_folder(folder)
    with torch.no_grad():
        ref = reference(
            input_ids=torch.tensor(inputs["token_ids"]).long(),
            attention_mask=torch.tensor(inputs["padding_mask"]).long(),
            pixel_values=torch.tensor(inputs["images"]).permute(0, 3, 1, 2),
        )
    np.testing.assert_allclose(_np(out["image_logits"]), ref.logits_per_image.numpy(), atol=LOGIT_TOL)


def _reference_from_folder(folder):
    from transformers import CLIPModel as Reference

    return Reference.from_pretrained(folder).eval()
