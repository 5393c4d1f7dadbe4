"""SigLIP image preprocessing: resize straight to (S, S), bicubic, then scale to [-1, 1].

It reproduces transformers' ``SiglipImageProcessorPil`` (the PIL backend), whose steps are:
convert to RGB (see :mod:`kvmm.utils.images`); resize the **uint8** RGB image with Pillow,
``image.resize((width, height), PIL.Image.BICUBIC)`` (no ``reducing_gap``, no crop, aspect
ratio not kept); rescale in float64, ``uint8 * (1 / 255)``, then cast to float32; normalize
in float32, ``(x - 0.5) / 0.5``. Doing the same operations in the same dtypes gives the same
float32 values bit for bit. The only change is the layout: channels-last ``(N, H, W, 3)``,
which is what the Keras models take (transformers returns ``(N, 3, H, W)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import PIL.Image

from kvmm.utils.images import ImageLike, image_size_pair, load_images

_RESCALE = 1 / 255
_MEAN = np.float32(0.5)
_STD = np.float32(0.5)


class SigLIPImageProcessor:
    """Turn images into SigLIP pixel inputs ``float32 (N, H, W, 3)`` in [-1, 1].

    Args:
        image_size: output size, an int ``S`` for ``(S, S)`` or a ``(height, width)`` pair.
            It should be the model's ``image_size`` (224, 256, 384 or 512 for the Google
            checkpoints).

    Each image is resized straight to the output size (no crop, aspect ratio not kept) with
    Pillow's bicubic filter, then mapped to ``x / 255 * 2 - 1``.

    >>> processor = SigLIPImageProcessor(224)
    >>> processor(np.zeros((300, 500, 3), dtype=np.uint8)).shape
    (1, 224, 224, 3)

    Images may be paths, PIL images or arrays, one or a list; see
    :func:`kvmm.utils.images.load_image` for what is accepted. Unreadable images raise
    :class:`kvmm.errors.ImageReadError`.
    """

    def __init__(self, image_size: int | Sequence[int] = 224) -> None:
        self.image_size = image_size_pair(image_size)

    def preprocess(self, image: PIL.Image.Image) -> np.ndarray:
        """One RGB PIL image -> ``float32 (H, W, 3)``."""
        height, width = self.image_size
        resized = image.resize((width, height), resample=PIL.Image.Resampling.BICUBIC)
        pixels = (np.asarray(resized, dtype=np.uint8).astype(np.float64) * _RESCALE)
        return (pixels.astype(np.float32) - _MEAN) / _STD

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        """Process one image or a list of images into ``float32 (N, H, W, 3)``."""
        return np.stack([self.preprocess(image) for image in load_images(images)])

    def __repr__(self) -> str:
        height, width = self.image_size
        size = height if height == width else (height, width)
        return f"SigLIPImageProcessor(image_size={size!r})"
