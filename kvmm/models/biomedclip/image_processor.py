"""BiomedCLIP image preprocessing: open_clip's evaluation transform.

open_clip (``image_transform(224, is_train=False)`` with the checkpoint's
``preprocess_cfg``) runs torchvision's ``Resize(224, BICUBIC)`` (shortest edge to S, the
long side truncated, as :func:`kvmm.models.clip.image_processor.resized_size`),
``CenterCrop(224)``, ``convert("RGB")``, ``ToTensor()`` and ``Normalize(mean, std)``.
This reproduces it on the same Pillow resize, so the float32 values are equal bit for bit.
It differs from CLIP's (transformers') preprocessing in two details:

* the crop offsets are **rounded** (torchvision: ``int(round((H - S) / 2))``, Python's
  round-half-to-even) instead of floored;
* ``ToTensor`` divides in float32 (``uint8 / 255``), transformers multiplies in float64.

Images with transparency are composited onto white first, as in every kvmm family
(open_clip drops the alpha band); everything else is converted as
:mod:`kvmm.utils.images` describes. The output is channels-last ``(N, S, S, 3)``.
"""

from __future__ import annotations

import numpy as np

from kvmm.models.clip.image_processor import CLIPImageProcessor


class BiomedCLIPImageProcessor(CLIPImageProcessor):
    """Turn images into BiomedCLIP pixel inputs ``float32 (N, H, W, 3)``.

    Args:
        image_size: output size (224 for BiomedCLIP), an int or ``(height, width)``.
        shortest_edge: the size the shortest edge is resized to (default: the crop size).
        mean, std: per-channel normalization; BiomedCLIP's ``preprocess_cfg`` uses
            OpenAI CLIP's values (the defaults).

    >>> BiomedCLIPImageProcessor(224)(np.zeros((300, 451, 3), dtype=np.uint8)).shape
    (1, 224, 224, 3)
    """

    def _crop_offsets(self, extra_height: int, extra_width: int) -> tuple[int, int]:
        return int(round(extra_height / 2.0)), int(round(extra_width / 2.0))

    def _rescale(self, pixels: np.ndarray) -> np.ndarray:
        return pixels.astype(np.float32) / np.float32(255)
