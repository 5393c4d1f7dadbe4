"""kvmm.search.ImageIndex on a real Milvus Lite database: indexing, incremental updates,
unreadable files, model identity, resuming an interrupted run, text and image search."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import PIL.Image
import pytest
from tiny_family import TINY_FAMILY

import hf_checkpoints as hfc
from kvmm import Embedder
from kvmm.models.siglip import SigLIPProcessor

pytest.importorskip("pymilvus")
from kvmm.search import ImageIndex, ModelMismatchError  # noqa: E402

from kvmm.loading import create_model  # noqa: E402

#: The tiny SigLIP of tiny_family with room for the test SentencePiece vocabulary (640 rows),
#: so that .weights.h5 files of it load without a checkpoint config.
VOCAB = 640
FAMILY = dataclasses.replace(TINY_FAMILY, variants={
    **TINY_FAMILY.variants,
    "SigLIPTiny": {**TINY_FAMILY.variants["SigLIPTiny"], "vocabulary_size": VOCAB},
})


def build_tiny(weights=None):
    return create_model(FAMILY, "SigLIPTiny", weights=weights)


PHOTOS = ("chelsea", "coffee", "astronaut", "camera", "retina")


def tiny_checkpoint(folder, spm_vocab, seed=5):
    """A tiny SigLIP checkpoint folder (transformers, random weights) with a vocabulary."""
    config = {**hfc.TINY, "text_config": {**hfc.TINY["text_config"], "vocab_size": VOCAB}}
    return hfc.save_checkpoint(hfc.build_siglip(config, seed=seed), folder, vocabulary=spm_vocab)


def write_images(folder, sample_images, colours=3):
    """The skimage photos (one in a sub-folder) and plain coloured squares as PNG files."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(PHOTOS):
        path = folder / ("sub" if i == 0 else "") / f"{name}.png"
        sample_images[name].convert("RGB").resize((64, 64)).save(path)
        paths.append(path)
    for i in range(colours):
        path = folder / f"colour{i}.png"
        PIL.Image.new("RGB", (40, 40), ((90 * i) % 256, 200 - 60 * i, 40 * i)).save(path)
        paths.append(path)
    return [str(p.resolve()) for p in paths]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, spm_vocab):
    folder = tiny_checkpoint(tmp_path_factory.mktemp("tiny"), spm_vocab)
    model = build_tiny(weights=str(folder))
    return model, SigLIPProcessor.for_model(model)


@pytest.fixture
def embedder(tiny):
    model, processor = tiny
    return Embedder(model, processor, batch_size=2, progress=False)


def reference_vectors(tiny, paths):
    model, processor = tiny
    return model.encode_images(processor(image_paths=list(paths))["images"])


def test_index_search_and_incremental_updates(tiny, embedder, sample_images, tmp_path):
    photos = tmp_path / "photos"
    paths = write_images(photos, sample_images)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    (photos / "notes.txt").write_text("not an image")
    index = ImageIndex(tmp_path / "index.db", embedder, weights_label="tiny")
    report = index.index_folder(photos)
    assert (report.added, report.updated, report.unchanged, report.removed) == (8, 0, 0, 0)
    assert [os.path.basename(p) for p, _ in report.failed] == ["broken.jpg"]
    assert set(index.entries()) == set(paths)
    stored = index.vectors(paths)
    np.testing.assert_allclose(np.stack([stored[p] for p in paths]),
                               reference_vectors(tiny, paths), atol=1e-5)

    # every image is its own top hit
    for path in paths:
        top, score = index.search_image(path, k=3)[0]
        assert top == path and score == pytest.approx(1.0, abs=1e-4)
    # text search ranks like a brute-force cosine search
    query = embedder.encode_texts(["a red circle"])[0]
    expected = np.argsort(-(reference_vectors(tiny, paths) @ query))[:4]
    hits = index.search_text("a red circle", k=4)
    assert [p for p, _ in hits] == [paths[i] for i in expected]

    # nothing changed: nothing embedded
    again = index.index_folder(photos)
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 8, 0)

    # one changed, one deleted, one new
    sample_images["coffee"].convert("RGB").resize((64, 64)).rotate(90).save(paths[1])
    os.utime(paths[1], (1, 1))
    os.remove(paths[2])
    new = photos / "sub" / "deeper" / "new.png"
    new.parent.mkdir()
    PIL.Image.new("RGB", (30, 30), (255, 0, 0)).save(new)
    third = index.index_folder(photos)
    assert (third.added, third.updated, third.unchanged, third.removed) == (1, 1, 6, 1)
    now = [p for p in paths if p != paths[2]] + [str(new.resolve())]
    assert set(index.entries()) == set(now) and len(index) == 8
    np.testing.assert_allclose(index.vectors([paths[1]])[paths[1]],
                               reference_vectors(tiny, [paths[1]])[0], atol=1e-5)
    index.close()


def test_other_model_is_refused(tiny, embedder, sample_images, tmp_path, spm_vocab):
    write_images(tmp_path / "p", sample_images, colours=0)
    ImageIndex(tmp_path / "i.db", embedder, weights_label="tiny").index_folder(tmp_path / "p")
    other_folder = tiny_checkpoint(tmp_path / "other", spm_vocab, seed=9)
    other = build_tiny(weights=str(other_folder))
    other_embedder = Embedder(other, SigLIPProcessor.for_model(other), progress=False)
    with pytest.raises(ModelMismatchError, match="indexed with SigLIPTiny weights=tiny"):
        ImageIndex(tmp_path / "i.db", other_embedder, weights_label=str(other_folder))
    # the original model still works on it
    assert len(ImageIndex(tmp_path / "i.db", embedder, weights_label="tiny")) == 5


def test_interrupted_run_resumes_without_duplicates_or_loss(tiny, embedder, sample_images,
                                                            tmp_path, monkeypatch):
    paths = write_images(tmp_path / "p", sample_images)  # 8 images, batches of 2
    original = Embedder.iter_images

    def dies_after_two_batches(self, images, total=None):
        for number, batch in enumerate(original(self, images, total)):
            if number == 2:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(Embedder, "iter_images", dies_after_two_batches)
    index = ImageIndex(tmp_path / "i.db", embedder, weights_label="tiny")
    with pytest.raises(KeyboardInterrupt):
        index.index_folder(tmp_path / "p")
    index.close()
    monkeypatch.setattr(Embedder, "iter_images", original)

    index = ImageIndex(tmp_path / "i.db", embedder, weights_label="tiny")
    assert len(index) == 4  # the two committed batches survived
    report = index.index_folder(tmp_path / "p")
    assert (report.added, report.unchanged) == (4, 4)
    assert sorted(index.entries()) == sorted(paths)
    stored = index.vectors(paths)
    np.testing.assert_allclose(np.stack([stored[p] for p in paths]),
                               reference_vectors(tiny, paths), atol=1e-5)
    hits = index.search_image(paths[0], k=20)
    assert sorted(p for p, _ in hits) == sorted(paths)  # no duplicates


def test_bad_database_arguments(embedder, tmp_path):
    from kvmm.errors import KvmmError

    with pytest.raises(KvmmError, match="must end with '.db'"):
        ImageIndex(tmp_path / "x.sqlite", embedder)
    with pytest.raises(KvmmError, match="No such folder"):
        ImageIndex(tmp_path / "nowhere" / "x.db", embedder)
    with pytest.raises(KvmmError, match="No such folder"):
        ImageIndex(tmp_path / "x.db", embedder).index_folder(tmp_path / "missing")
