"""SigLIPTokenizer against transformers' SiglipTokenizer, and the vocabulary's lookup."""

from __future__ import annotations

import string
import warnings
from pathlib import Path

import numpy as np
import pytest

import hf_checkpoints as hfc

from kvmm.errors import HubUnavailableError
from kvmm.models.siglip.processor import ENGLISH_VOCABULARY_REPO, SigLIPProcessor
from kvmm.models.siglip.tokenizer import SigLIPTokenizer, canonicalize

TEXTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "A photo of a cat!!! (cute), isn't it? #cats @home ~ [x] {y} <z>",
    "a-photo_of/a\\cat; 'quoted' \"double\" `tick`",
    string.punctuation,
    "",
    " ",
    "   \t\n  ",
    "  leading and trailing spaces  ",
    "many     inner\t\tspaces\n\nand lines",
    "un gato sobre la mesa",
    "Une crème brûlée à Paris",
    "NAÏVE FAÇADE RÉSUMÉ",
    "猫が寝ている",
    "一只猫 and a dog",
    "привет МИР",
    "😀 an emoji 🐱 cat 👩‍🚀",
    "ﬁne ligatures ① ² full-width ＡＢＣ",
    "word\u2581with\u2581spm\u2581underlines",
    "\u2581",
    "hello </s> world",
    "</s>",
    "</s> leading eos",
    "trailing eos </s>",
    " x </s>",
    "x<unk>y",
    "<pad> is not special here",
    "</S> is not special either",
    "2024 a photo of 100 dogs",
    "a photo of a " + "very " * 100 + "long cat",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
]


@pytest.fixture(scope="module")
def reference(spm_vocab):
    transformers = pytest.importorskip("transformers")
    return transformers.SiglipTokenizer(vocab_file=spm_vocab)


@pytest.fixture(params=["spm_vocab", "spm_vocab_raw_whitespace"])
def vocab_and_reference(request):
    """Each test vocabulary with transformers' tokenizer on it."""
    transformers = pytest.importorskip("transformers")
    path = request.getfixturevalue(request.param)
    return path, transformers.SiglipTokenizer(vocab_file=path)


def reference_ids(reference, texts, length: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "This sequence already has </s>"
        encoded = reference(texts, padding="max_length", truncation=True, max_length=length)
    return np.asarray(encoded["input_ids"], dtype=np.int64)


@pytest.mark.parametrize("text", TEXTS)
def test_ids_match_transformers(vocab_and_reference, text):
    vocab, reference = vocab_and_reference
    ours = SigLIPTokenizer(vocab, sequence_length=64)(text)
    assert ours.shape == (1, 64) and ours.dtype == np.int32
    np.testing.assert_array_equal(ours[0], reference_ids(reference, text, 64))


@pytest.mark.parametrize("length", [64, 16, 8, 3, 2, 1])
def test_batch_matches_transformers_at_each_length(vocab_and_reference, length):
    vocab, reference = vocab_and_reference
    ours = SigLIPTokenizer(vocab, sequence_length=length)(TEXTS)
    assert ours.shape == (len(TEXTS), length) and ours.dtype == np.int32
    np.testing.assert_array_equal(ours, reference_ids(reference, TEXTS, length))


def test_truncation_keeps_final_eos_and_padding_is_eos(spm_vocab, reference):
    tokenizer = SigLIPTokenizer(spm_vocab, sequence_length=16)
    eos = reference.eos_token_id
    assert tokenizer.eos_id == tokenizer.pad_id == eos == reference.pad_token_id == 1
    long_row, short_row = tokenizer(["cat " * 50, "cat"])
    assert long_row[-1] == eos and eos not in long_row[:-1]
    content = int(np.argmax(short_row == eos))
    assert content > 0 and (short_row[content:] == eos).all()


def test_canonicalize_matches_transformers(reference):
    for text in TEXTS:
        assert canonicalize(text) == reference.canonicalize_text(text)
    assert SigLIPTokenizer.canonicalize("  A CAT!  ") == "a cat"


def test_vocabulary_size_and_detokenize(spm_vocab, reference):
    tokenizer = SigLIPTokenizer(spm_vocab)
    assert tokenizer.vocabulary_size == reference.vocab_size
    texts = ["A photo of a CAT!", "two dogs, sitting on the beach."]
    assert tokenizer.detokenize(tokenizer(texts)) == [canonicalize(t) for t in texts]
    assert tokenizer.decode(tokenizer(texts)[0]) == [canonicalize(texts[0])]


def test_folder_with_spiece_model_is_accepted(spm_vocab, tmp_path):
    import shutil

    shutil.copyfile(spm_vocab, tmp_path / "spiece.model")
    np.testing.assert_array_equal(
        SigLIPTokenizer(tmp_path)(TEXTS), SigLIPTokenizer(spm_vocab)(TEXTS)
    )


def test_missing_vocabulary_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere" / "spiece.model"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SigLIPTokenizer(missing)
    with pytest.raises(FileNotFoundError, match="has no 'spiece.model'"):
        SigLIPTokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SigLIPProcessor(vocabulary=str(missing))


def test_not_a_sentencepiece_file(tmp_path):
    bogus = tmp_path / "spiece.model"
    bogus.write_text("not a model")
    with pytest.raises(ValueError, match="SentencePiece"):
        SigLIPTokenizer(bogus)


def test_bad_text_types(spm_vocab):
    tokenizer = SigLIPTokenizer(spm_vocab)
    with pytest.raises(TypeError):
        tokenizer(123)
    with pytest.raises(TypeError, match="int"):
        tokenizer(["ok", 5])
    with pytest.raises(ValueError, match="sequence_length"):
        SigLIPTokenizer(spm_vocab, sequence_length=0)


# --- default vocabulary through the Hugging Face cache -----------------------------------------


def test_image_only_use_never_touches_the_hub(hf_cache, monkeypatch):
    import kvmm.utils.hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was consulted for image-only use")

    monkeypatch.setattr(kvmm.utils.hub, "hub_file", no_hub)
    processor = SigLIPProcessor()
    out = processor(images=np.zeros((40, 60, 3), dtype=np.uint8))
    assert set(out) == {"images"} and out["images"].shape == (1, 224, 224, 3)


def test_text_without_cached_vocabulary_says_offline(hf_cache):
    processor = SigLIPProcessor()
    with pytest.raises(HubUnavailableError) as info:
        processor(text="a cat")
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "offline" in message.lower()
    assert ENGLISH_VOCABULARY_REPO in message


def test_default_vocabulary_is_found_in_the_hf_cache(hf_cache, spm_vocab, reference):
    """The layout hub/models--google--siglip-base-patch16-224/snapshots/<sha>/spiece.model
    plus refs/main, under HF_HOME, with HF_HUB_OFFLINE=1."""
    revision = hfc.install_in_hf_cache(Path(spm_vocab).parent, ENGLISH_VOCABULARY_REPO, hf_cache)
    snapshot = hf_cache / "models--google--siglip-base-patch16-224" / "snapshots" / revision
    assert len(revision) == 40 and (snapshot / "spiece.model").exists()
    processor = SigLIPProcessor()
    out = processor(text=TEXTS)
    assert Path(processor.tokenizer.vocabulary_path) == snapshot / "spiece.model"
    np.testing.assert_array_equal(out["token_ids"], reference_ids(reference, TEXTS, 64))
