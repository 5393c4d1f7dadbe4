"""Shared pytest fixtures. Nothing here reaches the network.

* ``spm_vocab``: a small SentencePiece model laid out like Google's SigLIP ``spiece.model``
  (``spm_vocab_raw_whitespace``: the same with the whitespace handling switched off).
* ``sample_images``: real photos from ``skimage.data`` in several sizes and PIL modes.
* ``base_checkpoint``: a real-architecture SigLIP Base/16-224 checkpoint folder (random
  weights, with ``spm_vocab`` as its ``spiece.model``) and transformers' outputs on it,
  built once per session.
* ``hf_cache`` / ``kvmm_cache`` (from ``hub_fixtures``): an empty, offline Hugging Face
  cache and an isolated converted-weights cache.
"""

from __future__ import annotations

# torch first: with KERAS_BACKEND=tensorflow, transformers importing torch._dynamo (and with it
# triton) after TensorFlow has loaded segfaults in this environment; the other order is fine.
import torch  # noqa: F401
import torch._dynamo  # noqa: F401

import random
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["hub_fixtures"]


def pytest_report_header(config):
    import keras

    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


# --- SentencePiece vocabulary -------------------------------------------------------------

_WORDS = (
    "a an the of photo picture image drawing painting sketch close up blurry bright dark "
    "cat cats dog dogs bird fish horse cow car truck bus plane boat train bicycle house tree "
    "flower mountain mountains river lake sea beach city street road sky cloud snow rain sun "
    "tortoise turtle coffee cup astronaut space rocket camera man woman child people group "
    "red green blue yellow black white small large old new two three four many on in at with "
    "and near under over next to sitting standing running flying eating sleeping playing "
    "retina eye medical scan x ray cell microscope cute funny beautiful famous "
    "2024 1 10 100"
).split()
_MULTILINGUAL = [
    "un gato sobre la mesa", "una foto de un perro", "un chien dans le café",
    "une crème brûlée", "ein Vogel im Baum", "eine Katze schläft", "naïve façade résumé",
    "猫が寝ている", "犬の写真", "日本語のテキスト", "一只猫", "привет мир", "кошка и собака",
    "Ελληνικά γράμματα", "o gato está dormindo", "ü ö ä ß é è ê à ç ñ",
]


def _training_sentences(count: int = 4000) -> list[str]:
    rng = random.Random(0)
    sentences = []
    for _ in range(count):
        words = rng.choices(_WORDS, k=rng.randint(2, 9))
        if rng.random() < 0.2:
            words[0] = words[0].capitalize()
        sentences.append(" ".join(words))
    return sentences + _MULTILINGUAL * 20


def _train_spm(folder: Path, **options) -> str:
    import sentencepiece

    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_sentences()),
        model_prefix=str(folder / "spiece"),
        model_type="unigram",
        vocab_size=600,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
        **options,
    )
    path = folder / "spiece.model"
    processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    assert [processor.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    return str(path)


@pytest.fixture(scope="session")
def spm_vocab(tmp_path_factory) -> str:
    """Path of a small unigram SentencePiece model laid out like SigLIP's ``spiece.model``.

    Google's SigLIP vocabularies are T5-style: ``<pad>`` = 0, ``</s>`` = 1 (SigLIP's EOS and
    pad token), ``<unk>`` = 2, no BOS, ``add_dummy_prefix`` and NFKC normalization on (the
    trainer's defaults). Emoji are left out of the training text, so they map to ``<unk>``.
    """
    return _train_spm(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="session")
def spm_vocab_raw_whitespace(tmp_path_factory) -> str:
    """Like ``spm_vocab`` but with ``add_dummy_prefix`` and ``remove_extra_whitespaces`` off,
    so that bare ``"▁"`` pieces survive: exercises the corners of transformers' handling."""
    return _train_spm(
        tmp_path_factory.mktemp("spm_raw"), add_dummy_prefix=False, remove_extra_whitespaces=False
    )


# --- Images -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sample_images() -> dict[str, "PIL.Image.Image"]:  # noqa: F821
    """Real photos of several sizes, aspect ratios and PIL modes. Do not modify them.

    ``chelsea`` RGB 451x300, ``coffee`` RGB 600x400, ``astronaut`` RGB 512x512, ``camera``
    L 512x512, ``retina`` RGB 1411x1411, ``rgba`` (chelsea with a horizontal alpha ramp),
    ``palette`` (coffee as a 64-colour ``P`` image whose index 0 is transparent) and
    ``gray16`` (camera as ``I;16``, values ``camera * 257``).
    """
    import PIL.Image
    import skimage.data

    images = {
        name: PIL.Image.fromarray(getattr(skimage.data, name)())
        for name in ("chelsea", "coffee", "astronaut", "camera", "retina")
    }
    chelsea = np.asarray(images["chelsea"])
    ramp = np.linspace(0, 255, chelsea.shape[1]).round().astype(np.uint8)
    alpha = np.broadcast_to(ramp, chelsea.shape[:2])[..., None]
    images["rgba"] = PIL.Image.fromarray(np.concatenate([chelsea, alpha], axis=-1))
    palette = images["coffee"].quantize(colors=64)
    palette.info["transparency"] = 0
    images["palette"] = palette
    camera16 = np.asarray(images["camera"]).astype(np.uint16) * np.uint16(257)
    images["gray16"] = PIL.Image.fromarray(camera16)
    assert images["rgba"].mode == "RGBA" and images["palette"].mode == "P"
    assert images["gray16"].mode.startswith("I;16") and images["camera"].mode == "L"
    return images


# --- Checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def base_checkpoint(tmp_path_factory, spm_vocab):
    """SigLIP Base/16-224 in Hugging Face format with transformers' reference outputs.

    Keys: ``folder``; ``images`` (2 at 224 px), ``token_ids`` (3 x 64) and ``ref`` (logits
    and embeddings); ``big`` (1 image at 384 px) and ``ref384`` (with
    ``interpolate_pos_encoding=True``). The torch model is freed once outputs are taken.
    """
    import gc

    import hf_checkpoints as hfc

    folder = tmp_path_factory.mktemp("siglip-base-patch16-224")
    reference = hfc.build_siglip(hfc.BASE_224, seed=1)
    hfc.save_checkpoint(reference, folder, vocabulary=spm_vocab)
    rng = np.random.default_rng(0)
    images, token_ids = hfc.random_inputs(rng, 224, 2, 3, 64, 32000)
    ref = hfc.reference_outputs(reference, images, token_ids)
    big = rng.uniform(-1, 1, (1, 384, 384, 3)).astype("float32")
    ref384 = hfc.reference_outputs(reference, big, token_ids, interpolate_pos_encoding=True)
    del reference
    gc.collect()
    return dict(folder=folder, images=images, token_ids=token_ids, ref=ref, big=big, ref384=ref384)


# --- CLIP byte-level BPE vocabulary --------------------------------------------------------

_CLIP_TEXTS = (
    "a photo of a cat", "a photo of a dog", "A PHOTO OF TWO CATS!", "an astronaut in space",
    "the cat's toy isn't here, they're gone; we've seen I'm sure you'll see he'd go",
    "a photo of 2024 cats and 10 dogs... 3.14 1,000,000", "hello!!! ?? (cute) [x] {y} #tag @you",
    "café crème brûlée naïve façade résumé", "un gato sobre la mesa", "ein Vogel im Baum",
    "猫が寝ている 犬の写真", "привет мир кошка", "emoji 😀 🐱 👍🏽 ❤️", "tab\tnew\nline  spaces",
    "photography photographer photographs photo-realistic", "<|startoftext|> <|endoftext|>",
)


def _clip_byte_alphabet() -> list[str]:
    """GPT-2 / CLIP byte alphabet in byte order: printable bytes map to themselves, the
    others to code points from 256 upwards."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    # CLIP orders the vocabulary with the printable bytes first, as bytes_to_unicode does.
    others = [b for b in range(256) if b not in printable]
    return [mapping[b] for b in printable + others]


def _learn_clip_merges(texts, num_merges: int) -> list[tuple[str, str]]:
    from collections import Counter

    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pattern = (
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
        r"""[^\s\p{L}\p{N}]+"""
    )
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    words: Counter = Counter()
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)):
            symbols = list(piece)
            symbols[-1] += "</w>"
            words[tuple(symbols)] += 1
    merges = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged: Counter = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


def write_clip_vocabulary(folder: Path, num_merges: int = 300) -> Path:
    """Write ``vocab.json`` + ``merges.txt`` laid out like OpenAI CLIP's into ``folder``."""
    import json

    sentences = [s for s in _training_sentences(600)] + list(_CLIP_TEXTS) * 5
    merges = _learn_clip_merges(sentences, num_merges)
    alphabet = _clip_byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    for left, right in merges:
        if left + right not in tokens:
            tokens.append(left + right)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8"
    )
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    return folder


@pytest.fixture(scope="session")
def clip_vocab(tmp_path_factory) -> str:
    """Folder with a small byte-level BPE ``vocab.json`` + ``merges.txt`` in CLIP's layout:
    256 byte symbols, the same with ``</w>``, merged tokens, then ``<|startoftext|>`` and
    ``<|endoftext|>`` as the last two ids. No tokenizer_config / special_tokens_map."""
    return str(write_clip_vocabulary(tmp_path_factory.mktemp("clip_vocab")))


# --- BiomedCLIP WordPiece vocabulary ---------------------------------------------------------

_BERT_TEXTS = (
    "adenocarcinoma histopathology", "squamous cell carcinoma histopathology",
    "left-sided pleural effusion chest x-ray", "a brain MRI scan, axial T2-weighted",
    "Hematoxylin and eosin (H&E) stained tissue", "CT of the abdomen with contrast",
    "café crème naïve résumé Ångström", "猫が寝ている 犬の写真", "привет мир",
)


@pytest.fixture(scope="session")
def bert_vocab(tmp_path_factory) -> str:
    """Folder with a small uncased WordPiece ``vocab.txt`` (trained here) laid out like
    PubMedBERT's: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4, and a
    ``tokenizer_config.json`` naming transformers' BertTokenizer (do_lower_case)."""
    import json

    from tokenizers import BertWordPieceTokenizer

    folder = tmp_path_factory.mktemp("bert_vocab")
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(
        _training_sentences(1500) + list(_BERT_TEXTS) * 10,
        vocab_size=400,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    trainer.save_model(str(folder))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(lines) <= 400
    return str(folder)
