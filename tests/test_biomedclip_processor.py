"""BiomedCLIP preprocessing: token ids equal to open_clip's HFTokenizer (BERT WordPiece,
built from a vocabulary trained here) and pixels equal to open_clip's evaluation transform
on real photos."""

from __future__ import annotations

import builtins

import numpy as np
import PIL.Image
import pytest

from kvmm.errors import HubUnavailableError
from kvmm.models.biomedclip import (
    BiomedCLIPImageProcessor,
    BiomedCLIPProcessor,
    BiomedCLIPTokenizer,
)
from kvmm.models.biomedclip import tokenizer as tokenizer_module

open_clip = pytest.importorskip("open_clip")

TEXTS = [
    "adenocarcinoma histopathology",
    "Squamous Cell CARCINOMA histopathology.",
    "left-sided pleural effusion chest x-ray",
    "a brain MRI scan, axial T2-weighted (FLAIR)!",
    "Hematoxylin &amp; eosin (H&E) stained tissue",
    "&amp;amp;lt; double escaped &lt;b&gt; tags",
    "<b>bold</b> &amp; markup",
    "café crème naïve résumé Ångström",
    "“curly” ‘quotes’ and primes ′ ″",
    "ﬁbrosis ﬂuid ﬀ ligatures",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ ｶﾀｶﾅ",
    "猫が寝ている 犬の写真 一只猫",
    "привет мир Ελληνικά",
    "emoji 😀 🐱 👍🏽",
    "[MASK] and [CLS] written in text, [unk]",
    "tabs\tand\nnew lines\r\n  and   spaces  ",
    "\x1b[31mterminal colour\x1b[0m codes",
    "control\x00chars\x07here\u200b zero width",
    "",
    "   ",
    "x" * 150,
    "supercalifragilisticexpialidocious pneumonoultramicroscopic",
    "1,000,000 cells at 37.5°C in 2024",
    " ".join(["tumor"] * 300),
]


@pytest.fixture(scope="module")
def reference_tokenizer(bert_vocab):
    from open_clip.tokenizer import HFTokenizer

    return HFTokenizer(bert_vocab, context_length=256)


def test_token_ids_equal_open_clip(reference_tokenizer, bert_vocab):
    ours = BiomedCLIPTokenizer(bert_vocab, sequence_length=256)
    expected = reference_tokenizer(TEXTS).numpy()
    out = ours(TEXTS)
    for text, want, got in zip(TEXTS, expected, out["token_ids"]):
        assert got.tolist() == want.tolist(), text
    np.testing.assert_array_equal(out["padding_mask"], expected != 0)


def test_short_context_truncates_keeping_sep(bert_vocab):
    from open_clip.tokenizer import HFTokenizer

    reference = HFTokenizer(bert_vocab, context_length=16)
    ours = BiomedCLIPTokenizer(bert_vocab, sequence_length=16)
    np.testing.assert_array_equal(ours(TEXTS)["token_ids"], reference(TEXTS).numpy())
    assert (ours(["tumor " * 40])["token_ids"][0, -1]) == 3  # [SEP] stays last


def test_cleaning_without_ftfy_matches_on_ordinary_text(reference_tokenizer, bert_vocab, monkeypatch):
    """kvmm's stand-in for ftfy.fix_text gives the same ids on everything but mojibake."""
    real_import = builtins.__import__

    def no_ftfy(name, *args, **kwargs):
        if name == "ftfy":
            raise ImportError("ftfy is not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ftfy)
    assert tokenizer_module.fix_text("cafÃ©") == "cafÃ©"  # the stand-in is in use (no mojibake fix)
    ours = BiomedCLIPTokenizer(bert_vocab, sequence_length=256)
    np.testing.assert_array_equal(ours(TEXTS)["token_ids"], reference_tokenizer(TEXTS).numpy())


def test_width_and_ligature_tables_match_ftfy():
    chardata = pytest.importorskip("ftfy.chardata")
    width = {chr(k): v for k, v in chardata.WIDTH_MAP.items()}
    ligatures = {chr(k): v for k, v in chardata.LIGATURES.items()}
    assert tokenizer_module._WIDTH == width
    assert tokenizer_module._LIGATURES == ligatures


def test_special_ids_come_from_the_vocabulary(tmp_path):
    vocab = ["[PAD]", "a", "b", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "c", "##c"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BiomedCLIPTokenizer(tmp_path, sequence_length=6)
    assert tokenizer(["A b ccc"])["token_ids"].tolist() == [[4, 1, 2, 7, 8, 5]]
    assert tokenizer(["d"])["token_ids"].tolist() == [[4, 3, 5, 0, 0, 0]]
    (tmp_path / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks \\[PAD\\], \\[UNK\\], \\[CLS\\], \\[SEP\\], \\[MASK\\]"):
        BiomedCLIPTokenizer(tmp_path)


def test_missing_vocabulary_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        BiomedCLIPProcessor(vocabulary=tmp_path)


def test_default_vocabulary_offline_says_how_to_work_offline(hf_cache):
    processor = BiomedCLIPProcessor()
    assert processor(images=np.zeros((40, 50, 3), np.uint8))["images"].shape == (1, 224, 224, 3)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        processor(text=["chest x-ray"])


@pytest.fixture(scope="module")
def reference_transform():
    from open_clip.transform import image_transform

    return image_transform(
        224, is_train=False, mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
    )


def _reference_pixels(transform, image):
    return transform(image).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "camera", "retina"])
def test_pixels_equal_open_clip_on_photos(sample_images, reference_transform, name):
    image = sample_images[name]
    ours = BiomedCLIPImageProcessor(224)(image)[0]
    np.testing.assert_array_equal(ours, _reference_pixels(reference_transform, image))


@pytest.mark.parametrize("size", [(227, 224), (224, 229), (301, 225), (500, 231), (97, 61)])
def test_center_crop_rounds_like_torchvision(sample_images, reference_transform, size):
    """Sizes whose crop surplus is odd: torchvision rounds the offset (CLIP floors it)."""
    image = sample_images["coffee"].resize(size, PIL.Image.Resampling.BILINEAR)
    ours = BiomedCLIPImageProcessor(224)(image)[0]
    np.testing.assert_array_equal(ours, _reference_pixels(reference_transform, image))


def test_processor_output_feeds_the_model(bert_vocab, sample_images):
    from tiny_family import build_biomedclip_tiny

    model = build_biomedclip_tiny()
    processor = BiomedCLIPProcessor(image_size=32, sequence_length=16, vocabulary=bert_vocab)
    inputs = processor(text=["chest x-ray", "histopathology"], images=[sample_images["chelsea"]])
    assert inputs["token_ids"].shape == (2, 16) and inputs["images"].shape == (1, 32, 32, 3)
    out = model(inputs)
    assert out["image_logits"].shape == (1, 2)
    assert "BiomedCLIPProcessor(image_size=32" in repr(processor)
