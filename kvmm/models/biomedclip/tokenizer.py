"""BiomedCLIP text tokenizer: open_clip's ``HFTokenizer`` over PubMedBERT's WordPiece
vocabulary, through the ``tokenizers`` library.

open_clip tokenizes BiomedCLIP text in two steps, and so does :class:`BiomedCLIPTokenizer`:

1. **Cleaning** (open_clip's ``clean="whitespace"``): ``ftfy.fix_text``, ``html.unescape``
   twice, then every run of whitespace becomes one space and the ends are stripped.
   When ``ftfy`` is installed (open_clip depends on it) it is used as is. Without it kvmm
   applies the parts of ``fix_text`` that change ordinary text: NFC normalization, curly
   quotes to straight ones (``‘’‚‛ʼ`` -> ``'``, ``“”„‟`` -> ``"``), Latin ligatures
   (``ﬁ`` -> ``fi``), full-width / half-width forms to their normal width, terminal escape
   codes removed, one more HTML unescape when the text has no ``<``. Only ftfy's repair of
   mojibake (text decoded with the wrong codec, ``cafÃ©``) is left out.
2. **BERT tokenization**, as transformers' ``BertTokenizer`` with ``padding="max_length",
   truncation=True``: control characters removed, CJK characters split, lowercase and
   accents stripped (uncased vocabularies), split on whitespace and punctuation, greedy
   longest-match WordPiece with ``##`` continuations (``[UNK]`` for words over 100
   characters or with unknown pieces), then ``[CLS] ... [SEP]``: a long text keeps its first
   ``sequence_length - 2`` pieces, and rows are padded with ``[PAD]``. Special tokens written
   in the text (``[MASK]``, ...) stay single tokens.

Special ids are read from the vocabulary (PubMedBERT: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2,
``[SEP]`` 3, ``[MASK]`` 4; bert-base-uncased has other ids).
"""

from __future__ import annotations

import html
import json
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kvmm.models.processor import as_text_list

VOCAB_FILENAME = "vocab.txt"
CONFIG_FILENAME = "tokenizer_config.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_QUOTES = {**{c: "'" for c in "\u02bc\u2018\u2019\u201a\u201b"},
           **{c: '"' for c in "\u201c\u201d\u201e\u201f"}}
# ftfy keeps the long s of U+FB05 ("ſt"); the other ligatures become their NFKC letters.
_LIGATURES = {c: ("\u017ft" if c == "\ufb05" else unicodedata.normalize("NFKC", c))
              for c in "ĲĳŉǄǅǆǇǈǉǊǋǌǱǲǳﬀﬁﬂﬃﬄﬅﬆ"}
_WIDTH = {
    chr(code): unicodedata.normalize("NFKC", chr(code))
    for code in [0x3000, *range(0xFF01, 0xFFEF)]
    if unicodedata.normalize("NFKC", chr(code)) != chr(code)
}
_TRANSLATE = str.maketrans({**_QUOTES, **_LIGATURES, **_WIDTH})
_TERMINAL_ESCAPES = re.compile(r"\033\[((?:\d|;)*)([a-zA-Z])")


def fix_text(text: str) -> str:
    """``ftfy.fix_text(text)`` when ftfy is installed, else kvmm's equivalent for
    everything but mojibake repair (see the module docstring)."""
    try:
        import ftfy
    except ImportError:
        ftfy = None
    if ftfy is not None:
        return ftfy.fix_text(text)
    if "<" not in text:
        text = html.unescape(text)
    text = _TERMINAL_ESCAPES.sub("", text)
    return unicodedata.normalize("NFC", text.translate(_TRANSLATE))


def clean_text(text: str) -> str:
    """open_clip's ``"whitespace"`` cleaning: fix_text, unescape HTML twice, collapse
    whitespace, strip."""
    text = html.unescape(html.unescape(fix_text(text))).strip()
    return " ".join(text.split())


def read_vocabulary(path: str | os.PathLike) -> dict[str, int]:
    """``vocab.txt``: one token per line, its id the line number (as transformers reads it)."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    return vocab


def resolve_vocabulary_file(vocabulary: str | os.PathLike) -> Path:
    """The ``vocab.txt`` named by ``vocabulary``: the file itself, or one inside a folder."""
    path = Path(os.path.expanduser(str(vocabulary)))
    if path.is_dir():
        path = path / VOCAB_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"No WordPiece vocabulary at {vocabulary}: pass a {VOCAB_FILENAME} file or a folder "
            f"holding one (a BiomedCLIP / BERT checkpoint folder)."
        )
    return path


class BiomedCLIPTokenizer:
    """Turn text into BiomedCLIP token ids and a padding mask of a fixed length.

    Args:
        vocabulary: a ``vocab.txt`` (WordPiece, one token per line) or a folder holding one;
            a ``tokenizer_config.json`` beside it is read for ``do_lower_case``.
        sequence_length: open_clip's context length (256 for BiomedCLIP).
        lowercase: lowercase and strip accents; defaults to the ``tokenizer_config.json``
            value, else True (PubMedBERT is uncased).

    Calling it returns ``{"token_ids": int32 (N, L), "padding_mask": bool (N, L)}``
    (True for ``[CLS]``, the pieces and ``[SEP]``):

    >>> tokenizer = BiomedCLIPTokenizer("BiomedCLIP-PubMedBERT_256-vit_base_patch16_224/")  # doctest: +SKIP
    >>> tokenizer(["chest x-ray", "adenocarcinoma histopathology"])["token_ids"].shape   # doctest: +SKIP
    (2, 256)
    """

    def __init__(
        self,
        vocabulary: str | os.PathLike,
        sequence_length: int = 256,
        lowercase: bool | None = None,
    ) -> None:
        if not isinstance(sequence_length, (int, np.integer)) or sequence_length < 2:
            raise ValueError(f"sequence_length must be an int >= 2, got {sequence_length!r}.")
        self.vocabulary_path = str(resolve_vocabulary_file(vocabulary))
        self.sequence_length = int(sequence_length)
        config = Path(self.vocabulary_path).with_name(CONFIG_FILENAME)
        if lowercase is None:
            lowercase = True
            if config.is_file():
                try:
                    lowercase = bool(json.loads(config.read_text()).get("do_lower_case", True))
                except ValueError:
                    pass
        self.lowercase = bool(lowercase)
        vocab = read_vocabulary(self.vocabulary_path)
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(
                f"{self.vocabulary_path} is not a BERT WordPiece vocabulary: it lacks "
                f"{', '.join(missing)}."
            )
        self.special_ids = {token: vocab[token] for token in SPECIAL_TOKENS}
        self.pad_id = self.special_ids["[PAD]"]
        self.cls_id = self.special_ids["[CLS]"]
        self.sep_id = self.special_ids["[SEP]"]
        self._vocabulary_size = max(vocab.values()) + 1
        self._tokenizer = self._build(vocab)

    def _build(self, vocab: dict[str, int]):
        from tokenizers import (
            AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
        )

        tokenizer = Tokenizer(
            models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100)
        )
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None,
            lowercase=self.lowercase,
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[("[CLS]", self.cls_id), ("[SEP]", self.sep_id)],
        )
        tokenizer.enable_truncation(max_length=self.sequence_length)
        tokenizer.enable_padding(
            length=self.sequence_length, pad_id=self.pad_id, pad_token="[PAD]"
        )
        return tokenizer

    @property
    def vocabulary_size(self) -> int:
        """Number of ids in the vocabulary (30522 for PubMedBERT)."""
        return self._vocabulary_size

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece pieces of ``text`` (cleaned), without ``[CLS]`` / ``[SEP]``,
        truncation or padding."""
        encoding = self._tokenizer.encode(clean_text(text), add_special_tokens=False)
        return [t for t, keep in zip(encoding.tokens, encoding.attention_mask) if keep]

    def __call__(self, texts: str | Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenize one text or a list of texts into fixed-length rows."""
        texts = [clean_text(t) for t in as_text_list(texts)]
        token_ids = np.full((len(texts), self.sequence_length), self.pad_id, dtype=np.int32)
        padding_mask = np.zeros((len(texts), self.sequence_length), dtype=bool)
        for row, encoding in enumerate(self._tokenizer.encode_batch(texts) if texts else []):
            token_ids[row] = encoding.ids
            padding_mask[row] = np.asarray(encoding.attention_mask, dtype=bool)
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def detokenize(self, token_ids) -> list[str]:
        """Id rows back to (cleaned, lowercased) text, special tokens dropped."""
        rows = np.asarray(token_ids)
        rows = rows[None] if rows.ndim == 1 else rows
        return [self._tokenizer.decode([int(i) for i in row], skip_special_tokens=True)
                for row in rows.tolist()]

    def __repr__(self) -> str:
        return (
            f"BiomedCLIPTokenizer(vocabulary={self.vocabulary_path!r}, "
            f"sequence_length={self.sequence_length}, lowercase={self.lowercase})"
        )
