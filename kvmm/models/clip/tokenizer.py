"""CLIP text tokenizer: byte-level BPE through the ``tokenizers`` library.

The ids are exactly those of transformers' ``CLIPTokenizer`` (in transformers 5 the only
CLIP tokenizer; ``CLIPTokenizerFast`` is the same class) loaded from the same checkpoint
folder and called with ``padding="max_length", truncation=True, max_length=sequence_length``.
transformers 5 builds that tokenizer from the checkpoint's vocabulary and merges only (the
pipeline stored in a ``tokenizer.json`` is not used); :class:`CLIPTokenizer` builds the same
pipeline:

1. Special tokens written literally in the text are split out first (``<|startoftext|>``,
   ``<|endoftext|>``, the pad token, and any other added token of the checkpoint), with the
   flags the checkpoint gives them (``normalized``, ``lstrip``, ...).
2. Normalization: Unicode NFC, every run of whitespace replaced by one space, lowercase.
   (OpenAI's original tokenizer also ran ``ftfy.fix_text`` and ``html.unescape``;
   transformers 5 does neither, whether or not ftfy is installed, and neither do we.)
3. Pre-tokenization: keep the matches of CLIP's pattern
   ``<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^\\s\\p{L}\\p{N}]+``
   (so digits are single tokens and whitespace disappears), then map each piece's UTF-8
   bytes to GPT-2's printable byte alphabet.
4. BPE with the ``"</w>"`` end-of-word suffix on the last symbol of each piece.
5. ``<|startoftext|>`` + ids + ``<|endoftext|>``; a text longer than ``sequence_length``
   keeps its first ``sequence_length - 2`` ids (so the final ``<|endoftext|>`` is always
   there); then padding with the pad token to ``sequence_length``.

The pad token is ``<|endoftext|>`` unless the checkpoint's ``tokenizer_config.json`` /
``special_tokens_map.json`` names another one (some LAION checkpoints use ``"!"``, id 0).
Like transformers, a pad token that is an ordinary vocabulary entry (``"!"``) then becomes a
special token: a ``"!"`` in the text is always its own token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kvmm.models.processor import as_text_list

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD_SUFFIX = "</w>"
#: CLIP's pre-tokenization pattern (OpenAI's ``simple_tokenizer``), as transformers writes it.
SPLIT_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
    r"""[^\s\p{L}\p{N}]+"""
)

TOKENIZER_FILENAME = "tokenizer.json"
VOCAB_FILENAME = "vocab.json"
MERGES_FILENAME = "merges.txt"
CONFIG_FILENAME = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILENAME = "special_tokens_map.json"

_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
_DEFAULT_SPECIALS = {
    "bos_token": BOS_TOKEN,
    "eos_token": EOS_TOKEN,
    "unk_token": EOS_TOKEN,
    "pad_token": EOS_TOKEN,
}
_ADDED_TOKEN_FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


class CLIPTokenizer:
    """Turn text into CLIP token ids and a padding mask of a fixed length.

    Args:
        vocabulary: a checkpoint folder holding ``tokenizer.json`` or ``vocab.json`` +
            ``merges.txt`` (``tokenizer.json`` is preferred when both are there), or the
            path of a ``tokenizer.json`` file. A ``tokenizer_config.json`` /
            ``special_tokens_map.json`` next to it is read for the special tokens.
        sequence_length: number of text positions of the model (77 for every CLIP
            checkpoint).

    Calling the tokenizer returns a dict of NumPy arrays, both ``(num_texts,
    sequence_length)``: ``"token_ids"`` (``int32``) and ``"padding_mask"`` (``bool``,
    True for real tokens, ``<|startoftext|>`` and ``<|endoftext|>`` included):

    >>> tokenizer = CLIPTokenizer("clip-vit-base-patch32/")             # doctest: +SKIP
    >>> out = tokenizer(["a photo of a cat", "a dog"])                  # doctest: +SKIP
    >>> out["token_ids"][:, :7]                                         # doctest: +SKIP
    array([[49406,   320,  1125,   539,   320,  2368, 49407],
           [49406,   320,  1929, 49407, 49407, 49407, 49407]], dtype=int32)
    >>> tokenizer.detokenize(out["token_ids"])                          # doctest: +SKIP
    ['a photo of a cat', 'a dog']

    Raises:
        FileNotFoundError: ``vocabulary`` does not exist or holds no vocabulary files.
        ValueError: the files cannot be parsed, or a special token is not in the vocabulary.
    """

    def __init__(self, vocabulary: str | os.PathLike, sequence_length: int = 77) -> None:
        if (
            not isinstance(sequence_length, (int, np.integer))
            or isinstance(sequence_length, bool)
            or sequence_length < 2
        ):
            raise ValueError(
                f"sequence_length must be an int >= 2 (room for <|startoftext|> and "
                f"<|endoftext|>), got {sequence_length!r}."
            )
        self.sequence_length = int(sequence_length)
        files = resolve_vocabulary_files(vocabulary)
        self.vocabulary_path = files["tokenizer"] or files["folder"]
        vocab, merges = _read_vocab_and_merges(files)
        specials, added_tokens = _read_special_tokens(files)
        for key in _SPECIAL_KEYS:
            if specials[key]["content"] not in vocab:
                raise ValueError(
                    f"The {key} {specials[key]['content']!r} is not in the vocabulary of "
                    f"{self.vocabulary_path}: it is not a CLIP vocabulary."
                )
        self.special_tokens = {key: specials[key]["content"] for key in _SPECIAL_KEYS}
        self._tokenizer = _build_tokenizer(vocab, merges, specials, added_tokens)
        self.bos_id = int(vocab[self.special_tokens["bos_token"]])
        self.eos_id = int(vocab[self.special_tokens["eos_token"]])
        self.pad_id = int(vocab[self.special_tokens["pad_token"]])
        self.unk_id = int(vocab[self.special_tokens["unk_token"]])
        self._tokenizer.post_processor = _post_processor(
            self.special_tokens["bos_token"], self.bos_id,
            self.special_tokens["eos_token"], self.eos_id,
        )
        self._tokenizer.enable_truncation(max_length=self.sequence_length)
        self._tokenizer.enable_padding(
            direction="right",
            pad_id=self.pad_id,
            pad_token=self.special_tokens["pad_token"],
            length=self.sequence_length,
        )
        self._raw_tokenizer = None

    @property
    def vocabulary_size(self) -> int:
        """Number of ids (49408 for every CLIP checkpoint)."""
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def tokenize(self, text: str) -> list[str]:
        """The BPE tokens of ``text`` (byte-level symbols, ``</w>`` suffixes), without
        ``<|startoftext|>`` / ``<|endoftext|>``, truncation or padding."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}.")
        if self._raw_tokenizer is None:
            from tokenizers import Tokenizer

            raw = Tokenizer.from_str(self._tokenizer.to_str())
            raw.no_truncation()
            raw.no_padding()
            self._raw_tokenizer = raw
        return list(self._raw_tokenizer.encode(text, add_special_tokens=False).tokens)

    def encode(self, text: str) -> list[int]:
        """Ids of one text: ``<|startoftext|>`` ... ``<|endoftext|>``, at most
        ``sequence_length`` of them, unpadded."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}.")
        encoding = self._tokenizer.encode(text)
        return list(encoding.ids[: int(sum(encoding.attention_mask))])

    def __call__(self, texts: str | Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenize one text or a list of texts.

        Returns ``{"token_ids": int32 (N, L), "padding_mask": bool (N, L)}``.
        """
        texts = as_text_list(texts)
        token_ids = np.full((len(texts), self.sequence_length), self.pad_id, dtype=np.int32)
        padding_mask = np.zeros((len(texts), self.sequence_length), dtype=bool)
        if texts:
            for row, encoding in enumerate(self._tokenizer.encode_batch(texts)):
                token_ids[row] = encoding.ids
                padding_mask[row] = np.asarray(encoding.attention_mask, dtype=bool)
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def detokenize(
        self, token_ids: np.ndarray | Sequence[int] | Sequence[Sequence[int]]
    ) -> list[str]:
        """Turn id rows back into (lowercased, whitespace-normalized) text. Special tokens
        (start, end, padding) are dropped; decoding of a row stops at its first
        ``<|endoftext|>``."""
        rows = np.asarray(token_ids)
        if rows.ndim == 1:
            rows = rows[None]
        texts = []
        for row in rows.tolist():
            if row and row[0] == self.bos_id:
                row = row[1:]
            if self.eos_id in row:
                row = row[: row.index(self.eos_id)]
            text = self._tokenizer.decode([int(i) for i in row], skip_special_tokens=True)
            texts.append(" ".join(text.replace(END_OF_WORD_SUFFIX, " ").split()))
        return texts

    decode = detokenize

    def __repr__(self) -> str:
        return (
            f"CLIPTokenizer(vocabulary={self.vocabulary_path!r}, "
            f"sequence_length={self.sequence_length}, vocabulary_size={self.vocabulary_size}, "
            f"pad_token={self.special_tokens['pad_token']!r})"
        )


# --- Files ---------------------------------------------------------------------------------


def resolve_vocabulary_files(vocabulary: str | os.PathLike) -> dict[str, str | None]:
    """Find the vocabulary files named by ``vocabulary`` (a folder or a ``tokenizer.json``).

    Returns ``{"folder", "tokenizer", "vocab", "merges", "config", "special_tokens_map"}``
    with ``None`` for the files that are not there; raises ``FileNotFoundError`` naming what
    is missing when there is neither a ``tokenizer.json`` nor ``vocab.json`` + ``merges.txt``.
    """
    path = os.fspath(vocabulary)
    if os.path.isdir(path):
        folder, tokenizer_file = path, os.path.join(path, TOKENIZER_FILENAME)
        if not os.path.isfile(tokenizer_file):
            tokenizer_file = None
    elif os.path.isfile(path):
        if not path.endswith(".json"):
            raise FileNotFoundError(
                f"CLIP vocabulary {path!r} is not a tokenizer.json file: give a "
                f"tokenizer.json or a folder holding tokenizer.json or vocab.json + merges.txt."
            )
        folder, tokenizer_file = os.path.dirname(os.path.abspath(path)), path
    else:
        raise FileNotFoundError(
            f"CLIP vocabulary {path!r} does not exist (expected a tokenizer.json file or a "
            f"folder holding tokenizer.json or vocab.json + merges.txt)."
        )

    def sibling(name: str) -> str | None:
        candidate = os.path.join(folder, name)
        return candidate if os.path.isfile(candidate) else None

    files = {
        "folder": folder,
        "tokenizer": tokenizer_file,
        "vocab": sibling(VOCAB_FILENAME),
        "merges": sibling(MERGES_FILENAME),
        "config": sibling(CONFIG_FILENAME),
        "special_tokens_map": sibling(SPECIAL_TOKENS_MAP_FILENAME),
    }
    if tokenizer_file is None and not (files["vocab"] and files["merges"]):
        missing = [n for n in (VOCAB_FILENAME, MERGES_FILENAME) if not files[n.split(".")[0]]]
        raise FileNotFoundError(
            f"CLIP vocabulary folder {folder!r} has no {TOKENIZER_FILENAME} and no "
            f"{' / '.join(missing)}: it needs tokenizer.json, or vocab.json and merges.txt."
        )
    return files


def _load_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Cannot read {path}: {exc}") from exc


def _read_vocab_and_merges(files: dict) -> tuple[dict[str, int], list[tuple[str, str]]]:
    if files["tokenizer"]:
        path = files["tokenizer"]
        data = _load_json(path)
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, dict) or model.get("type", "BPE") != "BPE" or not isinstance(
            model.get("vocab"), dict
        ):
            raise ValueError(f"{path} does not hold a BPE model: it is not a CLIP tokenizer.json.")
        merges = []
        for merge in model.get("merges") or []:
            pair = merge.split(" ") if isinstance(merge, str) else list(merge)
            if len(pair) != 2:
                raise ValueError(f"{path} has a malformed merge {merge!r}.")
            merges.append((pair[0], pair[1]))
        return {str(k): int(v) for k, v in model["vocab"].items()}, merges
    from tokenizers.models import BPE

    try:
        vocab, merges = BPE.read_file(files["vocab"], files["merges"])
    except Exception as exc:  # tokenizers raises its own Exception types
        raise ValueError(
            f"Cannot read the CLIP vocabulary {files['vocab']} / {files['merges']}: {exc}"
        ) from exc
    return dict(vocab), [tuple(m) for m in merges]


def _token_spec(value: Any) -> dict[str, Any] | None:
    """A special-token entry (a string, an AddedToken dict) as ``{"content": ..., flags}``."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"content": value}
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        spec = {"content": value["content"]}
        spec.update({k: bool(value[k]) for k in _ADDED_TOKEN_FLAGS if k in value})
        return spec
    return None


def _read_special_tokens(files: dict) -> tuple[dict[str, dict], list[dict]]:
    """The named special tokens and the checkpoint's added tokens, read the way
    transformers 5's ``from_pretrained`` reads them.

    ``tokenizer_config.json`` gives the named tokens. When it has an
    ``added_tokens_decoder``, that gives the added tokens and their flags; otherwise
    ``special_tokens_map.json`` overrides the named tokens and ``tokenizer.json``'s
    ``added_tokens`` are the added tokens.
    """
    config = _load_json(files["config"]) if files["config"] else {}
    config = config if isinstance(config, dict) else {}
    named: dict[str, dict | None] = {key: _token_spec(config.get(key)) for key in _SPECIAL_KEYS}
    added: dict[int, dict] = {}
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        for index, token in decoder.items():
            spec = _token_spec(token)
            if spec is not None:
                added[int(index)] = spec
    else:
        if files["special_tokens_map"]:
            special_map = _load_json(files["special_tokens_map"])
            for key in _SPECIAL_KEYS:
                spec = _token_spec(special_map.get(key)) if isinstance(special_map, dict) else None
                if spec is not None:
                    spec.setdefault("special", True)
                    named[key] = spec
        if files["tokenizer"]:
            for token in _load_json(files["tokenizer"]).get("added_tokens") or []:
                spec = _token_spec(token)
                if spec is not None and "id" in token:
                    added[int(token["id"])] = spec
    by_content = {spec["content"]: spec for spec in added.values()}
    specials = {}
    for key in _SPECIAL_KEYS:
        spec = named[key] or {"content": _DEFAULT_SPECIALS[key]}
        specials[key] = by_content.get(spec["content"], spec)
    return specials, [added[index] for index in sorted(added)]


# --- The tokenizers pipeline ---------------------------------------------------------------


def _added_token(spec: dict[str, Any], special: bool):
    from tokenizers import AddedToken

    flags = {k: spec[k] for k in _ADDED_TOKEN_FLAGS if k in spec}
    flags.setdefault("special", special)
    return AddedToken(spec["content"], **flags)


def _build_tokenizer(vocab, merges, specials, added_tokens):
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    tokenizer = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix=END_OF_WORD_SUFFIX,
            fuse_unk=False,
            unk_token=specials["unk_token"]["content"],
        )
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # The checkpoint's added tokens first (in id order), then the named special tokens
    # that are not among them, as special tokens.
    seen = set()
    for spec in added_tokens:
        token = _added_token(spec, special=False)
        if token.special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
        seen.add(spec["content"])
    for key in _SPECIAL_KEYS:
        spec = specials[key]
        if spec["content"] not in seen:
            tokenizer.add_special_tokens([_added_token(spec, special=True)])
            seen.add(spec["content"])
    return tokenizer


def _post_processor(bos_token: str, bos_id: int, eos_token: str, eos_id: int):
    from tokenizers import processors

    return processors.RobertaProcessing(
        (eos_token, eos_id), (bos_token, bos_id), trim_offsets=False, add_prefix_space=False
    )
