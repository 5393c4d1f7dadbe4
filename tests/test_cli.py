"""The kvmm command end to end (in process through kvmm.cli.main, plus one run of the real
console script): convert, embed, index, search, classify, list, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_search import FAMILY, build_tiny, tiny_checkpoint, write_images

import kvmm.cli
from kvmm.cli import main
from kvmm.models.siglip import SigLIPProcessor

pytest.importorskip("pymilvus")


@pytest.fixture(autouse=True)
def tiny_family_registered(monkeypatch):
    monkeypatch.setattr(kvmm.cli, "EXTRA_FAMILIES", [FAMILY])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, spm_vocab):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), spm_vocab)


@pytest.fixture(scope="module")
def reference(checkpoint):
    model = build_tiny(weights=str(checkpoint))
    processor = SigLIPProcessor.for_model(model)

    def images(paths):
        return model.encode_images(processor(image_paths=list(paths))["images"])

    def texts(texts):
        return model.encode_texts(processor(text=list(texts))["token_ids"])

    return images, texts


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_convert_then_embed_index_and_search(checkpoint, reference, sample_images, tmp_path, capsys):
    images, texts = reference
    h5 = tmp_path / "tiny.weights.h5"
    code, out, _ = run(capsys, "convert", "SigLIPTiny", "--weights", checkpoint, "--out", h5,
                       "--verify", "--json")
    assert code == 0 and h5.is_file()
    verification = json.loads(out)["verification"]
    assert max(verification.values()) < 1e-4

    photos = tmp_path / "photos"
    paths = write_images(photos, sample_images)
    model_args = ["--model", "SigLIPTiny", "--weights", h5, "--vocabulary", checkpoint, "--no-progress"]

    # embed: .npy (+ paths), .jsonl, .parquet, texts
    code, out, _ = run(capsys, "embed", photos, "--out", tmp_path / "v.npy", *model_args, "--batch-size", 3)
    assert code == 0 and "Wrote 8 embeddings" in out
    kept = (tmp_path / "v.paths.txt").read_text().split()
    assert sorted(str(Path(p).resolve()) for p in kept) == sorted(paths)
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), images(kept), atol=1e-5)
    code, _, _ = run(capsys, "embed", paths[0], paths[1], "--out", tmp_path / "v.jsonl", *model_args)
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert code == 0 and [r["path"] for r in rows] == paths[:2]
    np.testing.assert_allclose([r["embedding"] for r in rows], images(paths[:2]), atol=1e-5)
    pq = pytest.importorskip("pyarrow.parquet")
    code, _, _ = run(capsys, "embed", "a red circle", "a cat", "--text", "--out",
                     tmp_path / "t.parquet", *model_args)
    table = pq.read_table(tmp_path / "t.parquet").to_pydict()
    assert code == 0 and table["text"] == ["a red circle", "a cat"]
    np.testing.assert_allclose(table["embedding"], texts(["a red circle", "a cat"]), atol=1e-5)

    # index, then search by image (own top hit) and by text (brute-force ranking)
    (photos / "corrupt.png").write_bytes(b"garbage")
    db = tmp_path / "photos.db"
    code, out, err = run(capsys, "index", photos, "--db", db, *model_args, "--json")
    summary = json.loads(out)
    assert code == 0 and (summary["added"], summary["total"]) == (8, 8)
    assert len(summary["failed"]) == 1 and "corrupt.png" in err
    code, out, _ = run(capsys, "search", "--image", paths[3], "--db", db, "-k", 3, *model_args, "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 3 and hits[0]["path"] == paths[3]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    code, out, _ = run(capsys, "search", "a red circle", "--db", db, "-k", 2, *model_args)
    expected = np.argsort(-(images(paths) @ texts(["a red circle"])[0]))[:2]
    assert code == 0 and [line.split()[-1] for line in out.splitlines()] == [paths[i] for i in expected]

    # incremental: a deleted file is removed, nothing re-embedded
    os.remove(paths[5])
    code, out, _ = run(capsys, "index", photos, "--db", db, *model_args, "--json")
    summary = json.loads(out)
    assert (summary["added"], summary["updated"], summary["unchanged"], summary["removed"],
            summary["total"]) == (0, 0, 7, 1, 7)

    # another model is refused (exit 3)
    code, _, err = run(capsys, "search", "a cat", "--db", db, "--model", "SigLIPTiny",
                       "--weights", checkpoint, "--no-progress")
    assert code == 3 and "was indexed with SigLIPTiny" in one_error_line(err)


def test_classify(checkpoint, sample_images, tmp_path, capsys):
    zero_shot = pytest.importorskip("kvmm.zero_shot")
    path = tmp_path / "cat.png"
    sample_images["chelsea"].save(path)
    labels = ["cat", "dog", "red circle"]
    code, out, _ = run(capsys, "classify", path, "--labels", *labels, "--template", "a photo of a {}",
                       "--model", "SigLIPTiny", "--weights", checkpoint, "--json")
    assert code == 0
    result = json.loads(out)[0]
    model = build_tiny(weights=str(checkpoint))
    expected = zero_shot.ZeroShotClassifier(model, labels, templates=["a photo of a {}"]).predict_proba(
        [sample_images["chelsea"].convert("RGB")])[0]
    np.testing.assert_allclose([result["scores"][label] for label in labels], expected, atol=1e-5)
    assert result["label"] == labels[int(np.argmax(expected))]


def test_list(capsys):
    code, out, _ = run(capsys, "list", "--json")
    listing = json.loads(out)
    variants = {m["variant"]: m["weights"] for m in listing["models"]}
    assert code == 0 and variants["SigLIPBaseP16"]["google_224"] == "google/siglip-base-patch16-224"
    assert "ClipVitBase32" in variants
    code, out, _ = run(capsys, "list")
    assert code == 0 and "SigLIPBaseP16" in out and "google/siglip-base-patch16-224" in out


@pytest.mark.parametrize("argv, exit_code, message", [
    (["classify", "{tmp}/missing.jpg", "--labels", "cat"], 2, "No such file: "),
    (["classify", "{img}", "--labels"], 2, "--labels needs at least one"),
    (["classify", "{img}", "--labels", "cat", "--model", "NoSuchModel"], 2, "Unknown model 'NoSuchModel'"),
    (["embed", "{img}", "--out", "{tmp}/x.npy", "--model", "SigLIPTiny", "--weights", "google_999"],
     2, "Unknown weights 'google_999'"),
    (["embed", "{img}", "--out", "{tmp}/x.csv"], 2, "--out must end with"),
    (["search", "--db", "{tmp}/none.db"], 2, "Give a TEXT query or --image"),
    (["search", "a cat", "--db", "{tmp}/none.db"], 2, "No such database"),
    (["index", "{tmp}/nowhere", "--db", "{tmp}/x.db"], 2, "No such folder"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_bad_input_is_one_line_and_nonzero(argv, exit_code, message, tmp_path, sample_images, capsys):
    img = tmp_path / "img.png"
    sample_images["camera"].save(img)
    argv = [a.format(tmp=tmp_path, img=img) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == exit_code
    assert message in one_error_line(err)


def test_console_script(tmp_path):
    script = Path(sys.executable).with_name("kvmm")
    if not script.exists():
        pytest.skip("console script not installed (pip install -e .)")
    done = subprocess.run([str(script), "embed", str(tmp_path / "missing.png"), "--out",
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: No such file: {tmp_path / 'missing.png'}"
    help_text = subprocess.run([str(script), "search", "--help"], capture_output=True, text=True,
                               timeout=120)
    assert help_text.returncode == 0 and "kvmm search" in help_text.stdout
