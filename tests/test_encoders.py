"""kvmm.encoders: feature layer / strategy selection against transformers'
``output_hidden_states``, name resolution, configuration, serialization."""

from __future__ import annotations

import dataclasses
import logging

import keras
import numpy as np
import pytest
import torch

# transformers (and the triton it pulls in) must be imported before JAX compiles a
# bfloat16 program in the same process, or importing it segfaults: import it at collection.
import transformers.activations  # noqa: F401

import hf_checkpoints as hfc
from kvmm.encoders import EncoderConfig, VisionTower, create_encoder, detect_encoder_type
from tiny_family import build_clip_tiny, build_tiny


@pytest.fixture(scope="module")
def siglip_ref(tmp_path_factory):
    reference = hfc.build_siglip(hfc.TINY, seed=11)
    folder = hfc.save_checkpoint(reference, tmp_path_factory.mktemp("siglip") / "tiny-siglip")
    return reference, folder


@pytest.fixture(scope="module")
def clip_ref(tmp_path_factory):
    reference = hfc.build_clip(hfc.CLIP_TINY, seed=12)
    folder = hfc.save_checkpoint(reference, tmp_path_factory.mktemp("clip") / "tiny-clip")
    return reference, folder


def _images(seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")


def _hf_states(reference, images):
    with torch.no_grad():
        out = reference.vision_model(
            pixel_values=torch.tensor(images).permute(0, 3, 1, 2), output_hidden_states=True
        )
    return [h.numpy() for h in out.hidden_states]


# (strategy, layer) -> slice of transformers' hidden_states[layer] (CLS at token 0 for CLIP)
CASES = [("default", -2), ("default", -1), ("patch", 0), ("full", -2), ("full", 1)]


@pytest.mark.parametrize("strategy,layer", CASES)
def test_siglip_selection_matches_transformers(siglip_ref, strategy, layer):
    reference, folder = siglip_ref
    tower = create_encoder(str(folder), vision_feature_layer=layer,
                           vision_feature_select_strategy=strategy)
    assert tower.encoder_type == "siglip" and not tower.has_cls_token
    images = _images(1)
    expected = _hf_states(reference, images)[layer]  # SigLIP: no CLS, every strategy keeps all
    got = keras.ops.convert_to_numpy(tower(images))
    assert got.shape == expected.shape == (2, tower.num_tokens, 48)
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("strategy,layer", CASES + [("cls", -2)])
def test_clip_selection_matches_transformers(clip_ref, strategy, layer):
    reference, folder = clip_ref
    tower = create_encoder(str(folder), vision_feature_layer=layer,
                           vision_feature_select_strategy=strategy)
    assert tower.encoder_type == "clip" and tower.has_cls_token
    images = _images(2)
    states = _hf_states(reference, images)[layer]
    expected = {"default": states[:, 1:], "patch": states[:, 1:], "full": states,
                "cls": states[:, :1]}[strategy]
    got = keras.ops.convert_to_numpy(tower(images))
    assert got.shape == expected.shape and got.shape[1] == tower.num_tokens
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_prebuilt_model_and_config_forms(clip_ref, siglip_ref):
    reference, folder = clip_ref
    model = build_clip_tiny(weights=str(folder))
    images = _images(3)
    expected = _hf_states(reference, images)[-2][:, 1:]
    for tower in (
        create_encoder(model),
        create_encoder({"name_or_path": str(folder), "encoder_type": "clip"}),
        create_encoder(EncoderConfig(name_or_path=str(folder), vision_feature_layer=-2)),
    ):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(tower(images)), expected, atol=1e-4)
    siglip = create_encoder(build_tiny(), encoder_type="sigclip", vision_feature_layer=-1)
    assert siglip.encoder_type == "siglip" and siglip.num_tokens == 16


def test_variant_names_and_repo_ids_resolve_without_download(caplog):
    with caplog.at_level(logging.INFO, logger="kvmm.encoders"):
        tower = create_encoder("SigLIPBaseP16", weights=None, image_size=32)
    assert "detected as encoder type 'siglip'" in caplog.text
    assert tower.num_tokens == 4 and tower.hidden_dim == 768
    # A catalog repo id maps to the variant + named weight; weights=None keeps it offline.
    tower = create_encoder("openai/clip-vit-base-patch32", weights=None, image_size=64)
    assert tower.encoder_type == "clip" and tower.num_tokens == 4


def test_detection_rules(siglip_ref, clip_ref):
    assert detect_encoder_type("google/siglip-so400m-patch14-384") == "siglip"
    assert detect_encoder_type("microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224") == "biomedclip"
    assert detect_encoder_type("openai/clip-vit-large-patch14") == "clip"
    assert detect_encoder_type("my-vit") == "clip"
    # A local folder is told by its config.json, whatever its name.
    assert detect_encoder_type(str(siglip_ref[1])) == "siglip"
    assert detect_encoder_type(str(clip_ref[1])) == "clip"


def test_bad_arguments_are_clear(clip_ref):
    folder = str(clip_ref[1])
    with pytest.raises(ValueError, match="Unknown encoder_type 'vit'"):
        create_encoder(folder, encoder_type="vit")
    with pytest.raises(ValueError, match="vision_feature_select_strategy"):
        create_encoder(folder, vision_feature_select_strategy="mean")
    with pytest.raises(ValueError, match="out of range.*3 hidden states"):
        create_encoder(folder, vision_feature_layer=5)
    with pytest.raises(ValueError, match="'cls' needs a tower with a class token"):
        create_encoder(build_tiny(), vision_feature_select_strategy="cls")


def test_keras_round_trip(clip_ref, tmp_path):
    tower = create_encoder(str(clip_ref[1]), vision_feature_layer=-1,
                           vision_feature_select_strategy="full")
    images = _images(4)
    before = keras.ops.convert_to_numpy(tower(images))
    path = tmp_path / "tower.keras"
    tower.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, VisionTower)
    assert restored.vision_feature_select_strategy == "full"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(images)), before, atol=1e-6)
