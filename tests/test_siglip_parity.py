"""Numerical parity with transformers' SiglipModel on the real architectures.

Checkpoints are built with transformers (random weights, every tensor perturbed), saved
in Hugging Face format and loaded through the same `weights=` paths users take.
Tolerances (float32): embeddings 1e-4 abs, logits 1e-3 abs.
"""

from __future__ import annotations

import gc

import keras
import numpy as np
import pytest

import hf_checkpoints as hfc
from hf_checkpoints import random_inputs as _inputs
from kvmm.models.siglip import SigLIPBaseP16, SigLIPLargeP16, SigLIPSo400mP14

EMBED_TOL = 1e-4
LOGIT_TOL = 1e-3


def _assert_parity(model, images, token_ids, ref):
    out = model({"images": images, "token_ids": token_ids})
    for key in ("image_logits", "text_logits"):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(out[key]), ref[key], atol=LOGIT_TOL, rtol=0
        )
    np.testing.assert_allclose(model.encode_images(images), ref["image_embeds"], atol=EMBED_TOL, rtol=0)
    np.testing.assert_allclose(model.encode_texts(token_ids), ref["text_embeds"], atol=EMBED_TOL, rtol=0)


def test_base_parity_from_local_folder(base_checkpoint):
    c = base_checkpoint
    model = SigLIPBaseP16(weights=str(c["folder"]))
    assert model.image_size == 224 and model.max_text_length == 64
    _assert_parity(model, c["images"], c["token_ids"], c["ref"])


def test_base_parity_named_weight_from_hf_cache(base_checkpoint, hf_cache):
    c = base_checkpoint
    hfc.install_in_hf_cache(c["folder"], "google/siglip-base-patch16-224", hf_cache)
    model = SigLIPBaseP16(weights="google_224")
    _assert_parity(model, c["images"], c["token_ids"], c["ref"])
    assert model.weights_source.startswith("SigLIPBaseP16/google_224")


def test_base_at_384_matches_transformers_interpolate_pos_encoding(base_checkpoint):
    c = base_checkpoint
    model = SigLIPBaseP16(weights=str(c["folder"]), input_shape=(384, 384, 3))
    assert model.vision_model.num_tokens == 24 * 24
    out = model({"images": c["big"], "token_ids": c["token_ids"]})
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out["image_logits"]), c["ref384"]["image_logits"], atol=LOGIT_TOL
    )
    np.testing.assert_allclose(model.encode_images(c["big"]), c["ref384"]["image_embeds"], atol=EMBED_TOL)


def test_hidden_states_match_transformers(tmp_path):
    import torch

    reference = hfc.build_siglip(hfc.TINY, seed=3)
    folder = hfc.save_checkpoint(reference, tmp_path / "tiny")
    model = _tiny_model(folder)
    rng = np.random.default_rng(1)
    images, token_ids = _inputs(rng, 32, 2, 2, 12, 120)
    with torch.no_grad():
        vision = reference.vision_model(
            pixel_values=torch.tensor(images).permute(0, 3, 1, 2), output_hidden_states=True
        )
        text = reference.text_model(input_ids=torch.tensor(token_ids).long(), output_hidden_states=True)
    ours_v = model.vision_model(images, return_hidden_states=True)
    ours_t = model.text_model(token_ids, return_hidden_states=True)
    for ours, theirs in ((ours_v, vision), (ours_t, text)):
        assert len(ours["hidden_states"]) == len(theirs.hidden_states)
        for a, b in zip(ours["hidden_states"], theirs.hidden_states):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(a), b.numpy(), atol=1e-4)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(ours["last_hidden_state"]),
            theirs.last_hidden_state.numpy(), atol=1e-4,
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(ours["pooled_output"]), theirs.pooler_output.numpy(), atol=1e-4
        )


@pytest.mark.parametrize("image_size", [48, 56, 24])
def test_tiny_interpolation_matches_transformers(tmp_path, image_size):
    reference = hfc.build_siglip(hfc.TINY, seed=4)
    folder = hfc.save_checkpoint(reference, tmp_path / "tiny")
    model = _tiny_model(folder, input_shape=(image_size, image_size, 3))
    rng = np.random.default_rng(2)
    images, token_ids = _inputs(rng, image_size, 2, 3, 12, 120)
    ref = hfc.reference_outputs(reference, images, token_ids, interpolate_pos_encoding=True)
    _assert_parity(model, images, token_ids, ref)


def test_shorter_text_slices_positions_like_transformers(tmp_path):
    reference = hfc.build_siglip(hfc.TINY, seed=5)
    folder = hfc.save_checkpoint(reference, tmp_path / "tiny")
    model = _tiny_model(folder)
    rng = np.random.default_rng(3)
    images, token_ids = _inputs(rng, 32, 1, 2, 7, 120)
    _assert_parity(model, images, token_ids, hfc.reference_outputs(reference, images, token_ids))


def _tiny_model(folder, **kwargs):
    from tiny_family import build_tiny

    return build_tiny(weights=str(folder), **kwargs)


# ---- full-size Large/16 and So400m/14: once, on one backend (they take minutes) --------
def large(test):
    """Full-size checkpoint: marked ``large`` (deselect with ``-m "not large"``), JAX only."""
    only_jax = pytest.mark.skipif(
        keras.backend.backend() != "jax",
        reason="full-size Large/So400m parity runs on the JAX backend only",
    )
    return pytest.mark.large(only_jax(test))


def _full_size_parity(builder, config, image_size, length, vocab, tmp_path, weights_name=None,
                      repo_id=None, hf_cache=None):
    reference = hfc.build_siglip(config, seed=7, scale=0.01)
    folder = hfc.save_checkpoint(reference, tmp_path / "ckpt")
    rng = np.random.default_rng(4)
    images, token_ids = _inputs(rng, image_size, 1, 2, length, vocab)
    ref = hfc.reference_outputs(reference, images, token_ids)
    del reference
    gc.collect()
    if weights_name:
        hfc.install_in_hf_cache(folder, repo_id, hf_cache)
        model = builder(weights=weights_name)
    else:
        model = builder(weights=str(folder))
    _assert_parity(model, images, token_ids, ref)
    return model


@large
def test_large_p16_256_parity(tmp_path):
    model = _full_size_parity(SigLIPLargeP16, hfc.LARGE_256, 256, 64, 32000, tmp_path)
    assert model.embedding_dim == 1024


@large
def test_so400m_p14_224_parity_and_16_text_positions(tmp_path, hf_cache):
    model = _full_size_parity(
        SigLIPSo400mP14, hfc.SO400M_224, 224, 16, 32000, tmp_path,
        weights_name="google_224", repo_id="google/siglip-so400m-patch14-224", hf_cache=hf_cache,
    )
    assert model.max_text_length == 16 and model.vision_model.num_tokens == 16 * 16


@large
def test_multilingual_base_256_has_250000_rows(tmp_path, hf_cache):
    model = _full_size_parity(
        SigLIPBaseP16, hfc.MULTILINGUAL_256, 256, 64, 250000, tmp_path,
        weights_name="google_multilingual_256",
        repo_id="google/siglip-base-patch16-256-multilingual", hf_cache=hf_cache,
    )
    assert model.vocabulary_size == 250000
