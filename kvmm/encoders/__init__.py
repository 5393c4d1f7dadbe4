"""Vision towers for hooking kvmm encoders to a language model (LLaVA style).

>>> from kvmm.encoders import create_encoder
>>> tower = create_encoder("google/siglip-base-patch16-224", vision_feature_layer=-2)
>>> features = tower(images)          # (batch, tokens, 768)
"""

from kvmm.encoders.factory import (
    ENCODER_FAMILIES,
    EncoderConfig,
    EncoderFamily,
    create_encoder,
    detect_encoder_type,
    register_encoder_family,
)
from kvmm.encoders.tower import STRATEGIES, VisionTower

__all__ = [
    "ENCODER_FAMILIES",
    "EncoderConfig",
    "EncoderFamily",
    "STRATEGIES",
    "VisionTower",
    "create_encoder",
    "detect_encoder_type",
    "register_encoder_family",
]
