"""CLIPImageProcessor against transformers' CLIPImageProcessorPil."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from kvmm.models.clip.image_processor import CLIP_MEAN, CLIP_STD, CLIPImageProcessor, resized_size


def _cases(sample_images):
    chelsea, coffee = sample_images["chelsea"], sample_images["coffee"]
    return {
        "landscape": chelsea,  # 451 x 300: odd long side
        "landscape_wide": coffee,  # 600 x 400
        "portrait": chelsea.transpose(PIL.Image.Transpose.ROTATE_90),  # 300 x 451
        "portrait_odd": coffee.crop((13, 7, 346, 394)),  # 333 x 387
        "square": sample_images["astronaut"],
        "grayscale": sample_images["camera"],
        "big_square": sample_images["retina"],
        "small": coffee.resize((61, 100)),  # upsampled
        "thin": chelsea.crop((0, 0, 451, 37)),  # very wide
        "rgba": sample_images["rgba"],
    }


def reference(images, size):
    transformers = pytest.importorskip("transformers")
    processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    out = processor(images, return_tensors="np")["pixel_values"]
    return np.transpose(out, (0, 2, 3, 1))


@pytest.mark.parametrize("size", [224, 336])
def test_matches_transformers(sample_images, size):
    cases = _cases(sample_images)
    ours = CLIPImageProcessor(size)(list(cases.values()))
    expected = reference(list(cases.values()), size)
    assert ours.shape == (len(cases), size, size, 3) and ours.dtype == np.float32
    for index, name in enumerate(cases):
        diff = np.abs(ours[index] - expected[index]).max()
        assert diff <= 1e-6, f"{name}: max |diff| {diff}"


def test_bit_exact(sample_images):
    # Same operations in the same dtypes: the float32 values are identical.
    images = list(_cases(sample_images).values())
    np.testing.assert_array_equal(CLIPImageProcessor(224)(images), reference(images, 224))


def test_resized_size_truncates_like_transformers():
    transformers = pytest.importorskip("transformers")
    from transformers.image_transforms import get_resize_output_image_size

    for height, width in [(300, 451), (451, 300), (400, 600), (387, 333), (100, 61), (37, 451),
                          (224, 224), (1, 999), (225, 224), (7, 3)]:
        for size in (224, 336):
            image = np.zeros((3, height, width), np.uint8)
            expected = get_resize_output_image_size(
                image, size=size, default_to_square=False,
                input_data_format=transformers.image_utils.ChannelDimension.FIRST,
            )
            assert resized_size(height, width, size) == tuple(expected)


def test_paths_arrays_and_pil_agree(sample_images, tmp_path):
    path = tmp_path / "coffee.png"
    sample_images["coffee"].save(path)
    processor = CLIPImageProcessor(224)
    from_pil = processor(sample_images["coffee"])
    np.testing.assert_array_equal(processor(str(path)), from_pil)
    np.testing.assert_array_equal(processor(np.asarray(sample_images["coffee"])), from_pil)
    batch = np.stack([np.asarray(sample_images["coffee"])] * 2)
    assert processor(batch).shape == (2, 224, 224, 3)


def test_constants_and_values(sample_images):
    white = CLIPImageProcessor(224)(np.full((10, 20, 3), 255, np.uint8))
    expected = (1.0 - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    np.testing.assert_allclose(white[0, 0, 0], expected, rtol=1e-6)


def test_non_square_and_options(sample_images):
    processor = CLIPImageProcessor((224, 256))
    assert processor.shortest_edge == 256
    assert processor(sample_images["chelsea"]).shape == (1, 224, 256, 3)
    assert repr(processor) == "CLIPImageProcessor(image_size=(224, 256))"
    assert repr(CLIPImageProcessor(224, shortest_edge=256)).endswith("shortest_edge=256)")
    with pytest.raises(ValueError, match="shortest_edge"):
        CLIPImageProcessor(224, shortest_edge=200)
    with pytest.raises(ValueError, match="image_size"):
        CLIPImageProcessor(0)
    with pytest.raises(ValueError, match="image_size"):
        CLIPImageProcessor("big")


def test_bad_images():
    from kvmm.errors import ImageReadError

    with pytest.raises(ImageReadError, match="does not exist"):
        CLIPImageProcessor()("missing.png")
    with pytest.raises(ImageReadError, match=r"images\[1\]"):
        CLIPImageProcessor()([np.zeros((4, 4, 3), np.uint8), np.zeros((3, 4, 4, 2))])
