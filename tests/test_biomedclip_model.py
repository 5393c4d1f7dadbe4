"""BiomedCLIP: parity with open_clip's CustomTextCLIP (built offline from the real config,
random weights), the open_clip checkpoint formats, the pickle safety of the .bin reader,
serialization and training.

Tolerances (float32): embeddings 1e-4 abs, logits 1e-3 abs.
"""

from __future__ import annotations

import gc
import json
import pickle
import shutil

import keras
import numpy as np
import pytest
import torch

import hf_checkpoints as hfc
from kvmm.errors import WeightsError
from kvmm.models.biomedclip import BiomedCLIPModel, BiomedCLIPProcessor, BiomedClipVitBase16
from kvmm.models.clip import ClipVitBase16
from kvmm.utils.torch_pickle import UnsafeCheckpointError
from tiny_family import BIOMEDCLIP_TINY_REPO, build_biomedclip_tiny

EMBED_TOL = 1e-4
LOGIT_TOL = 1e-3
REPO = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _assert_parity(model, images, token_ids, ref):
    out = model({"images": images, "token_ids": token_ids})
    np.testing.assert_allclose(_np(out["image_logits"]), ref["image_logits"], atol=LOGIT_TOL, rtol=0)
    np.testing.assert_allclose(_np(out["text_logits"]), ref["text_logits"], atol=LOGIT_TOL, rtol=0)
    np.testing.assert_allclose(model.encode_images(images), ref["image_embeds"], atol=EMBED_TOL, rtol=0)
    np.testing.assert_allclose(model.encode_texts(token_ids), ref["text_embeds"], atol=EMBED_TOL, rtol=0)


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory, bert_vocab):
    """The real BiomedCLIP architecture (ViT-B/16 + PubMedBERT-base), open_clip's .bin."""
    work = tmp_path_factory.mktemp("biomedclip-full")
    reference = hfc.build_biomedclip(hfc.BIOMEDCLIP_224, hfc.PUBMEDBERT, seed=3)
    folder = hfc.save_biomedclip(reference, hfc.BIOMEDCLIP_224, work / "ckpt", "bin", bert_vocab)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 224, 224, 3)).astype("float32")
    token_ids = hfc.bert_token_ids(rng, [3, 40, 254], 256, 30522)
    ref = hfc.biomedclip_reference_outputs(reference, images, token_ids)
    del reference
    gc.collect()
    yield dict(folder=folder, images=images, token_ids=token_ids, ref=ref)
    shutil.rmtree(work, ignore_errors=True)  # GB-sized: not kept to the end of the run


def test_full_size_parity_named_weight_from_hf_cache(full_checkpoint, hf_cache, kvmm_cache):
    c = full_checkpoint
    hfc.install_in_hf_cache(c["folder"], REPO, hf_cache)
    model = BiomedClipVitBase16(weights="microsoft_224")
    assert model.embedding_dim == 512 and model.max_text_length == 256
    assert model.vocabulary_repo == REPO and model.probability == "softmax"
    _assert_parity(model, c["images"], c["token_ids"], c["ref"])
    assert list(kvmm_cache.rglob("*.kvmm.safetensors")), "the conversion is cached"
    processor = BiomedCLIPProcessor.for_model(model)
    assert processor.sequence_length == 256 and processor.image_size == 224
    assert processor(text=["chest x-ray"])["token_ids"].shape == (1, 256)  # vocab.txt from the cache


def test_full_size_checkpoint_is_refused_by_clip(full_checkpoint):
    with pytest.raises(WeightsError, match="config.json|model.safetensors"):
        ClipVitBase16(weights=str(full_checkpoint["folder"]))


# --- tiny checkpoints: formats, errors, serialization ------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, bert_vocab):
    work = tmp_path_factory.mktemp("biomedclip-tiny")
    reference = hfc.build_biomedclip(hfc.BIOMEDCLIP_TINY, hfc.BERT_TINY, seed=7)
    bin_folder = hfc.save_biomedclip(reference, hfc.BIOMEDCLIP_TINY, work / "bin", "bin", bert_vocab)
    st_folder = hfc.save_biomedclip(
        reference, hfc.BIOMEDCLIP_TINY, work / "st", "safetensors", bert_vocab
    )
    rng = np.random.default_rng(1)
    images = rng.normal(size=(3, 32, 32, 3)).astype("float32")
    token_ids = hfc.bert_token_ids(rng, [1, 6, 14], 16, 400)
    ref = hfc.biomedclip_reference_outputs(reference, images, token_ids)
    return dict(reference=reference, bin=bin_folder, st=st_folder, images=images,
                token_ids=token_ids, ref=ref)


@pytest.mark.parametrize("fmt", ["bin", "st"])
def test_tiny_parity_from_local_folder(tiny, fmt):
    model = build_biomedclip_tiny(weights=str(tiny[fmt]))
    _assert_parity(model, tiny["images"], tiny["token_ids"], tiny["ref"])
    assert model.vocabulary_path == str(tiny[fmt])


def test_shorter_text_and_padding_are_handled_like_open_clip(tiny):
    """Pads are masked from the ids themselves: a row cut before its padding embeds the same."""
    model = build_biomedclip_tiny(weights=str(tiny["bin"]))
    token_ids = tiny["token_ids"][:2]  # [CLS] x [SEP] + pads, [CLS] 6 pieces [SEP] + pads
    short = token_ids[:, :9]
    np.testing.assert_allclose(model.encode_texts(short), tiny["ref"]["text_embeds"][:2], atol=EMBED_TOL)


def test_hidden_states_match_timm_blocks(tiny):
    from kvmm.encoders import create_encoder

    tower = create_encoder(build_biomedclip_tiny(weights=str(tiny["bin"])), vision_feature_layer=-2,
                           vision_feature_select_strategy="full")
    assert tower.encoder_type == "biomedclip"
    trunk = tiny["reference"].visual.trunk
    outputs = []
    hook = trunk.blocks[-2].register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        trunk(torch.tensor(tiny["images"]).permute(0, 3, 1, 2))
    hook.remove()
    np.testing.assert_allclose(_np(tower(tiny["images"])), outputs[0].numpy(), atol=1e-4, rtol=0)


def test_safetensors_is_preferred_and_the_pickle_is_never_opened(tiny, tmp_path):
    folder = tmp_path / "both"
    folder.mkdir()
    for file in tiny["st"].iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"not a checkpoint at all")
    model = build_biomedclip_tiny(weights=str(folder))
    np.testing.assert_allclose(model.encode_images(tiny["images"]), tiny["ref"]["image_embeds"],
                               atol=EMBED_TOL)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


def test_pickle_that_runs_code_is_refused(tiny, tmp_path, capsys, hf_cache, kvmm_cache):
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text((tiny["bin"] / "open_clip_config.json").read_text())
    state = {k: v for k, v in tiny["reference"].state_dict().items()}
    state["trap"] = _RunsCode()
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    hfc.install_in_hf_cache(folder, BIOMEDCLIP_TINY_REPO, hf_cache)
    with pytest.raises(UnsafeCheckpointError, match="print, which a plain state dict never needs.*could run code"):
        build_biomedclip_tiny(weights="test_32")
    assert "this pickle ran code" not in capsys.readouterr().out
    assert not list(kvmm_cache.rglob("*.kvmm.safetensors")), "nothing is cached after a refusal"


def test_truncated_pickle_is_reported(tiny, tmp_path):
    folder = tmp_path / "truncated"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text((tiny["bin"] / "open_clip_config.json").read_text())
    data = (tiny["bin"] / "open_clip_pytorch_model.bin").read_bytes()
    (folder / "open_clip_pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="open_clip_pytorch_model.bin.*(truncated|damaged)"):
        build_biomedclip_tiny(weights=str(folder))


def test_tiny_checkpoint_is_refused_by_the_real_variant(tiny):
    with pytest.raises(WeightsError, match="vision_hidden_dim=48 \\(expected 768\\)"):
        BiomedClipVitBase16(weights=str(tiny["bin"]))


def test_unsupported_open_clip_settings_are_named(tiny, tmp_path):
    folder = tmp_path / "avgpool"
    folder.mkdir()
    config = json.loads((tiny["bin"] / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"]["timm_pool"] = "avg"
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="timm_pool='avg'"):
        build_biomedclip_tiny(weights=str(folder))


def test_unknown_weight_name_lists_valid_ones():
    with pytest.raises(WeightsError, match="microsoft_224"):
        BiomedClipVitBase16(weights="openai_224")


def test_keras_round_trip_and_weights_h5(tiny, tmp_path):
    model = build_biomedclip_tiny(weights=str(tiny["bin"]))
    path = tmp_path / "biomedclip.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, BiomedCLIPModel)
    np.testing.assert_allclose(restored.encode_texts(tiny["token_ids"]), tiny["ref"]["text_embeds"],
                               atol=EMBED_TOL)
    model.save_weights(tmp_path / "b.weights.h5")
    again = build_biomedclip_tiny(weights=str(tmp_path / "b.weights.h5"))
    np.testing.assert_allclose(again.encode_images(tiny["images"]), tiny["ref"]["image_embeds"],
                               atol=EMBED_TOL)


@pytest.mark.parametrize("dtype", ["bfloat16", "mixed_bfloat16"])
def test_dtype_policies_run_and_stay_close(tiny, dtype):
    model = build_biomedclip_tiny(weights=str(tiny["bin"]), dtype=dtype)
    out = model({"images": tiny["images"], "token_ids": tiny["token_ids"]})
    assert _np(out["image_logits"]).dtype == np.float32
    cosine = np.sum(model.encode_images(tiny["images"]) * tiny["ref"]["image_embeds"], axis=-1)
    assert cosine.min() > 0.99


def test_probabilities_are_a_softmax_over_texts(tiny):
    model = build_biomedclip_tiny(weights=str(tiny["bin"]))
    logits = _np(model({"images": tiny["images"], "token_ids": tiny["token_ids"]})["image_logits"])
    probs = _np(model.probabilities(logits))
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(-1, keepdims=True), atol=1e-6)


def test_fit_with_contrastive_loss_lowers_the_loss(tiny):
    from kvmm.losses import ContrastiveLoss

    model = build_biomedclip_tiny(weights=str(tiny["bin"]))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=ContrastiveLoss())
    batch = {"images": tiny["images"], "token_ids": tiny["token_ids"]}
    history = model.fit(x=batch, epochs=8, batch_size=3, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_pickle_reader_refuses_globals_outside_the_allow_list(tmp_path):
    from kvmm.utils.torch_pickle import TorchCheckpoint

    path = tmp_path / "x.bin"
    torch.save({"a": torch.ones(2), "b": np.zeros(2)}, path)  # a NumPy array is not allowed
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        TorchCheckpoint(path)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(WeightsError):
        TorchCheckpoint(plain)
