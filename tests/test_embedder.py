"""kvmm.Embedder: batched, normalized, padded to one batch shape, bad images skipped."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from tiny_family import build_tiny

import hf_checkpoints as hfc
from kvmm import Embedder
from kvmm.models.siglip import SigLIPProcessor


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, spm_vocab):
    folder = tmp_path_factory.mktemp("tiny")
    config = {**hfc.TINY, "text_config": {**hfc.TINY["text_config"], "vocab_size": 640}}
    hfc.save_checkpoint(hfc.build_siglip(config, seed=5), folder, vocabulary=spm_vocab)
    model = build_tiny(weights=str(folder))
    return model, SigLIPProcessor.for_model(model)


def _photos(sample_images):
    return [sample_images[n] for n in ("chelsea", "coffee", "astronaut", "camera", "rgba")]


def test_images_match_the_model_and_mixed_inputs(tiny, sample_images, tmp_path):
    model, processor = tiny
    photos = _photos(sample_images)
    reference = model.encode_images(processor(images=photos)["images"], batch_size=len(photos))
    path = tmp_path / "coffee.png"
    photos[1].save(path)
    inputs = [photos[0], str(path), np.asarray(photos[2]), *photos[3:]]
    got = Embedder(model, processor, batch_size=2, progress=False).encode_images(inputs)
    assert got.shape == (5, model.embedding_dim) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, reference, atol=2e-5)


def test_every_batch_has_one_shape(tiny, sample_images, monkeypatch):
    import kvmm.embedder as module

    seen = []
    original = module.predict_batches

    def spy(tower, inputs, batch_size):
        seen.append((inputs.shape, batch_size))
        return original(tower, inputs, batch_size)

    monkeypatch.setattr(module, "predict_batches", spy)
    model, processor = tiny
    embedder = Embedder(model, processor, batch_size=3, progress=False)
    assert embedder.encode_images(_photos(sample_images)).shape[0] == 5  # batches of 3 and 2
    assert embedder.encode_texts(["a cat", "a dog", "a bird", "a car"]).shape[0] == 4
    image_shapes = {s for s, _ in seen if len(s) == 4}
    text_shapes = {s for s, _ in seen if len(s) == 2}
    assert image_shapes == {(3, 32, 32, 3)} and text_shapes == {(3, model.max_text_length)}


def test_images_are_streamed_one_batch_at_a_time(tiny, sample_images):
    """Memory stays flat however many images there are: the embedder pulls the next
    ``batch_size`` inputs only after handing out the previous batch (what `kvmm index`
    relies on for large folders). An embedder that read its input ahead would pull all
    1000 images before the first batch."""
    model, processor = tiny
    photo = np.asarray(sample_images["chelsea"].resize((40, 40)))
    pulled = []

    def large_folder():
        for number in range(1000):
            pulled.append(number)
            yield photo

    embedder = Embedder(model, processor, batch_size=4, progress=False)
    for count, batch in enumerate(embedder.iter_images(large_folder()), start=1):
        assert len(batch.items) == 4 and batch.embeddings.shape == (4, model.embedding_dim)
        assert len(pulled) == 4 * count  # nothing read ahead
        if count == 5:
            break
    assert embedder.failures == []


def test_texts_match_the_model(tiny):
    model, processor = tiny
    texts = ["a photo of a cat", "a dog", "two red circles"]
    reference = model.encode_texts(processor(text=texts)["token_ids"])
    got = Embedder(model, processor, batch_size=2, progress=False).encode_texts(texts)
    np.testing.assert_allclose(got, reference, atol=2e-5)
    # numpy reference of the normalization
    pooled = np.asarray(model.text_model.predict(processor(text=texts)["token_ids"], verbose=0))
    np.testing.assert_allclose(got, pooled / np.linalg.norm(pooled, axis=1, keepdims=True), atol=2e-5)


def test_bad_images_are_skipped_and_reported(tiny, sample_images, tmp_path):
    model, processor = tiny
    good = tmp_path / "good.png"
    sample_images["chelsea"].save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image at all")
    missing = tmp_path / "missing.png"
    embedder = Embedder(model, processor, batch_size=2, progress=False)
    batches = list(embedder.iter_images([corrupt, good, missing, sample_images["coffee"]]))
    assert [len(b.items) for b in batches] == [1, 1]
    assert batches[0].items == [good] and batches[1].items[0] is sample_images["coffee"]
    assert [item for item, _ in embedder.failures] == [corrupt, missing]
    assert "corrupt.jpg" in embedder.failures[0][1] and "missing.png" in embedder.failures[1][1]
    reference = model.encode_images(processor(images=[sample_images["chelsea"],
                                                      sample_images["coffee"]])["images"])
    np.testing.assert_allclose(np.concatenate([b.embeddings for b in batches]), reference, atol=2e-5)


def test_bad_arguments(tiny):
    model, processor = tiny
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(model, processor, batch_size=0)
    assert Embedder(model, processor, progress=False).encode_images([]).shape == (0, model.embedding_dim)
