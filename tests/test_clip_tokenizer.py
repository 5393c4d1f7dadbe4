"""CLIPTokenizer against transformers' CLIPTokenizer on a small CLIP-layout vocabulary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kvmm.models.clip.tokenizer import CLIPTokenizer

TEXTS = [
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "a Photo Of Two Cats!",
    "hello!!! ?? (cute) [x] {y} #tag @you",
    "...",
    "the cat's toy isn't here, they're gone; we've seen I'm sure you'll see he'd go",
    "THE CAT'S TOY ISN'T",
    "it’s a curly apostrophe",
    "a photo of 2024 cats and 10 dogs",
    "3.14 1,000,000 x2 4k",
    "café crème brûlée naïve façade résumé",
    "cafe\u0301 (decomposed accent)",
    "ǅ ß ﬁ Ⅻ ① ２",
    "un gato sobre la mesa",
    "猫が寝ている 犬の写真",
    "привет мир кошка",
    "emoji 😀 🐱 👍🏽 ❤️ 👨‍👩‍👧",
    "tab\tnew\nline  spaces\r\n",
    "   leading and trailing   ",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
    "zero\u200bwidth",
    "",
    " ",
    "\n\t",
    "<|startoftext|> inside <|endoftext|> the text",
    "<|endoftext|>",
    "<|ENDOFTEXT|> upper case is not special",
    "a<|endoftext|>b",
    "&amp; &lt;html&gt;",
    "control\x00\x07chars",
    "photography photographer photographs photo-realistic",
    "unseenwordxyzqj",
    "a " * 100,
    "word" * 200,
]


def reference(folder, texts, length):
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(folder))
    out = tokenizer(texts, padding="max_length", truncation=True, max_length=length)
    return np.asarray(out["input_ids"]), np.asarray(out["attention_mask"])


def assert_matches(ours: CLIPTokenizer, folder, texts, length):
    expected_ids, expected_mask = reference(folder, texts, length)
    out = ours(texts)
    assert out["token_ids"].dtype == np.int32 and out["token_ids"].shape == (len(texts), length)
    assert out["padding_mask"].dtype == bool
    for row, text in enumerate(texts):
        np.testing.assert_array_equal(out["token_ids"][row], expected_ids[row], err_msg=repr(text))
        np.testing.assert_array_equal(out["padding_mask"][row], expected_mask[row], err_msg=repr(text))


@pytest.mark.parametrize("length", [77, 16])
def test_matches_transformers(clip_vocab, length):
    assert_matches(CLIPTokenizer(clip_vocab, sequence_length=length), clip_vocab, TEXTS, length)


def test_one_text_at_a_time_equals_the_batch(clip_vocab):
    tokenizer = CLIPTokenizer(clip_vocab)
    batch = tokenizer(TEXTS)
    for row, text in enumerate(TEXTS):
        single = tokenizer(text)
        np.testing.assert_array_equal(single["token_ids"][0], batch["token_ids"][row])
        ids = tokenizer.encode(text)
        assert ids == batch["token_ids"][row][: batch["padding_mask"][row].sum()].tolist()


def test_special_ids_come_from_the_vocabulary(clip_vocab):
    vocab = json.loads((Path(clip_vocab) / "vocab.json").read_text(encoding="utf-8"))
    tokenizer = CLIPTokenizer(clip_vocab, sequence_length=8)
    assert tokenizer.bos_id == vocab["<|startoftext|>"] == len(vocab) - 2
    assert tokenizer.eos_id == tokenizer.pad_id == vocab["<|endoftext|>"] == len(vocab) - 1
    assert tokenizer.vocabulary_size == len(vocab)
    out = tokenizer(["a cat", ""])
    ids, mask = out["token_ids"], out["padding_mask"]
    assert ids[0, 0] == tokenizer.bos_id and ids[0, 3] == tokenizer.eos_id
    assert ids[0, 4:].tolist() == [tokenizer.pad_id] * 4
    assert mask[0].tolist() == [True] * 4 + [False] * 4
    assert ids[1, :2].tolist() == [tokenizer.bos_id, tokenizer.eos_id] and mask[1].sum() == 2


def test_truncation_keeps_the_final_eos(clip_vocab):
    tokenizer = CLIPTokenizer(clip_vocab, sequence_length=77)
    out = tokenizer("a " * 200)
    assert out["padding_mask"].all()
    assert out["token_ids"][0, 0] == tokenizer.bos_id and out["token_ids"][0, -1] == tokenizer.eos_id
    assert len(tokenizer.tokenize("a " * 200)) == 200  # tokenize() does not truncate


def test_tokenize_and_detokenize(clip_vocab):
    tokenizer = CLIPTokenizer(clip_vocab)
    pieces = tokenizer.tokenize("A Photo, of CATS!")
    assert pieces[-1].endswith("</w>") and all(p == p.lower() for p in pieces)
    texts = ["A photo of a CAT", "café 😀 it's", "  extra   space "]
    assert tokenizer.detokenize(tokenizer(texts)["token_ids"]) == [
        "a photo of a cat", "café 😀 it 's", "extra space"
    ]
    assert tokenizer.decode(tokenizer.encode("a dog")) == ["a dog"]


def test_tokenizer_json_folder_and_file(clip_vocab, tmp_path):
    transformers = pytest.importorskip("transformers")
    saved = tmp_path / "saved"
    transformers.CLIPTokenizer.from_pretrained(clip_vocab).save_pretrained(str(saved))
    only_json = tmp_path / "only_json"
    only_json.mkdir()
    shutil.copy(saved / "tokenizer.json", only_json / "tokenizer.json")
    assert not (only_json / "vocab.json").exists()

    expected = CLIPTokenizer(clip_vocab, sequence_length=20)(TEXTS)
    for vocabulary in (saved, only_json, only_json / "tokenizer.json"):
        tokenizer = CLIPTokenizer(vocabulary, sequence_length=20)
        out = tokenizer(TEXTS)
        np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
        np.testing.assert_array_equal(out["padding_mask"], expected["padding_mask"])
    assert_matches(CLIPTokenizer(saved, 20), saved, TEXTS, 20)
    assert_matches(CLIPTokenizer(only_json, 20), only_json, TEXTS, 20)


def _laion_like(clip_vocab, folder: Path, config: dict | None, special_map: dict | None) -> Path:
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(Path(clip_vocab) / name, folder / name)
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if special_map is not None:
        (folder / "special_tokens_map.json").write_text(json.dumps(special_map))
    return folder


def _added(content, normalized):
    return dict(
        content=content, lstrip=False, normalized=normalized, rstrip=False, single_word=False,
        special=True,
    )


def test_pad_token_from_special_tokens_map(clip_vocab, tmp_path):
    folder = _laion_like(
        clip_vocab, tmp_path / "laion", None,
        {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!",
         "unk_token": "<|endoftext|>"},
    )
    tokenizer = CLIPTokenizer(folder, sequence_length=24)
    assert tokenizer.pad_id == 0 and tokenizer.special_tokens["pad_token"] == "!"
    out = tokenizer("a cat")
    assert out["token_ids"][0, 4:].tolist() == [0] * 20
    assert_matches(tokenizer, folder, TEXTS, 24)


def test_tokenizer_config_with_added_tokens_decoder(clip_vocab, tmp_path):
    # The layout of openai/clip-vit-base-patch32's tokenizer_config.json (with ids of the
    # small vocabulary), here with "!" as the pad token and a normalized start token.
    vocab = json.loads((Path(clip_vocab) / "vocab.json").read_text(encoding="utf-8"))
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    config = {
        "added_tokens_decoder": {
            str(bos): _added("<|startoftext|>", True),
            str(eos): _added("<|endoftext|>", False),
        },
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "!",
        "unk_token": "<|endoftext|>",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
    }
    folder = _laion_like(clip_vocab, tmp_path / "openai_like", config, None)
    tokenizer = CLIPTokenizer(folder, sequence_length=30)
    assert tokenizer.pad_id == 0
    assert_matches(tokenizer, folder, TEXTS + ["<|STARTOFTEXT|> normalized start"], 30)

    config["pad_token"] = {"__type": "AddedToken", "content": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = CLIPTokenizer(folder, sequence_length=30)
    assert tokenizer.pad_id == eos
    assert_matches(tokenizer, folder, TEXTS, 30)


def test_empty_batch(clip_vocab):
    out = CLIPTokenizer(clip_vocab, sequence_length=5)([])
    assert out["token_ids"].shape == (0, 5) and out["padding_mask"].shape == (0, 5)


def test_errors(clip_vocab, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CLIPTokenizer(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        CLIPTokenizer(empty)
    with pytest.raises(FileNotFoundError, match="not a tokenizer.json"):
        CLIPTokenizer(Path(clip_vocab) / "merges.txt")
    with pytest.raises(ValueError, match="sequence_length"):
        CLIPTokenizer(clip_vocab, sequence_length=1)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="Cannot read"):
        CLIPTokenizer(bad)
    tokenizer = CLIPTokenizer(clip_vocab)
    with pytest.raises(TypeError, match="list holds a int"):
        tokenizer(["ok", 3])
    with pytest.raises(TypeError, match="bytes"):
        tokenizer(b"bytes")
    assert "CLIPTokenizer(vocabulary=" in repr(tokenizer)


@pytest.fixture(scope="module")
def openai_vocabulary(tmp_path_factory):
    """OpenAI CLIP's real 49408-entry vocabulary, rebuilt offline from the BPE merges file
    open_clip ships (``bpe_simple_vocab_16e6.txt.gz``): the byte alphabet, the same with
    ``</w>``, the first 48894 merges, then ``<|startoftext|>`` and ``<|endoftext|>`` (the
    layout of openai/clip-vit-base-patch32's vocab.json + merges.txt)."""
    import gzip

    open_clip = pytest.importorskip("open_clip")
    from conftest import _clip_byte_alphabet

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    alphabet = _clip_byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == 49408
    folder = tmp_path_factory.mktemp("openai_clip_vocab")
    (folder / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8"
    )
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    return folder


def test_ids_equal_transformers_on_the_real_openai_vocabulary(openai_vocabulary):
    ours = CLIPTokenizer(openai_vocabulary, sequence_length=77)
    assert ours.vocabulary_size == 49408
    assert ours(["a photo of a cat"])["token_ids"][0, :7].tolist() == [
        49406, 320, 1125, 539, 320, 2368, 49407]  # OpenAI's published ids for this prompt
    assert_matches(ours, openai_vocabulary, TEXTS, 77)
