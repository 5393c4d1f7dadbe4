"""SigLIP text tokenizer: SentencePiece plus big_vision's text canonicalization.

The ids are exactly those of transformers' ``SiglipTokenizer(vocab_file=...)`` called with
``padding="max_length", truncation=True, max_length=sequence_length``. What that tokenizer
does, step by step, and what :meth:`SigLIPTokenizer.encode` repeats:

1. Replace every ``"▁"`` (U+2581, SentencePiece's space marker) in the text with a space and
   put one ``"▁"`` in front of the whole text.
2. Split out the special tokens ``</s>`` and ``<unk>`` written literally in the text (before
   any lowercasing, so ``</S>`` is not one); whitespace on both sides of them is dropped.
3. Canonicalize each remaining piece of text: lowercase, delete every character of
   ``string.punctuation``, collapse runs of whitespace to one space, strip.
4. Encode ``"<unk>" + piece`` with SentencePiece and drop as many leading pieces as
   ``"<unk>"`` alone encodes to (the "unk-prefix trick" transformers uses so that the model's
   ``add_dummy_prefix`` does not decide how the first word is split).
5. If the first token is a bare ``"▁"`` followed by a special token, drop the ``"▁"``.
6. Map pieces to ids; keep the first ``sequence_length - 1`` ids, append ``</s>`` unless the
   ids already end with it, and pad with ``</s>`` (SigLIP's pad token is ``</s>``, id 1 in
   Google's vocabularies) to exactly ``sequence_length``.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Sequence

import numpy as np

from kvmm.models.processor import as_text_list

SPIECE_UNDERLINE = "\u2581"
EOS_PIECE = "</s>"
UNK_PIECE = "<unk>"

_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)
_WHITESPACE = re.compile(r"\s+")
_SPECIAL_SPLIT = re.compile(f"({re.escape(EOS_PIECE)}|{re.escape(UNK_PIECE)})")


def canonicalize(text: str) -> str:
    """Canonicalize ``text`` as SigLIP was trained (big_vision's ``_canonicalize``).

    Lowercase, delete ``string.punctuation``, collapse whitespace to single spaces, strip.

    >>> canonicalize("  A photo of a CAT!  (cute) ")
    'a photo of a cat cute'
    """
    text = text.lower().translate(_PUNCTUATION_TABLE)
    return _WHITESPACE.sub(" ", text).strip()


class SigLIPTokenizer:
    """Turn text into SigLIP token ids of a fixed length.

    Args:
        vocabulary: path to a SentencePiece model (a checkpoint's ``spiece.model``), or a
            folder that contains ``spiece.model``.
        sequence_length: number of text positions of the model: 64 for every SigLIP
            checkpoint except ``google/siglip-so400m-patch14-224``, which has 16.

    Calling the tokenizer returns an ``int32`` array ``(num_texts, sequence_length)``:

    >>> tokenizer = SigLIPTokenizer("spiece.model")              # doctest: +SKIP
    >>> tokenizer(["a photo of a cat", "a dog"]).shape           # doctest: +SKIP
    (2, 64)
    >>> tokenizer.detokenize(tokenizer("A photo of a CAT!"))     # doctest: +SKIP
    ['a photo of a cat']

    Raises:
        FileNotFoundError: ``vocabulary`` does not exist (or a folder lacks ``spiece.model``).
        ValueError: the file is not a SentencePiece model, or has no ``</s>`` piece.
    """

    def __init__(self, vocabulary: str | os.PathLike, sequence_length: int = 64) -> None:
        import sentencepiece

        if not isinstance(sequence_length, (int, np.integer)) or sequence_length < 1:
            raise ValueError(f"sequence_length must be a positive int, got {sequence_length!r}.")
        self.sequence_length = int(sequence_length)
        self.vocabulary_path = resolve_vocabulary_path(vocabulary)

        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.Load(self.vocabulary_path)
        except (OSError, RuntimeError) as exc:
            raise ValueError(
                f"{self.vocabulary_path} is not a readable SentencePiece model: {exc}"
            ) from exc

        self._special_ids = {}
        for piece in (EOS_PIECE, UNK_PIECE):
            piece_id = self._sp.piece_to_id(piece)
            if self._sp.id_to_piece(piece_id) != piece:
                raise ValueError(
                    f"{self.vocabulary_path} has no {piece!r} piece: it is not a SigLIP "
                    f"(T5-style) SentencePiece vocabulary."
                )
            self._special_ids[piece] = piece_id
        self.eos_id = self._special_ids[EOS_PIECE]
        self.pad_id = self.eos_id
        self.unk_id = self._special_ids[UNK_PIECE]
        self._unk_prefix_length = len(self._sp.encode(UNK_PIECE, out_type=str))

    @property
    def vocabulary_size(self) -> int:
        """Number of pieces in the SentencePiece model (transformers' ``vocab_size``).

        The multilingual checkpoint's embedding table has 250000 rows, fewer than its
        SentencePiece model has pieces: size embeddings from the model config, not from this.
        """
        return int(self._sp.get_piece_size())

    canonicalize = staticmethod(canonicalize)

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into SentencePiece pieces (no ``</s>`` appended, no padding)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}.")
        text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")
        chunks = _SPECIAL_SPLIT.split(text)  # odd positions hold the special tokens
        for i in range(1, len(chunks), 2):
            chunks[i - 1] = chunks[i - 1].rstrip()
            chunks[i + 1] = chunks[i + 1].lstrip()
        pieces: list[str] = []
        for i, chunk in enumerate(chunks):
            if not chunk:
                continue
            if i % 2:
                pieces.append(chunk)
            else:
                pieces.extend(self._encode_chunk(chunk))
        if len(pieces) > 1 and pieces[0] == SPIECE_UNDERLINE and pieces[1] in self._special_ids:
            pieces = pieces[1:]
        return pieces

    def _encode_chunk(self, chunk: str) -> list[str]:
        pieces = self._sp.encode(UNK_PIECE + canonicalize(chunk), out_type=str)
        if len(pieces) >= self._unk_prefix_length:
            return pieces[self._unk_prefix_length :]
        return pieces

    def encode(self, text: str) -> list[int]:
        """Ids of one text: at most ``sequence_length``, ending with ``</s>``, unpadded."""
        special = self._special_ids
        ids = [
            special[piece] if piece in special else self._sp.piece_to_id(piece)
            for piece in self.tokenize(text)
        ]
        ids = ids[: self.sequence_length - 1]
        if not ids or ids[-1] != self.eos_id:
            ids.append(self.eos_id)
        return ids

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """Tokenize one text or a list of texts into ``int32 (num_texts, sequence_length)``."""
        texts = as_text_list(texts)
        out = np.full((len(texts), self.sequence_length), self.pad_id, dtype=np.int32)
        for row, text in enumerate(texts):
            ids = self.encode(text)
            out[row, : len(ids)] = ids
        return out

    def detokenize(self, token_ids: np.ndarray | Sequence[int] | Sequence[Sequence[int]]) -> list[str]:
        """Turn id rows back into (canonicalized) text, stopping at the first ``</s>``."""
        rows = np.asarray(token_ids)
        if rows.ndim == 1:
            rows = rows[None]
        texts = []
        for row in rows.tolist():
            if self.eos_id in row:
                row = row[: row.index(self.eos_id)]
            texts.append(self._sp.decode([int(i) for i in row]))
        return texts

    decode = detokenize

    def __repr__(self) -> str:
        return (
            f"SigLIPTokenizer(vocabulary={self.vocabulary_path!r}, "
            f"sequence_length={self.sequence_length}, vocabulary_size={self.vocabulary_size})"
        )


def resolve_vocabulary_path(vocabulary: str | os.PathLike) -> str:
    """Return the ``.model`` file named by ``vocabulary`` (a file, or a folder holding
    ``spiece.model``), or raise ``FileNotFoundError`` naming what is missing."""
    path = os.fspath(vocabulary)
    if os.path.isdir(path):
        candidate = os.path.join(path, "spiece.model")
        if not os.path.isfile(candidate):
            raise FileNotFoundError(
                f"SigLIP vocabulary folder {path!r} has no 'spiece.model' file."
            )
        return candidate
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SigLIP vocabulary file {path!r} does not exist (expected a SentencePiece "
            f"'spiece.model' file or a folder containing one)."
        )
    return path
