"""Projectors from vision features to a language model's width (LLaVA and friends).

>>> from kvmm.projectors import build_projector
>>> projector = build_projector({"mm_projector_type": "mlp2x_gelu", "hidden_size": 4096})
"""

from kvmm.projectors.factory import PROJECTOR_TYPES, build_projector, load_llava_projector
from kvmm.projectors.layers import (
    GatedProjector,
    IdentityProjector,
    MLPProjector,
    PerceiverProjector,
    QFormerProjector,
)

__all__ = [
    "GatedProjector",
    "IdentityProjector",
    "MLPProjector",
    "PROJECTOR_TYPES",
    "PerceiverProjector",
    "QFormerProjector",
    "build_projector",
    "load_llava_projector",
]
