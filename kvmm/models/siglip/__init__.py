"""SigLIP (Zhai et al., 2023): sigmoid-loss image-text encoders.

>>> import keras, kvmm
>>> model = kvmm.models.siglip.SigLIPBaseP16(weights="google_224")
>>> processor = kvmm.models.siglip.SigLIPProcessor.for_model(model)
>>> out = model(processor(text=["a cat", "a dog"], image_paths=["cat.jpg"]))
>>> probs = keras.ops.sigmoid(out["image_logits"])   # sigmoid, never softmax
"""

from kvmm.models.siglip.image_processor import SigLIPImageProcessor
from kvmm.models.dual_encoder import l2_normalize
from kvmm.models.siglip.model import SigLIPModel, SigLIPTextEncoder, SigLIPVisionEncoder
from kvmm.models.siglip.presets import SIGLIP_VARIANTS, SIGLIP_WEIGHTS
from kvmm.models.siglip.processor import SigLIPProcessor
from kvmm.models.siglip.tokenizer import SigLIPTokenizer
from kvmm.models.siglip.variants import (
    SIGLIP,
    SigLIPBaseP16,
    SigLIPDemo,
    SigLIPLargeP16,
    SigLIPSo400mP14,
)

__all__ = [
    "SIGLIP",
    "SIGLIP_VARIANTS",
    "SIGLIP_WEIGHTS",
    "SigLIPImageProcessor",
    "SigLIPProcessor",
    "SigLIPTokenizer",
    "SigLIPBaseP16",
    "SigLIPDemo",
    "SigLIPLargeP16",
    "SigLIPModel",
    "SigLIPSo400mP14",
    "SigLIPTextEncoder",
    "SigLIPVisionEncoder",
    "l2_normalize",
]

