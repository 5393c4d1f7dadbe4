"""SigLIPImageProcessor against transformers' SiglipImageProcessorPil, and image reading.

Tolerance: 1e-6 absolute. Both sides resize the same uint8 image with Pillow and do the
rescale / normalize in the same dtypes, so the outputs are in fact bit-identical.
"""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest

from kvmm.errors import ImageReadError
from kvmm.models.siglip.image_processor import SigLIPImageProcessor
from kvmm.utils.images import load_image, load_images

ATOL = 1e-6
SIZES = [224, 384, (200, 320)]
PHOTOS = ["chelsea", "coffee", "astronaut", "camera", "retina", "rgba", "palette"]


def _hw(size):
    return (size, size) if isinstance(size, int) else size


@pytest.fixture(scope="module")
def reference_factory():
    transformers = pytest.importorskip("transformers")

    def make(size):
        height, width = _hw(size)
        reference = transformers.SiglipImageProcessorPil(size={"height": height, "width": width})

        def run(images):  # channels-first -> channels-last
            pixels = reference(images, return_tensors="np")["pixel_values"]
            return np.asarray(pixels).transpose(0, 2, 3, 1)

        return run

    return make


@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("name", PHOTOS)
def test_matches_transformers(sample_images, reference_factory, name, size):
    image = sample_images[name]
    ours = SigLIPImageProcessor(size)(image)
    expected = reference_factory(size)(image)
    assert ours.shape == (1, *_hw(size), 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)
    assert ours.min() >= -1.0 and ours.max() <= 1.0


@pytest.mark.parametrize("size", [224, 384])
def test_batch_of_mixed_sizes_matches_transformers(sample_images, reference_factory, size):
    images = [sample_images[name] for name in PHOTOS]
    ours = SigLIPImageProcessor(size)(images)
    assert ours.shape == (len(images), size, size, 3)
    np.testing.assert_allclose(ours, reference_factory(size)(images), rtol=0, atol=ATOL)


def test_arrays_match_transformers(sample_images, reference_factory):
    """transformers' NumPy path: RGB, (H, W, 1) gray and RGBA (composited with rounding)."""
    run = reference_factory(224)
    processor = SigLIPImageProcessor(224)
    for name in ("chelsea", "camera", "rgba"):
        array = np.asarray(sample_images[name])
        array = array[..., None] if array.ndim == 2 else array
        np.testing.assert_allclose(processor(array), run(array), rtol=0, atol=ATOL)


def test_sixteen_bit_is_scaled_not_clipped(sample_images, reference_factory):
    """Deliberate difference: Pillow clips 16-bit values to 255 (a white image); we scale by
    1/257, so camera * 257 gives what transformers gives for the 8-bit camera."""
    processor = SigLIPImageProcessor(224)
    expected = reference_factory(224)(sample_images["camera"])
    gray16 = sample_images["gray16"]
    np.testing.assert_allclose(processor(gray16), expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(processor(np.asarray(gray16)), expected, rtol=0, atol=ATOL)
    as_int32 = PIL.Image.fromarray(np.asarray(gray16).astype(np.int32))  # mode "I"
    assert as_int32.mode == "I"
    np.testing.assert_allclose(processor(as_int32), expected, rtol=0, atol=ATOL)


def test_paths_pil_and_arrays_agree(sample_images, reference_factory, tmp_path):
    processor = SigLIPImageProcessor(224)
    run = reference_factory(224)
    for name in ("chelsea", "camera", "palette"):
        image = sample_images[name]
        path = tmp_path / f"{name}.png"
        image.save(path)
        from_path = processor(path)
        np.testing.assert_array_equal(from_path, processor(str(path)))
        np.testing.assert_array_equal(from_path, processor(image))
        np.testing.assert_allclose(from_path, run(str(path)), rtol=0, atol=ATOL)
    rgba = sample_images["rgba"]
    rgba.save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(processor(tmp_path / "rgba.png"), processor(rgba))
    np.testing.assert_array_equal(processor(np.asarray(rgba)), processor(rgba))


def test_array_dtypes_agree(sample_images):
    processor = SigLIPImageProcessor(224)
    chelsea = np.asarray(sample_images["chelsea"])
    expected = processor(chelsea)
    for variant in (
        chelsea.astype(np.float32) / 255.0,
        chelsea.astype(np.float64) / 255.0,
        chelsea.astype(np.float32),  # whole numbers in 0..255
        chelsea.astype(np.int64),
        chelsea.astype(np.uint16) * np.uint16(257),
    ):
        np.testing.assert_array_equal(processor(variant), expected, err_msg=str(variant.dtype))
    camera = np.asarray(sample_images["camera"])
    np.testing.assert_array_equal(processor(camera), processor(camera[..., None]))
    np.testing.assert_array_equal(processor(camera), processor(sample_images["camera"]))
    mask = camera > 128
    np.testing.assert_array_equal(processor(mask), processor(mask.astype(np.uint8) * 255))


def test_float_arrays_are_rounded_to_8_bits():
    """Documented choice: floats in [0, 1] become round(x * 255) (transformers truncates)."""
    values = np.array([[0.4, 0.6, 254.6, 254.4, 255.0]]) / 255.0
    pixels = np.asarray(load_image(values))
    np.testing.assert_array_equal(pixels[0, :, 0], [0, 1, 255, 254, 255])
    assert (pixels == pixels[..., :1]).all()


def test_exif_orientation_is_applied_like_transformers(sample_images, reference_factory, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    sample_images["chelsea"].save(path, exif=exif)
    ours = SigLIPImageProcessor((200, 320))(path)
    np.testing.assert_allclose(ours, reference_factory((200, 320))(str(path)), rtol=0, atol=ATOL)
    assert load_image(path).size == (300, 451)


def test_load_image_modes(sample_images):
    for name, image in sample_images.items():
        rgb = load_image(image)
        assert rgb.mode == "RGB" and rgb.size == image.size, name
    cmyk = sample_images["astronaut"].convert("CMYK")
    np.testing.assert_array_equal(np.asarray(load_image(cmyk)), np.asarray(cmyk.convert("RGB")))
    assert len(load_images(np.zeros((3, 8, 9, 3), np.uint8))) == 3
    assert len(load_images([sample_images["chelsea"], sample_images["camera"]])) == 2


def _jpeg_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def test_unreadable_files_raise_image_read_error(sample_images, tmp_path):
    processor = SigLIPImageProcessor(224)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(_jpeg_bytes(sample_images["chelsea"])[:3000])
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    cases = {
        truncated: "truncated.jpg",
        text: "notes.jpg",
        tmp_path / "missing.png": "missing.png.*does not exist",
        tmp_path: "directory",
    }
    for path, message in cases.items():
        with pytest.raises(ImageReadError, match=message):
            processor(path)
    with pytest.raises(ImageReadError, match=r"images\[1\].*missing.png"):
        processor([sample_images["chelsea"], tmp_path / "missing.png"])


@pytest.mark.parametrize(
    "shape, dtype, message",
    [
        ((5,), np.uint8, r"\(5,\)"),
        ((3, 32, 32), np.uint8, r"\(3, 32, 32\).*channels-first"),
        ((32, 32, 2), np.uint8, r"\(32, 32, 2\)"),
        ((2, 32, 32, 3), np.uint8, r"\(2, 32, 32, 3\).*load_images"),
        ((0, 10, 3), np.uint8, "empty"),
        ((8, 8, 3), np.complex64, "dtype"),
    ],
)
def test_wrong_arrays_raise_image_read_error(shape, dtype, message):
    with pytest.raises(ImageReadError, match=message):
        load_image(np.zeros(shape, dtype=dtype))


def test_out_of_range_arrays_raise_image_read_error():
    with pytest.raises(ImageReadError, match=r"\[0, 1\]"):
        load_image(np.full((4, 4, 3), 1.5, dtype=np.float32))
    with pytest.raises(ImageReadError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan, dtype=np.float32))
    with pytest.raises(ImageReadError, match="uint16"):
        load_image(np.full((4, 4, 3), 300, dtype=np.int32))
    with pytest.raises(ImageReadError, match="dict"):
        load_image({"not": "an image"})
    with pytest.raises(ImageReadError, match="empty"):
        load_images([])


def test_bad_image_size():
    with pytest.raises(ValueError, match="image_size"):
        SigLIPImageProcessor(0)
    with pytest.raises(ValueError, match="image_size"):
        SigLIPImageProcessor("big")
    assert repr(SigLIPImageProcessor((224, 224))) == "SigLIPImageProcessor(image_size=224)"
    assert repr(SigLIPImageProcessor((200, 320))) == "SigLIPImageProcessor(image_size=(200, 320))"
