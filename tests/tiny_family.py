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
