"""BiomedCLIPProcessor: text and images in, the model's input dict out."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from kvmm.models.biomedclip.image_processor import BiomedCLIPImageProcessor
from kvmm.models.biomedclip.tokenizer import (
    CONFIG_FILENAME,
    VOCAB_FILENAME,
    BiomedCLIPTokenizer,
    resolve_vocabulary_file,
)
from kvmm.models.processor import Processor

#: The checkpoint whose vocabulary is the default.
DEFAULT_VOCABULARY_REPO = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"


class BiomedCLIPProcessor(Processor):
    """Prepare text and images for a BiomedCLIP model (open_clip's preprocessing).

    Args:
        image_size: the model's image size (224). Images get their shortest edge resized to
            it (bicubic) and are center-cropped, as open_clip's evaluation transform does.
        sequence_length: open_clip's context length (256 for BiomedCLIP).
        vocabulary: a local ``vocab.txt`` or a folder holding one (a checkpoint folder).
        vocabulary_repo: the Hugging Face repository whose ``vocab.txt`` is used when
            ``vocabulary`` is not given; fetched lazily (when text is first tokenized). A
            repository without ``vocab.txt`` is looked up through its
            ``open_clip_config.json`` (``hf_tokenizer_name``, as open_clip does).

    ``BiomedCLIPProcessor.for_model(model)`` matches a loaded model (image size, context,
    the checkpoint's own ``vocab.txt``).

    Calling it returns a dict of NumPy arrays: ``"images"`` ``float32 (N, H, W, 3)``;
    ``"token_ids"`` / ``"input_ids"`` ``int32 (M, sequence_length)`` and
    ``"padding_mask"`` ``bool`` when text is given.

    BiomedCLIP's probabilities are a **softmax over the texts** for each image:

    >>> model = kvmm.models.biomedclip.BiomedClipVitBase16(weights="microsoft_224")  # doctest: +SKIP
    >>> processor = BiomedCLIPProcessor.for_model(model)                             # doctest: +SKIP
    >>> inputs = processor(text=["chest x-ray", "brain MRI"], image_paths="scan.png")  # doctest: +SKIP
    >>> keras.ops.softmax(model(inputs)["image_logits"], axis=-1)                     # doctest: +SKIP

    Raises:
        FileNotFoundError: ``vocabulary`` was given and holds no ``vocab.txt``.
        kvmm.errors.HubUnavailableError: text was given, no ``vocabulary`` was, and the
            default one is neither cached nor downloadable (offline).
        kvmm.errors.ImageReadError: an image cannot be read.
    """

    tokenizer_class = BiomedCLIPTokenizer

    def __init__(
        self,
        image_size: int | Sequence[int] = 224,
        sequence_length: int = 256,
        vocabulary: str | os.PathLike | None = None,
        vocabulary_repo: str = DEFAULT_VOCABULARY_REPO,
    ) -> None:
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 2:
            raise ValueError(f"sequence_length must be an int >= 2, got {sequence_length!r}.")
        self.sequence_length = sequence_length
        self.image_processor = BiomedCLIPImageProcessor(image_size)
        if vocabulary is not None:
            vocabulary = str(resolve_vocabulary_file(vocabulary))  # fail now, naming the path
        self.vocabulary = vocabulary
        self.vocabulary_repo = vocabulary_repo

    def _fetch_vocabulary(self) -> str:
        return fetch_vocabulary(self.vocabulary_repo)

    def __repr__(self) -> str:
        vocabulary = self.vocabulary or f"hf://{self.vocabulary_repo}/{VOCAB_FILENAME}"
        return (
            f"BiomedCLIPProcessor(image_size={self.image_size!r}, "
            f"sequence_length={self.sequence_length}, vocabulary={vocabulary!r})"
        )


def fetch_vocabulary(repo_id: str) -> str:
    """The local ``vocab.txt`` of ``repo_id`` (from the Hugging Face cache or the Hub), or,
    when the repository has none, of the tokenizer repository its
    ``open_clip_config.json`` names. ``tokenizer_config.json`` comes along when present."""
    from kvmm.errors import KvmmError, WeightsError
    from kvmm.models.biomedclip.convert import tokenizer_repo
    from kvmm.utils.hub import hub_file_if_exists

    path = hub_file_if_exists(repo_id, VOCAB_FILENAME)
    source = repo_id
    if path is None:
        config = hub_file_if_exists(repo_id, "open_clip_config.json")
        source = tokenizer_repo(json.loads(Path(config).read_text())) if config else None
        path = hub_file_if_exists(source, VOCAB_FILENAME) if source else None
        if path is None:
            raise WeightsError(
                f"{repo_id} has no {VOCAB_FILENAME} and names no tokenizer repository that "
                f"has one; pass vocabulary= (a vocab.txt file or folder)."
            )
    try:
        hub_file_if_exists(source, CONFIG_FILENAME)
    except KvmmError:  # optional: not cached while offline is fine
        pass
    return path
