"""What the families' processors share: the call that turns text and images into a
model's input dict."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from kvmm.utils.images import ImageLike


def as_text_list(texts: Any) -> list[str]:
    """One text or a list of texts as a list, with a clear TypeError for anything else."""
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Iterable) or isinstance(texts, (bytes, bytearray)):
        raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}.")
    texts = list(texts)
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be a str or a list of str; the list holds a {bad[0]}.")
    return texts


class Processor:
    """Base of ``SigLIPProcessor``, ``CLIPProcessor``, ``BiomedCLIPProcessor``: subclasses
    set ``self.image_processor``, ``self.sequence_length``, ``self.vocabulary`` (a local
    path or None) and ``self.vocabulary_repo``, and name their tokenizer class and how a
    Hub vocabulary is fetched (:meth:`_fetch_vocabulary`)."""

    image_processor = None
    tokenizer_class: type | None = None
    _tokenizer = None

    @classmethod
    def for_model(cls, model: Any):
        """The processor that matches ``model``: its image size (``model.image_size``),
        text length (``model.max_text_length``) and vocabulary — the checkpoint's own,
        from the local folder the weights came from (``model.vocabulary_path``, preferred)
        or their Hub repository (``model.vocabulary_repo``, fetched on first use of text)."""
        return cls(**cls._arguments_for(model))

    @classmethod
    def _arguments_for(cls, model: Any) -> dict:
        arguments = dict(
            image_size=model.image_size,
            sequence_length=int(model.max_text_length),
            vocabulary=getattr(model, "vocabulary_path", None) or None,
        )
        repo = getattr(model, "vocabulary_repo", None)
        if repo:
            arguments["vocabulary_repo"] = repo
        return arguments

    @property
    def tokenizer(self):
        """The text tokenizer; the first access fetches the default vocabulary if needed
        (so image-only use needs no network)."""
        if self._tokenizer is None:
            path = self.vocabulary or self._fetch_vocabulary()
            self._tokenizer = self.tokenizer_class(path, sequence_length=self.sequence_length)
        return self._tokenizer

    def _fetch_vocabulary(self) -> str:
        """The local path of the default vocabulary (from ``self.vocabulary_repo``)."""
        raise NotImplementedError

    @property
    def image_size(self) -> int | tuple[int, int]:
        """Output image size: an int when square, else ``(height, width)``."""
        height, width = self.image_processor.image_size
        return height if height == width else (height, width)

    def _encode_text(self, text: str | Sequence[str]) -> dict[str, np.ndarray]:
        """The text part of the output dict: ``token_ids`` (also as ``input_ids``) and
        ``padding_mask``, from a tokenizer that returns both."""
        tokens = self.tokenizer(text)
        return {
            "token_ids": tokens["token_ids"],
            "input_ids": tokens["token_ids"],
            "padding_mask": tokens["padding_mask"],
        }

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        images: ImageLike | Sequence[ImageLike] | None = None,
        image_paths: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    ) -> dict[str, np.ndarray]:
        """Process ``text`` and/or images (``images`` or ``image_paths``, one or a list)."""
        if text is None and images is None and image_paths is None:
            raise ValueError("Give text, images or image_paths (none was given).")
        if images is not None and image_paths is not None:
            raise ValueError("Give images or image_paths, not both.")
        outputs: dict[str, np.ndarray] = {}
        if image_paths is not None:
            paths = [image_paths] if isinstance(image_paths, (str, os.PathLike)) else image_paths
            for index, path in enumerate(paths):
                if not isinstance(path, (str, os.PathLike)):
                    raise TypeError(
                        f"image_paths[{index}] is a {type(path).__name__}, not a path; "
                        f"pass images=... for PIL images and arrays."
                    )
            images = list(paths)
        if images is not None:
            outputs["images"] = self.image_processor(images)
        if text is not None:
            outputs.update(self._encode_text(text))
        return outputs
