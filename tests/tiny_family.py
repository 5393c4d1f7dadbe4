"""A tiny SigLIP variant registered in a copy of the SigLIP family, so fast tests go
through exactly the loader code path of the real variants."""

from __future__ import annotations

import dataclasses

import hf_checkpoints as hfc
from kvmm.loading import NamedWeights, create_model
from kvmm.models.biomedclip import BIOMEDCLIP
from kvmm.models.clip import CLIP
from kvmm.models.siglip import SIGLIP

TINY_REPO = "kvmm-tests/siglip-tiny-patch8-32"
TINY_FAMILY = dataclasses.replace(
    SIGLIP,
    variants={**SIGLIP.variants, "SigLIPTiny": hfc.TINY_VARIANT},
    weights={**SIGLIP.weights, "SigLIPTiny": {"test_32": NamedWeights(TINY_REPO, image_size=32)}},
)


def build_tiny(weights=None, **kwargs):
    return create_model(TINY_FAMILY, "SigLIPTiny", weights=weights, **kwargs)


CLIP_TINY_FAMILY = dataclasses.replace(
    CLIP, variants={**CLIP.variants, "ClipTiny": hfc.CLIP_TINY_VARIANT}
)


def build_clip_tiny(weights=None, **kwargs):
    return create_model(CLIP_TINY_FAMILY, "ClipTiny", weights=weights, **kwargs)


BIOMEDCLIP_TINY_REPO = "kvmm-tests/biomedclip-tiny-patch8-32"
BIOMEDCLIP_TINY_FAMILY = dataclasses.replace(
    BIOMEDCLIP,
    variants={**BIOMEDCLIP.variants, "BiomedClipTiny": hfc.BIOMEDCLIP_TINY_VARIANT},
    weights={
        **BIOMEDCLIP.weights,
        "BiomedClipTiny": {"test_32": NamedWeights(BIOMEDCLIP_TINY_REPO, image_size=32)},
    },
)


def build_biomedclip_tiny(weights=None, **kwargs):
    return create_model(BIOMEDCLIP_TINY_FAMILY, "BiomedClipTiny", weights=weights, **kwargs)


def assert_same_model(a, b, outputs):
    """``a`` and ``b`` hold bit-identical weights, and ``outputs(model)`` agrees to within
    float32 rounding. Not bit for bit: on PyTorch a kernel converted from an ``(out, in)``
    checkpoint tensor keeps that memory layout (a transposed view), one loaded from a
    ``.weights.h5``/``.keras`` file or kvmm's cache is ``(in, out)`` contiguous, and BLAS
    sums the two layouts in different orders. Logits are the cosine times
    ``exp(logit_scale)`` (about 13 in the tiny checkpoints), so a rounding difference of
    1e-7 in the embeddings shows as about 1.4e-6 in logits near -2.7 (seen on an AMD EPYC
    CPU): the bound is relative (2e-6) on top of 1e-6 absolute."""
    import keras
    import numpy as np

    assert [v.path for v in a.weights] == [v.path for v in b.weights]
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(x),
                                      keras.ops.convert_to_numpy(y), err_msg=x.path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs(a)),
                               keras.ops.convert_to_numpy(outputs(b)), rtol=2e-6, atol=1e-6)
