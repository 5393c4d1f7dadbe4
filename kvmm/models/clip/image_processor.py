"""CLIP image preprocessing: shortest edge to S (bicubic), center crop S x S, CLIP mean/std.

It reproduces transformers' ``CLIPImageProcessorPil`` (the PIL backend of transformers 5,
which ``CLIPImageProcessor`` falls back to without torchvision), step by step and in the
same dtypes, so the float32 values are the same bit for bit:

1. Convert to RGB (see :mod:`kvmm.utils.images`).
2. Resize the **uint8** RGB image with Pillow, ``image.resize((new_w, new_h), BICUBIC)``
   (no ``reducing_gap``). The short side becomes ``S`` and the long side
   ``int(S * long / short)``: computed in floating point and **truncated**, not rounded
   (a 451 x 300 image at S = 224 becomes 336 x 224, since 224 * 451 / 300 = 336.75). A
   square image goes straight to S x S.
3. Center crop: ``top = (new_h - S) // 2``, ``left = (new_w - S) // 2`` (floor division,
   so an odd surplus leaves the extra pixel at the bottom / right).
4. Rescale in float64, ``uint8 * (1 / 255)``, then cast to float32.
5. Normalize in float32: ``(x - mean) / std`` with the mean and std cast to float32,
   ``mean = (0.48145466, 0.4578275, 0.40821073)``,
   ``std = (0.26862954, 0.26130258, 0.27577711)`` (OpenAI's CLIP values).

The only change is the layout: channels-last ``(N, S, S, 3)``, which is what the Keras
models take (transformers returns ``(N, 3, S, S)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import PIL.Image

from kvmm.utils.images import ImageLike, image_size_pair, load_images

#: OpenAI CLIP's normalization constants (transformers' ``OPENAI_CLIP_MEAN`` / ``_STD``).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_RESCALE = 1 / 255


def resized_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """``(new_height, new_width)`` after resizing the shortest edge to ``shortest_edge``,
    exactly as transformers computes it (long side truncated, ties go to the width).

    >>> resized_size(300, 451, 224)
    (224, 336)
    >>> resized_size(451, 300, 224)
    (336, 224)
    """
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


class CLIPImageProcessor:
    """Turn images into CLIP pixel inputs ``float32 (N, H, W, 3)``.

    Args:
        image_size: output (crop) size, an int ``S`` for ``(S, S)`` or a ``(height, width)``
            pair. It should be the model's ``image_size`` (224, or 336 for
            ``openai/clip-vit-large-patch14-336``).
        mean, std: per-channel normalization (OpenAI CLIP's by default).
        shortest_edge: the size the shortest edge is resized to before cropping. Defaults to
            the larger of the two output sides (``S`` for a square output), which is what
            every CLIP checkpoint uses.

    Each image's shortest edge is resized to ``shortest_edge`` with Pillow's bicubic filter
    (aspect ratio kept), the center is cropped, and the pixels are mapped to
    ``(x / 255 - mean) / std`` with OpenAI CLIP's mean and std.

    >>> processor = CLIPImageProcessor(224)
    >>> processor(np.zeros((300, 500, 3), dtype=np.uint8)).shape
    (1, 224, 224, 3)

    Images may be paths, PIL images or arrays, one or a list; see
    :func:`kvmm.utils.images.load_image` for what is accepted. Unreadable images raise
    :class:`kvmm.errors.ImageReadError`.
    """

    def __init__(
        self,
        image_size: int | Sequence[int] = 224,
        shortest_edge: int | None = None,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ) -> None:
        self.image_size = image_size_pair(image_size)
        if shortest_edge is None:
            shortest_edge = max(self.image_size)
        if (
            not isinstance(shortest_edge, (int, np.integer))
            or isinstance(shortest_edge, bool)
            or shortest_edge < max(self.image_size)
        ):
            raise ValueError(
                f"shortest_edge must be an int >= the crop size {max(self.image_size)}, "
                f"got {shortest_edge!r}."
            )
        self.shortest_edge = int(shortest_edge)
        self.mean, self.std = tuple(mean), tuple(std)
        self._mean = np.asarray(mean, dtype=np.float32)
        self._std = np.asarray(std, dtype=np.float32)

    def preprocess(self, image: PIL.Image.Image) -> np.ndarray:
        """One RGB PIL image -> ``float32 (H, W, 3)``."""
        crop_height, crop_width = self.image_size
        new_height, new_width = resized_size(image.height, image.width, self.shortest_edge)
        resized = image.resize((new_width, new_height), resample=PIL.Image.Resampling.BICUBIC)
        pixels = np.asarray(resized, dtype=np.uint8)
        top, left = self._crop_offsets(new_height - crop_height, new_width - crop_width)
        pixels = pixels[top : top + crop_height, left : left + crop_width]
        return (self._rescale(pixels) - self._mean) / self._std

    def _crop_offsets(self, extra_height: int, extra_width: int) -> tuple[int, int]:
        """Top and left of the center crop (transformers: floor division)."""
        return extra_height // 2, extra_width // 2

    def _rescale(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 -> float32 in [0, 1] (transformers: ``float64 * (1/255)``, then float32)."""
        return (pixels.astype(np.float64) * _RESCALE).astype(np.float32)

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        """Process one image or a list of images into ``float32 (N, H, W, 3)``."""
        return np.stack([self.preprocess(image) for image in load_images(images)])

    def __repr__(self) -> str:
        height, width = self.image_size
        size = height if height == width else (height, width)
        extra = "" if self.shortest_edge == max(self.image_size) else (
            f", shortest_edge={self.shortest_edge}"
        )
        return f"{type(self).__name__}(image_size={size!r}{extra})"
