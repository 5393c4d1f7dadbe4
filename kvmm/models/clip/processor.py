"""CLIPProcessor: text and images in, the model's input dict out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kvmm.models.clip.image_processor import CLIPImageProcessor
from kvmm.models.clip.tokenizer import (
    MERGES_FILENAME,
    TOKENIZER_FILENAME,
    VOCAB_FILENAME,
    CLIPTokenizer,
    resolve_vocabulary_files,
)
from kvmm.models.processor import Processor

#: The checkpoint whose vocabulary is the default (every OpenAI and LAION CLIP checkpoint
#: shares the same 49408-entry BPE vocabulary).
DEFAULT_VOCABULARY_REPO = "openai/clip-vit-base-patch32"


class CLIPProcessor(Processor):
    """Prepare text and images for a CLIP model.

    Args:
        image_size: the model's image size, an int or ``(height, width)`` (224, or 336 for
            ``openai/clip-vit-large-patch14-336``). Images get their shortest edge resized
            to it (bicubic) and are center-cropped.
        sequence_length: the model's number of text positions (77 for every CLIP checkpoint).
        vocabulary: a local folder holding ``tokenizer.json`` or ``vocab.json`` +
            ``merges.txt`` (a Hugging Face checkpoint folder), or a ``tokenizer.json`` path.
        vocabulary_repo: the Hugging Face repository whose vocabulary is used when
            ``vocabulary`` is not given. It is fetched lazily (only when text is first
            tokenized, so image-only use needs no network): ``tokenizer.json``, or
            ``vocab.json`` + ``merges.txt`` when the repository has no ``tokenizer.json``,
            together with its ``tokenizer_config.json`` / ``special_tokens_map.json`` (which
            name the pad token). The Hugging Face cache, ``HF_HOME`` and
            ``HF_HUB_OFFLINE`` work as usual.

    Calling it returns a dict of NumPy arrays:

    * ``"images"``: ``float32 (N, H, W, 3)`` when ``images`` or ``image_paths`` is given;
    * ``"token_ids"`` and ``"input_ids"`` (the same ``int32 (M, sequence_length)`` array)
      and ``"padding_mask"`` (``bool (M, sequence_length)``, True for real tokens) when
      ``text`` is given.

    CLIP's probabilities are a **softmax over the texts** for each image (unlike SigLIP,
    whose probabilities are element-wise sigmoids):

    >>> import keras, kvmm                                                  # doctest: +SKIP
    >>> model = kvmm.models.clip.ClipVitBase32(weights="openai_224")       # doctest: +SKIP
    >>> processor = CLIPProcessor.for_model(model)                         # doctest: +SKIP
    >>> inputs = processor(text=["a photo of a cat", "a photo of a dog"],
    ...                    image_paths="cat.jpg")                          # doctest: +SKIP
    >>> inputs["images"].shape, inputs["token_ids"].shape                   # doctest: +SKIP
    ((1, 224, 224, 3), (2, 77))
    >>> out = model({"images": inputs["images"], "token_ids": inputs["token_ids"]})  # doctest: +SKIP
    >>> keras.ops.softmax(out["image_logits"], axis=-1)  # one row per image   # doctest: +SKIP

    Raises:
        FileNotFoundError: ``vocabulary`` was given and holds no vocabulary files.
        kvmm.errors.HubUnavailableError: text was given, no ``vocabulary`` was, and the
            default one is neither cached nor downloadable (offline).
        kvmm.errors.ImageReadError: an image cannot be read.
    """

    tokenizer_class = CLIPTokenizer

    def __init__(
        self,
        image_size: int | Sequence[int] = 224,
        sequence_length: int = 77,
        vocabulary: str | os.PathLike | None = None,
        vocabulary_repo: str = DEFAULT_VOCABULARY_REPO,
    ) -> None:
        if (
            not isinstance(sequence_length, (int, np.integer))
            or isinstance(sequence_length, bool)
            or sequence_length < 2
        ):
            raise ValueError(f"sequence_length must be an int >= 2, got {sequence_length!r}.")
        if not isinstance(vocabulary_repo, str) or not vocabulary_repo:
            raise ValueError(f"vocabulary_repo must be a repository id, got {vocabulary_repo!r}.")
        self.sequence_length = int(sequence_length)
        self.image_processor = CLIPImageProcessor(image_size)
        if vocabulary is not None:
            vocabulary = os.fspath(vocabulary)
            resolve_vocabulary_files(vocabulary)  # fail now, naming the path
        self.vocabulary = vocabulary
        self.vocabulary_repo = vocabulary_repo

    @classmethod
    def for_model(cls, model: Any) -> CLIPProcessor:
        """The processor that matches ``model``: its image size, text length and vocabulary.

        Reads ``model.image_size`` (an int or ``(height, width)``),
        ``model.max_text_length`` and, when set by the loader, ``model.vocabulary_path``
        (the checkpoint's own vocabulary folder or ``tokenizer.json``, preferred) and
        ``model.vocabulary_repo`` (the checkpoint's Hugging Face repository).

        >>> model = kvmm.models.clip.ClipVitLarge14(weights="openai_336")  # doctest: +SKIP
        >>> CLIPProcessor.for_model(model)                                 # doctest: +SKIP
        CLIPProcessor(image_size=336, sequence_length=77, ...)
        """
        return super().for_model(model)

    def _fetch_vocabulary(self) -> str:
        return fetch_vocabulary(self.vocabulary_repo)

    def __repr__(self) -> str:
        vocabulary = self.vocabulary if self.vocabulary is not None else (
            f"hf://{self.vocabulary_repo}"
        )
        return (
            f"CLIPProcessor(image_size={self.image_size!r}, "
            f"sequence_length={self.sequence_length}, vocabulary={vocabulary!r})"
        )


def fetch_vocabulary(repo_id: str) -> str:
    """Fetch the vocabulary of ``repo_id`` (from the Hugging Face cache or the Hub) and
    return what :class:`CLIPTokenizer` takes: the snapshot folder holding it.

    ``tokenizer.json`` is preferred; without it, ``vocab.json`` + ``merges.txt``. The
    optional ``tokenizer_config.json`` / ``special_tokens_map.json`` (special tokens) are
    fetched too, when the repository has them.

    Raises:
        kvmm.errors.HubUnavailableError: the files are not cached and the Hub cannot be
            reached.
        kvmm.errors.WeightsError: the repository does not exist, or has no vocabulary.
    """
    from kvmm.errors import HubUnavailableError, KvmmError, WeightsError
    from kvmm.utils.hub import hub_file_if_exists

    try:
        path = hub_file_if_exists(repo_id, TOKENIZER_FILENAME)
        unavailable = None
    except HubUnavailableError as exc:  # offline: a cache may still hold vocab + merges
        path, unavailable = None, exc
    if path is None:
        try:
            vocab = hub_file_if_exists(repo_id, VOCAB_FILENAME)
            merges = hub_file_if_exists(repo_id, MERGES_FILENAME) if vocab else None
        except HubUnavailableError:
            if unavailable is not None:
                raise unavailable from None
            raise
        if vocab is None or merges is None:
            if unavailable is not None:
                raise unavailable
            raise WeightsError(
                f"{repo_id} has neither {TOKENIZER_FILENAME} nor {VOCAB_FILENAME} + "
                f"{MERGES_FILENAME}: it holds no CLIP vocabulary."
            )
        path = vocab
    for optional in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            hub_file_if_exists(repo_id, optional)
        except KvmmError:  # optional: not cached while offline is fine
            pass
    return os.path.dirname(path)
