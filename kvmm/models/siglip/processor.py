"""SigLIPProcessor: text and images in, the model's input dict out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kvmm.models.siglip.image_processor import SigLIPImageProcessor
from kvmm.models.siglip.tokenizer import SigLIPTokenizer, resolve_vocabulary_path
from kvmm.models.processor import Processor

#: Checkpoints whose ``spiece.model`` is the default vocabulary.
ENGLISH_VOCABULARY_REPO = "google/siglip-base-patch16-224"
MULTILINGUAL_VOCABULARY_REPO = "google/siglip-base-patch16-256-multilingual"
VOCABULARY_FILENAME = "spiece.model"
#: Embedding rows of the multilingual checkpoint (its SentencePiece model has more pieces).
MULTILINGUAL_VOCABULARY_SIZE = 250000


class SigLIPProcessor(Processor):
    """Prepare text and images for a SigLIP model.

    Args:
        multilingual: use the multilingual vocabulary (for ``google_multilingual_256``).
        image_size: the model's image size, an int or ``(height, width)``.
        sequence_length: the model's number of text positions. 64 for every Google SigLIP
            checkpoint **except** ``google/siglip-so400m-patch14-224``
            (``SigLIPSo400mP14(weights="google_224")``), which has 16: use
            ``sequence_length=16`` there, or simply :meth:`for_model`, which reads it from
            the model.
        vocabulary: a local SentencePiece ``.model`` file, or a folder holding
            ``spiece.model``. By default the checkpoint's own ``spiece.model`` is fetched
            from the Hugging Face Hub (``google/siglip-base-patch16-224``, or
            ``google/siglip-base-patch16-256-multilingual`` when ``multilingual=True``),
            lazily: only when text is first tokenized, so image-only use needs no network.
        vocabulary_repo: fetch the default ``spiece.model`` from this Hugging Face repo
            instead (``for_model`` sets it to the repo the model's weights came from).
            The Hugging Face cache, ``HF_HOME`` and ``HF_HUB_OFFLINE`` work as usual.

    Calling it returns a dict of NumPy arrays:

    * ``"images"``: ``float32 (N, H, W, 3)`` when ``images`` or ``image_paths`` is given;
    * ``"token_ids"`` and ``"input_ids"`` (the same ``int32 (M, sequence_length)`` array)
      when ``text`` is given.

    Example:

    >>> import keras, kvmm                                                # doctest: +SKIP
    >>> model = kvmm.models.siglip.SigLIPBaseP16(weights="google_224")   # doctest: +SKIP
    >>> processor = SigLIPProcessor.for_model(model)                     # doctest: +SKIP
    >>> inputs = processor(text=["a cat", "a dog"], image_paths="cat.jpg")  # doctest: +SKIP
    >>> inputs["images"].shape, inputs["token_ids"].shape                 # doctest: +SKIP
    ((1, 224, 224, 3), (2, 64))
    >>> out = model({"images": inputs["images"], "token_ids": inputs["token_ids"]})  # doctest: +SKIP
    >>> keras.ops.sigmoid(out["image_logits"])   # SigLIP probabilities: sigmoid   # doctest: +SKIP

    Raises:
        FileNotFoundError: ``vocabulary`` was given and does not exist.
        kvmm.errors.HubUnavailableError: text was given, no ``vocabulary`` was, and the
            default one is neither cached nor downloadable (offline).
        kvmm.errors.ImageReadError: an image cannot be read.
    """

    tokenizer_class = SigLIPTokenizer

    def __init__(
        self,
        multilingual: bool = False,
        image_size: int | Sequence[int] = 224,
        sequence_length: int = 64,
        vocabulary: str | os.PathLike | None = None,
        vocabulary_repo: str | None = None,
    ) -> None:
        if not isinstance(sequence_length, (int, np.integer)) or sequence_length < 1:
            raise ValueError(f"sequence_length must be a positive int, got {sequence_length!r}.")
        self.multilingual = bool(multilingual)
        self.sequence_length = int(sequence_length)
        self.image_processor = SigLIPImageProcessor(image_size)
        self.vocabulary = None if vocabulary is None else resolve_vocabulary_path(vocabulary)
        self._vocabulary_repo = vocabulary_repo

    @classmethod
    def for_model(cls, model: Any) -> SigLIPProcessor:
        """The processor that matches ``model``: its image size, text length and vocabulary.

        Reads ``model.image_size``, ``model.max_text_length`` (16 for so400m-patch14-224,
        64 otherwise), ``model.vocabulary_size`` (250000 means the multilingual vocabulary)
        and where the checkpoint's own ``spiece.model`` is: ``model.vocabulary_path`` (the
        local checkpoint folder that has one, preferred) or ``model.vocabulary_repo`` (the
        Hub repo the weights came from; fetched on first use of text).

        >>> model = kvmm.models.siglip.SigLIPSo400mP14(weights="google_224")  # doctest: +SKIP
        >>> SigLIPProcessor.for_model(model)                                 # doctest: +SKIP
        SigLIPProcessor(multilingual=False, image_size=224, sequence_length=16, ...)
        """
        return super().for_model(model)

    @classmethod
    def _arguments_for(cls, model: Any) -> dict:
        multilingual = int(model.vocabulary_size) == MULTILINGUAL_VOCABULARY_SIZE
        return dict(super()._arguments_for(model), multilingual=multilingual)

    @property
    def vocabulary_repo(self) -> str:
        """The Hugging Face repository the default vocabulary comes from: ``vocabulary_repo``
        when given, else Google's English (or, with ``multilingual``, multilingual) one."""
        if self._vocabulary_repo:
            return self._vocabulary_repo
        return MULTILINGUAL_VOCABULARY_REPO if self.multilingual else ENGLISH_VOCABULARY_REPO

    def _fetch_vocabulary(self) -> str:
        from kvmm.utils.hub import hub_file

        return hub_file(self.vocabulary_repo, VOCABULARY_FILENAME)

    def _encode_text(self, text):
        token_ids = self.tokenizer(text)
        return {"token_ids": token_ids, "input_ids": token_ids}

    def __repr__(self) -> str:
        if self.vocabulary is not None:
            vocabulary = self.vocabulary
        else:
            vocabulary = f"hf://{self.vocabulary_repo}/{VOCABULARY_FILENAME}"
        return (
            f"SigLIPProcessor(multilingual={self.multilingual}, image_size={self.image_size!r}, "
            f"sequence_length={self.sequence_length}, vocabulary={vocabulary!r})"
        )
