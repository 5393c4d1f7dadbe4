"""The kvmm command end to end on the shipped demo model, SigLIPDemo(weights="shapes"), the
default model: classify, embed, convert, index and search (a real Milvus Lite database in a
temporary folder) on freshly drawn shape images, with the results checked against what the
images show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kvmm.cli import main
from kvmm.demo import shapes
from kvmm.models.siglip import SigLIPDemo, SigLIPProcessor

try:  # imported here, not inside a test under capsys: its log handlers keep the stream
    import pymilvus  # noqa: F401
except ImportError:
    pymilvus = None

SEED = 4242
#: The shipped demo model (the command's default is Google's SigLIP, fetched from the Hub).
DEMO = ("--model", "SigLIPDemo", "--weights", "shapes")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def caption_of(path) -> str:
    """Files are written as ``NN_a_small_red_circle.png``."""
    return Path(path).stem.split("_", 1)[1].replace("_", " ")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Every seen combination once (60 images) plus four more red circles (two small, two
    large), a third of them in a sub-folder."""
    root = tmp_path_factory.mktemp("shapes")
    (root / "more").mkdir()
    pairs = shapes.generate(60, seed=SEED, combinations=shapes.training_combinations())
    reds = [c for c in shapes.training_combinations() if c.pair == ("red", "circle")]
    pairs += shapes.generate(4, seed=SEED + 1, combinations=reds)
    paths = []
    for i, (image, combination) in enumerate(pairs):
        where = root / "more" if i % 3 == 0 else root
        path = where / f"{i:02d}_{combination.caption.replace(' ', '_')}.png"
        image.save(path)
        paths.append(str(path.resolve()))
    return root, paths


@pytest.fixture(scope="module")
def demo():
    model = SigLIPDemo(weights="shapes")
    return model, SigLIPProcessor.for_model(model)


def test_classify_with_the_demo_model_and_the_default_template(folder, capsys):
    _, paths = folder
    labels = ["red circle", "blue square", "green triangle", "yellow star", "purple diamond",
              "orange cross"]
    # one large shape of each label (the demo model is surest of large shapes)
    chosen = [next(p for p in paths if caption_of(p) == f"a large {label}") for label in labels]
    # no --template: "a photo of a {}."
    code, out, err = run(capsys, "classify", *chosen, "--labels", *labels, "--json", *DEMO)
    assert code == 0, err
    results = json.loads(out)
    assert [r["image"] for r in results] == chosen
    right = 0
    for result, label in zip(results, labels):
        scores = result["scores"]
        assert set(scores) == set(labels) and all(0 <= s <= 1 for s in scores.values())
        assert result["label"] == max(scores, key=scores.get)
        right += result["label"] == label
    assert right >= 5, results
    # human-readable output: the file, then the --top scores, best first
    code, out, _ = run(capsys, "classify", chosen[0], "--labels", *labels, "--top", "2", *DEMO)
    lines = out.splitlines()
    assert code == 0 and lines[0] == chosen[0] and len(lines) == 3
    first, second = (float(line.split()[0]) for line in lines[1:])
    assert first >= second and lines[1].split(maxsplit=1)[1] == results[0]["label"]


def test_classify_full_captions_with_a_template(folder, demo, capsys):
    _, paths = folder
    labels = shapes.labels()
    code, out, _ = run(capsys, "classify", *paths[:8], "--labels", *labels, "--template", "{}",
                       "--json", *DEMO)
    assert code == 0
    right = sum(r["label"] == caption_of(r["image"]) for r in json.loads(out))
    assert right >= 6, out


def test_embed_and_convert(folder, demo, tmp_path, capsys):
    root, paths = folder
    model, processor = demo
    code, out, _ = run(capsys, "embed", root, "--out", tmp_path / "v.npy", "--model", "SigLIPDemo",
                       "--weights", "shapes", "--no-progress", "--batch-size", "16")
    assert code == 0 and f"Wrote {len(paths)} embeddings of size {model.embedding_dim}" in out
    kept = (tmp_path / "v.paths.txt").read_text().split()
    assert sorted(str(Path(p).resolve()) for p in kept) == sorted(paths)
    vectors = np.load(tmp_path / "v.npy")
    expected = model.encode_images(processor(image_paths=kept)["images"])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    code, _, _ = run(capsys, "embed", "a red circle", "a blue square", "--text", "--out",
                     tmp_path / "t.jsonl", "--model", "SigLIPDemo", "--weights", "shapes")
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert code == 0 and [r["text"] for r in rows] == ["a red circle", "a blue square"]
    np.testing.assert_allclose([r["embedding"] for r in rows],
                               model.encode_texts(processor(text=["a red circle", "a blue square"])["token_ids"]),
                               atol=1e-5)

    h5 = tmp_path / "demo_copy.weights.h5"
    code, out, _ = run(capsys, "convert", "SigLIPDemo", "--weights", "shapes", "--out", h5)
    assert code == 0 and h5.is_file() and "Wrote" in out
    copy = SigLIPDemo(weights=str(h5))
    for a, b in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_index_and_search(folder, tmp_path, capsys):
    if pymilvus is None:
        pytest.skip("needs pymilvus (pip install kvmm[search])")
    root, paths = folder
    db = tmp_path / "shapes.db"
    code, out, err = run(capsys, "index", root, "--db", db, "--no-progress", "--json", *DEMO)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["added"], summary["total"], summary["failed"]) == (len(paths), len(paths), [])

    # text search: "a red circle" finds the red circles (6 of the 64 images)
    reds = [p for p in paths if caption_of(p).endswith("red circle")]
    assert len(reds) == 6
    code, out, _ = run(capsys, "search", "a red circle", "--db", db, "-k", 6, "--json", *DEMO)
    hits = json.loads(out)
    assert code == 0 and len(hits) == 6
    assert sum(h["path"] in reds for h in hits) >= 5, [caption_of(h["path"]) for h in hits]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # ... and "a large blue cross" puts a large blue cross first (human-readable output)
    code, out, _ = run(capsys, "search", "a large blue cross", "--db", db, "-k", 3, *DEMO)
    top = out.splitlines()[0].split()[-1]
    assert code == 0 and caption_of(top) == "a large blue cross", out

    # image search: every image queried is its own top hit
    for query in (paths[0], paths[7], paths[-1]):
        code, out, _ = run(capsys, "search", "--image", query, "--db", db, "-k", 3, "--json", *DEMO)
        hits = json.loads(out)
        assert code == 0 and hits[0]["path"] == query
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)



def test_the_default_model_is_googles_and_offline_points_to_the_demo(folder, hf_cache, capsys):
    """Without --model the command uses SigLIPBaseP16 / google_224; offline with nothing
    cached it fails in one line that names the cache problem and the offline choices."""
    _, paths = folder
    code, _, err = run(capsys, "classify", paths[0], "--labels", "red circle")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "google/siglip-base-patch16-224" in lines[0] and "--model SigLIPDemo" in lines[0]
