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
    """Base of ``SigLIPProcessor``, ``CLIPProcessor``, ...: subclasses set
    ``self.image_processor`` and implement :meth:`_encode_text`."""

    image_processor = None

    @property
    def image_size(self) -> int | tuple[int, int]:
        """Output image size: an int when square, else ``(height, width)``."""
        height, width = self.image_processor.image_size
        return height if height == width else (height, width)

    def _encode_text(self, text: str | Sequence[str]) -> dict[str, np.ndarray]:
        """The text part of the output dict (``token_ids``, ``input_ids``, ...)."""
        raise NotImplementedError

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
