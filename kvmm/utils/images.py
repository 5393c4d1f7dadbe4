"""Reading images from files, PIL images and arrays into RGB ``PIL.Image.Image``.

Every model family's image processor starts here, so that a path, a PIL image and an array
of the same picture give the same pixels.

RGB conversion follows transformers' PIL path (``image_transforms.convert_to_rgb`` used by
``PilBackend`` image processors):

* an image with an alpha band (``RGBA``, ``LA``, ``PA``, ...) or a ``transparency`` entry
  (palette or grayscale PNGs with ``tRNS``) is converted to ``RGBA`` and composited onto an
  opaque white background (``PIL.Image.alpha_composite``), then converted to ``RGB``;
* everything else is ``image.convert("RGB")``: grayscale ``L`` and ``1`` are replicated,
  palette ``P`` is looked up, ``CMYK`` / ``YCbCr`` use Pillow's conversions;
* a ``uint8`` array ``(H, W, 4)`` is composited onto white with rounding, which gives exactly
  what transformers' NumPy path gives (``round(a * rgb + (1 - a) * 255)``); ``(H, W, 1)``
  and ``(H, W)`` are replicated to three channels.

Where we deliberately differ (transformers' result there is not a usable picture):

* 16-bit images (PIL modes ``I;16*`` and ``I``, and ``uint16`` arrays) are scaled to 8 bits,
  ``round(v / 257)`` (so 65535 -> 255), instead of Pillow's ``convert("RGB")``, which clips
  every value above 255 to white. ``I`` (32-bit) images are read as 16-bit data (that is how
  older Pillow opened 16-bit PNGs) and clipped to 0..65535 first.
* ``bool`` arrays map to 0/255 (like a PIL ``1`` image), not 0/1.
* float arrays in [0, 1] become ``round(x * 255)`` (transformers truncates, and its image
  processors then rescale such images twice). Float arrays holding whole numbers in 0..255
  that are not all within [0, 1] are taken as 8-bit values, as transformers does; a float
  image whose values are all 0 or 1 is therefore read as [0, 1] data (white/black).
  ``F`` mode PIL images follow the same rule.
* transformers' ``load_image`` (used for paths and URLs) calls ``convert("RGB")``, which drops
  the alpha band without compositing; we composite for paths too, so that a file and the PIL
  image opened from it agree. Like transformers, the EXIF orientation of files is applied.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import PIL.Image
import PIL.ImageOps

from kvmm.errors import ImageReadError

#: What :func:`load_image` accepts.
ImageLike = Union[str, os.PathLike, PIL.Image.Image, np.ndarray]

_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


def load_image(image: ImageLike) -> PIL.Image.Image:
    """Return ``image`` as an RGB ``PIL.Image.Image``.

    Args:
        image: a path (``str`` / ``os.PathLike``) to an image file; a ``PIL.Image.Image`` of any
            mode; or a channels-last array ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
            ``(H, W, 4)`` of ``uint8``, ``uint16`` (16-bit), ``bool``, whole numbers in 0..255,
            or floats in [0, 1]. Anything with ``__array__`` (a torch / TF / JAX tensor on
            the CPU) is read as an array.

    Transparency is composited onto white; see the module docstring for every conversion.

    Raises:
        ImageReadError: the file is missing, unreadable, truncated or not an image; the array
            has the wrong shape, dtype or value range. The message names the file or shape.

    >>> load_image(np.zeros((32, 48), dtype=np.uint8)).size
    (48, 32)
    """
    if isinstance(image, (str, os.PathLike)):
        return _to_rgb(_open(os.fspath(image)))
    if isinstance(image, PIL.Image.Image):
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as exc:
            name = getattr(image, "filename", "") or "PIL image"
            raise ImageReadError(f"Cannot read {name!r}: {exc}") from exc
        return _to_rgb(image)
    if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        return _from_array(np.asarray(image))
    raise ImageReadError(
        f"Cannot read an image from a {type(image).__name__}: expected a file path, "
        f"a PIL.Image.Image or a (H, W[, C]) array."
    )


def load_images(images: ImageLike | Sequence[ImageLike]) -> list[PIL.Image.Image]:
    """Return a list of RGB PIL images from one image or a list / tuple of them.

    A 4-D array ``(N, H, W, C)`` is read as a batch of ``N`` images. Errors name the position
    of the bad item (``images[2]: ...``).
    """
    if isinstance(images, (list, tuple)):
        items: Sequence[Any] = images
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        items = list(images)
    else:
        return [load_image(images)]
    if not items:
        raise ImageReadError("No images given (an empty list).")
    out = []
    for index, item in enumerate(items):
        try:
            out.append(load_image(item))
        except ImageReadError as exc:
            raise ImageReadError(f"images[{index}]: {exc}") from exc
    return out


def _open(path: str) -> PIL.Image.Image:
    if not os.path.exists(path):
        raise ImageReadError(f"Image file {path!r} does not exist.")
    if os.path.isdir(path):
        raise ImageReadError(f"Image path {path!r} is a directory, not an image file.")
    try:
        with PIL.Image.open(path) as opened:
            opened.load()  # decode now: truncated or corrupt data fails here, not later
            image = PIL.ImageOps.exif_transpose(opened)
            if image is opened:
                image = opened.copy()
    except PIL.Image.DecompressionBombError as exc:
        raise ImageReadError(f"Image file {path!r} is too large to decode safely: {exc}") from exc
    except PIL.UnidentifiedImageError as exc:
        raise ImageReadError(f"Image file {path!r} is not an image format Pillow can read.") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"Cannot read image file {path!r} (corrupt or truncated?): {exc}") from exc
    return image


def _to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
        return _from_array(values)
    if image.mode == "F":
        return _from_array(np.asarray(image))
    try:
        if "A" in image.getbands() or image.info.get("transparency") is not None:
            rgba = image.convert("RGBA")
            white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return PIL.Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"Cannot convert a {image.mode!r} image to RGB: {exc}") from exc


def _from_array(array: np.ndarray) -> PIL.Image.Image:
    shape = tuple(array.shape)
    if array.ndim == 3 and shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and shape[-1] in (3, 4))):
        hint = ""
        if array.ndim == 3 and shape[0] in (1, 3, 4):
            hint = " It looks channels-first: transpose it with array.transpose(1, 2, 0)."
        elif array.ndim == 4:
            hint = " For a batch of images use load_images (or pass a list)."
        raise ImageReadError(
            f"Image array has shape {shape}; expected (H, W), (H, W, 1), (H, W, 3) or "
            f"(H, W, 4) (channels last).{hint}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"Image array of shape {shape} is empty.")
    pixels = PIL.Image.fromarray(np.ascontiguousarray(_to_uint8(array, shape)))
    return _to_rgb(pixels)


def _to_uint8(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    dtype = array.dtype
    if dtype.kind == "u" and dtype.itemsize == 1:
        return array.astype(np.uint8, copy=False)
    if dtype.kind == "b":
        return array.astype(np.uint8) * np.uint8(255)
    if dtype.kind == "u" and dtype.itemsize == 2:  # 16-bit data, either byte order
        return np.round(array.astype(np.float64) / 257.0).astype(np.uint8)
    if dtype.kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageReadError(
                f"Integer image array of shape {shape} and dtype {dtype} has values in "
                f"[{low}, {high}], outside 0..255; pass uint8, or uint16 for 16-bit data."
            )
        return array.astype(np.uint8)
    if dtype.kind == "f":
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageReadError(f"Float image array of shape {shape} contains NaN or inf.")
        low, high = float(values.min()), float(values.max())
        if low >= 0.0 and high <= 1.0:
            return np.round(values * 255.0).astype(np.uint8)
        if low >= 0.0 and high <= 255.0 and np.array_equal(values, np.round(values)):
            return values.astype(np.uint8)
        raise ImageReadError(
            f"Float image array of shape {shape} has values in [{low:g}, {high:g}]; expected "
            f"floats in [0, 1] (or whole numbers in 0..255)."
        )
    raise ImageReadError(f"Image array of shape {shape} has unsupported dtype {dtype}.")


def image_size_pair(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``S`` or ``(height, width)`` -> ``(height, width)``, validated (positive ints)."""
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        height = width = int(image_size)
    else:
        try:
            height, width = (int(v) for v in image_size)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(
                f"image_size must be an int or a (height, width) pair, got {image_size!r}."
            ) from None
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}.")
    return height, width
