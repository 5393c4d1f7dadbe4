"""SigLIPProcessor: output dict, for_model, repr, errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import hf_checkpoints as hfc

from kvmm.models.siglip.image_processor import SigLIPImageProcessor
from kvmm.models.siglip.processor import (
    ENGLISH_VOCABULARY_REPO,
    MULTILINGUAL_VOCABULARY_REPO,
    SigLIPProcessor,
)
from kvmm.models.siglip.tokenizer import SigLIPTokenizer

TEXTS = ["a photo of a cat", "Un gato!", "two dogs on the beach"]


def test_text_and_images(spm_vocab, sample_images, tmp_path):
    processor = SigLIPProcessor(vocabulary=spm_vocab)
    path = tmp_path / "chelsea.png"
    sample_images["chelsea"].save(path)

    out = processor(text=TEXTS, image_paths=str(path))
    assert set(out) == {"images", "token_ids", "input_ids"}
    assert out["input_ids"] is out["token_ids"]
    assert out["images"].shape == (1, 224, 224, 3) and out["images"].dtype == np.float32
    assert out["token_ids"].shape == (3, 64) and out["token_ids"].dtype == np.int32
    np.testing.assert_array_equal(out["token_ids"], SigLIPTokenizer(spm_vocab)(TEXTS))
    np.testing.assert_array_equal(out["images"], SigLIPImageProcessor(224)(sample_images["chelsea"]))

    out = processor(images=[sample_images["camera"], np.asarray(sample_images["coffee"]), path])
    assert set(out) == {"images"} and out["images"].shape == (3, 224, 224, 3)
    out = processor(image_paths=[path, str(path)])
    assert out["images"].shape == (2, 224, 224, 3)
    out = processor(text="one text")
    assert set(out) == {"token_ids", "input_ids"} and out["token_ids"].shape == (1, 64)


def test_text_matches_transformers(spm_vocab):
    transformers = pytest.importorskip("transformers")
    reference = transformers.SiglipTokenizer(vocab_file=spm_vocab)
    expected = reference(TEXTS, padding="max_length", truncation=True, max_length=16)["input_ids"]
    out = SigLIPProcessor(vocabulary=spm_vocab, sequence_length=16)(text=TEXTS)
    np.testing.assert_array_equal(out["input_ids"], np.asarray(expected))


def test_for_model_reads_the_model(spm_vocab):
    model = SimpleNamespace(
        image_size=384, max_text_length=16, vocabulary_size=250000, vocabulary_path=spm_vocab
    )
    processor = SigLIPProcessor.for_model(model)
    assert processor.multilingual and processor.vocabulary_repo == MULTILINGUAL_VOCABULARY_REPO
    assert processor.image_size == 384 and processor.sequence_length == 16
    assert processor.vocabulary == spm_vocab
    out = processor(text=TEXTS, images=np.zeros((10, 20, 3), np.uint8))
    assert out["token_ids"].shape == (3, 16) and out["images"].shape == (1, 384, 384, 3)


def test_for_model_without_vocabulary_path_uses_the_checkpoint_vocabulary(
    hf_cache, spm_vocab
):
    hfc.install_in_hf_cache(Path(spm_vocab).parent, MULTILINGUAL_VOCABULARY_REPO, hf_cache)
    model = SimpleNamespace(image_size=(256, 320), max_text_length=64, vocabulary_size=250000)
    processor = SigLIPProcessor.for_model(model)
    assert processor.vocabulary is None and processor.image_size == (256, 320)
    out = processor(text=TEXTS, images=np.zeros((10, 20, 3), np.uint8))
    assert out["images"].shape == (1, 256, 320, 3) and out["token_ids"].shape == (3, 64)
    assert MULTILINGUAL_VOCABULARY_REPO.replace("/", "--") in processor.tokenizer.vocabulary_path

    english = SigLIPProcessor.for_model(
        SimpleNamespace(image_size=224, max_text_length=16, vocabulary_size=32000)
    )
    assert not english.multilingual and english.vocabulary_repo == ENGLISH_VOCABULARY_REPO
    assert english.sequence_length == 16


def test_repr(spm_vocab):
    text = repr(SigLIPProcessor())
    assert text.startswith("SigLIPProcessor(multilingual=False, image_size=224, sequence_length=64")
    assert ENGLISH_VOCABULARY_REPO in text
    text = repr(SigLIPProcessor(multilingual=True, image_size=(256, 320), vocabulary=spm_vocab))
    assert "multilingual=True" in text and "(256, 320)" in text and spm_vocab in text


def test_bad_calls(spm_vocab):
    processor = SigLIPProcessor(vocabulary=spm_vocab)
    with pytest.raises(ValueError, match="none was given"):
        processor()
    with pytest.raises(ValueError, match="not both"):
        processor(images=np.zeros((4, 4, 3), np.uint8), image_paths="x.png")
    with pytest.raises(TypeError, match="image_paths"):
        processor(image_paths=[np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match="sequence_length"):
        SigLIPProcessor(sequence_length=0)
