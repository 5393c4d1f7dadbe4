"""CLIPProcessor: output dict, lazy vocabulary from the (offline) Hub cache, for_model."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import hf_checkpoints as hfc

from kvmm.errors import HubUnavailableError
from kvmm.models.clip.image_processor import CLIPImageProcessor
from kvmm.models.clip.processor import DEFAULT_VOCABULARY_REPO, CLIPProcessor
from kvmm.models.clip.tokenizer import CLIPTokenizer

TEXTS = ["a photo of a cat", "A photo of TWO dogs!", "café 😀"]


def test_text_and_images(clip_vocab, sample_images, tmp_path):
    processor = CLIPProcessor(vocabulary=clip_vocab)
    path = tmp_path / "chelsea.png"
    sample_images["chelsea"].save(path)

    out = processor(text=TEXTS, image_paths=str(path))
    assert set(out) == {"images", "token_ids", "input_ids", "padding_mask"}
    assert out["input_ids"] is out["token_ids"]
    assert out["images"].shape == (1, 224, 224, 3) and out["images"].dtype == np.float32
    assert out["token_ids"].shape == (3, 77) and out["token_ids"].dtype == np.int32
    assert out["padding_mask"].shape == (3, 77) and out["padding_mask"].dtype == bool
    expected = CLIPTokenizer(clip_vocab)(TEXTS)
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
    np.testing.assert_array_equal(out["padding_mask"], expected["padding_mask"])
    np.testing.assert_array_equal(out["images"], CLIPImageProcessor(224)(sample_images["chelsea"]))

    out = processor(images=[sample_images["camera"], np.asarray(sample_images["coffee"]), path])
    assert set(out) == {"images"} and out["images"].shape == (3, 224, 224, 3)
    out = processor(image_paths=[path, Path(path)])
    assert out["images"].shape == (2, 224, 224, 3)
    out = processor(text="one text")
    assert set(out) == {"token_ids", "input_ids", "padding_mask"}
    assert out["token_ids"].shape == (1, 77)


def test_text_matches_transformers(clip_vocab):
    transformers = pytest.importorskip("transformers")
    reference = transformers.CLIPTokenizer.from_pretrained(clip_vocab)
    expected = reference(TEXTS, padding="max_length", truncation=True, max_length=77)
    out = CLIPProcessor(vocabulary=clip_vocab)(text=TEXTS)
    np.testing.assert_array_equal(out["input_ids"], np.asarray(expected["input_ids"]))
    np.testing.assert_array_equal(out["padding_mask"], np.asarray(expected["attention_mask"]))


def test_images_only_need_no_hub(hf_cache, sample_images):
    processor = CLIPProcessor(image_size=336)
    out = processor(images=sample_images["astronaut"])
    assert set(out) == {"images"} and out["images"].shape == (1, 336, 336, 3)
    assert processor._tokenizer is None  # nothing fetched


def test_text_without_a_cached_vocabulary_raises(hf_cache):
    processor = CLIPProcessor()
    with pytest.raises(HubUnavailableError, match=DEFAULT_VOCABULARY_REPO):
        processor(text="a cat")


def test_vocabulary_from_the_hub_cache(hf_cache, clip_vocab, tmp_path):
    # A cache holding only vocab.json + merges.txt (no tokenizer.json) of the default repo.
    hfc.install_in_hf_cache(Path(clip_vocab), DEFAULT_VOCABULARY_REPO, hf_cache)
    processor = CLIPProcessor()
    out = processor(text=TEXTS)
    np.testing.assert_array_equal(out["token_ids"], CLIPTokenizer(clip_vocab)(TEXTS)["token_ids"])
    assert DEFAULT_VOCABULARY_REPO.replace("/", "--") in processor.tokenizer.vocabulary_path

    # Another repo with a tokenizer.json and a "!" pad token.
    transformers = pytest.importorskip("transformers")
    laion = tmp_path / "laion"
    transformers.CLIPTokenizer.from_pretrained(clip_vocab, pad_token="!").save_pretrained(str(laion))
    for name in ("vocab.json", "merges.txt"):
        (laion / name).unlink(missing_ok=True)
    hfc.install_in_hf_cache(laion, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", hf_cache)
    processor = CLIPProcessor(vocabulary_repo="laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert processor.tokenizer.pad_id == 0
    assert processor.tokenizer.vocabulary_path.endswith("tokenizer.json")
    np.testing.assert_array_equal(
        processor(text=TEXTS)["token_ids"], CLIPTokenizer(laion)(TEXTS)["token_ids"]
    )


def test_for_model_reads_the_model(clip_vocab, tmp_path):
    model = SimpleNamespace(image_size=336, max_text_length=77, vocabulary_path=clip_vocab)
    processor = CLIPProcessor.for_model(model)
    assert processor.image_size == 336 and processor.sequence_length == 77
    assert processor.vocabulary == clip_vocab
    out = processor(text=TEXTS, images=np.zeros((10, 20, 3), np.uint8))
    assert out["token_ids"].shape == (3, 77) and out["images"].shape == (1, 336, 336, 3)

    json_only = tmp_path / "ckpt"
    json_only.mkdir()
    CLIPTokenizer(clip_vocab)._tokenizer.save(str(json_only / "tokenizer.json"))
    model = SimpleNamespace(
        image_size=(224, 256), max_text_length=16,
        vocabulary_path=str(json_only / "tokenizer.json"), vocabulary_repo="someone/clip",
    )
    processor = CLIPProcessor.for_model(model)
    assert processor.image_size == (224, 256) and processor.vocabulary_repo == "someone/clip"
    out = processor(text=TEXTS, images=np.zeros((10, 20, 3), np.uint8))
    assert out["token_ids"].shape == (3, 16) and out["images"].shape == (1, 224, 256, 3)
    np.testing.assert_array_equal(
        out["token_ids"], CLIPTokenizer(clip_vocab, sequence_length=16)(TEXTS)["token_ids"]
    )


def test_for_model_without_vocabulary_uses_the_repo(hf_cache, clip_vocab):
    hfc.install_in_hf_cache(Path(clip_vocab), "openai/clip-vit-large-patch14-336", hf_cache)
    model = SimpleNamespace(
        image_size=336, max_text_length=77, vocabulary_repo="openai/clip-vit-large-patch14-336"
    )
    processor = CLIPProcessor.for_model(model)
    assert processor.vocabulary is None
    assert processor(text="a cat")["token_ids"].shape == (1, 77)
    plain = CLIPProcessor.for_model(SimpleNamespace(image_size=224, max_text_length=77))
    assert plain.vocabulary_repo == DEFAULT_VOCABULARY_REPO


def test_repr(clip_vocab):
    text = repr(CLIPProcessor())
    assert text.startswith("CLIPProcessor(image_size=224, sequence_length=77")
    assert DEFAULT_VOCABULARY_REPO in text
    text = repr(CLIPProcessor(image_size=(224, 256), vocabulary=clip_vocab))
    assert "(224, 256)" in text and clip_vocab in text


def test_bad_calls(clip_vocab, tmp_path):
    processor = CLIPProcessor(vocabulary=clip_vocab)
    with pytest.raises(ValueError, match="none was given"):
        processor()
    with pytest.raises(ValueError, match="not both"):
        processor(images=np.zeros((4, 4, 3), np.uint8), image_paths="x.png")
    with pytest.raises(TypeError, match="image_paths"):
        processor(image_paths=[np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match="sequence_length"):
        CLIPProcessor(sequence_length=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CLIPProcessor(vocabulary=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(Path(clip_vocab) / "vocab.json", empty / "vocab.json")
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        CLIPProcessor(vocabulary=empty)
