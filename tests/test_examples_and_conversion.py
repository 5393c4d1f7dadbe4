"""The example scripts and the conversion tool, run as users run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import hf_checkpoints as hfc
from conversion.convert import convert
from conversion.convert import main as convert_main
from kvmm.errors import KvmmError
from tiny_family import (CLIP_TINY_FAMILY, TINY_FAMILY, assert_same_model, build_clip_tiny,
                         build_tiny)

ROOT = Path(__file__).resolve().parent.parent


def test_zero_shot_example_runs_on_a_local_checkpoint(base_checkpoint, tmp_path):
    import skimage.data

    photo = tmp_path / "chelsea.png"
    PIL.Image.fromarray(skimage.data.chelsea()).save(photo)
    env = dict(os.environ, KVMM_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "siglip_zero_shot.py"),
         "--weights", str(base_checkpoint["folder"]), "--images", str(photo),
         "--labels", "cat", "dog", "coffee"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{photo}:"
    assert sorted(line.split()[0] for line in lines[1:]) == ["cat", "coffee", "dog"]
    probs = [float(line.split()[-1].rstrip("%")) for line in lines[1:]]
    assert all(0.0 <= p <= 100.0 for p in probs)


def test_convert_and_verify_against_transformers(tmp_path):
    reference = hfc.build_siglip(hfc.TINY, seed=21)
    folder = hfc.save_checkpoint(reference, tmp_path / "tiny")
    out = tmp_path / "tiny.weights.h5"
    logs = []
    report = convert("SigLIPTiny", str(folder), out, verify=True, family=TINY_FAMILY, log=logs.append)
    assert max(report.values()) < 1e-4
    assert out.is_file() and "Wrote" in logs[-1]
    loaded = build_tiny(weights=str(out))
    direct = build_tiny(weights=str(folder))
    images = np.zeros((1, 32, 32, 3), "float32")
    assert_same_model(loaded, direct, lambda m: m.encode_images(images))


def test_convert_verifies_at_another_resolution(tmp_path):
    folder = hfc.save_checkpoint(hfc.build_siglip(hfc.TINY, seed=22), tmp_path / "tiny")
    report = convert("SigLIPTiny", str(folder), tmp_path / "t.weights.h5", input_shape=(48, 48, 3),
                     verify=True, family=TINY_FAMILY, log=lambda *_: None)
    assert max(report.values()) < 1e-4


def test_verification_failure_is_reported_and_writes_nothing(tmp_path, monkeypatch):
    from conversion import convert as convert_module

    folder = hfc.save_checkpoint(hfc.build_siglip(hfc.TINY, seed=23), tmp_path / "tiny")
    monkeypatch.setattr(convert_module, "verify_against_reference", lambda *a, **k: {
        "image_embeds": 0.5, "text_embeds": 0.0, "image_logits": 0.0})
    out = tmp_path / "bad.weights.h5"
    with pytest.raises(KvmmError, match="Verification failed"):
        convert("SigLIPTiny", str(folder), out, verify=True, family=TINY_FAMILY, log=lambda *_: None)
    assert not out.exists()


def test_convert_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert convert_main(["SigLIPBaseP16", "--weights", "google_999", "--out", str(tmp_path / "x.weights.h5")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Unknown weights 'google_999'")
    assert convert_main(["SigLIPBaseP16", "--weights", "google_224", "--out", str(tmp_path / "x.h5")]) == 1
    assert "must end with '.weights.h5'" in capsys.readouterr().err


def test_convert_and_verify_a_clip_checkpoint(tmp_path):
    folder = hfc.save_checkpoint(hfc.build_clip(hfc.CLIP_TINY, seed=24), tmp_path / "clip")
    out = tmp_path / "clip.weights.h5"
    report = convert("ClipTiny", str(folder), out, verify=True, family=CLIP_TINY_FAMILY,
                     log=lambda *_: None)
    assert max(report.values()) < 1e-4
    images = np.zeros((1, 32, 32, 3), "float32")
    assert_same_model(build_clip_tiny(weights=str(out)), build_clip_tiny(weights=str(folder)),
                      lambda m: m.encode_images(images))


def test_convert_and_verify_a_biomedclip_checkpoint_against_open_clip(tmp_path, bert_vocab):
    from tiny_family import BIOMEDCLIP_TINY_FAMILY, build_biomedclip_tiny

    reference = hfc.build_biomedclip(hfc.BIOMEDCLIP_TINY, hfc.BERT_TINY, seed=25)
    folder = hfc.save_biomedclip(reference, hfc.BIOMEDCLIP_TINY, tmp_path / "bm", "bin", bert_vocab)
    out = tmp_path / "bm.weights.h5"
    logs = []
    report = convert("BiomedClipTiny", str(folder), out, verify=True,
                     family=BIOMEDCLIP_TINY_FAMILY, log=logs.append)
    assert max(report.values()) < 1e-4 and any("open_clip" in line for line in logs)
    images = np.ones((1, 32, 32, 3), "float32")
    assert_same_model(build_biomedclip_tiny(weights=str(out)),
                      build_biomedclip_tiny(weights=str(folder)),
                      lambda m: m.encode_images(images))
