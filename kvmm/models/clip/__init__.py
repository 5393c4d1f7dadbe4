"""CLIP (Radford et al., 2021): contrastive image-text encoders, OpenAI and LAION weights.

>>> import keras, kvmm
>>> model = kvmm.models.clip.ClipVitBase32(weights="openai_224")
>>> out = model({"images": images, "token_ids": token_ids})
>>> probs = keras.ops.softmax(out["image_logits"], axis=-1)   # softmax over the texts
"""

from kvmm.models.clip.image_processor import CLIPImageProcessor
from kvmm.models.clip.model import CLIPModel, CLIPTextEncoder, CLIPVisionEncoder
from kvmm.models.clip.presets import CLIP_VARIANTS, CLIP_WEIGHTS
from kvmm.models.clip.processor import CLIPProcessor
from kvmm.models.clip.tokenizer import CLIPTokenizer
from kvmm.models.clip.variants import CLIP, ClipVitBase16, ClipVitBase32, ClipVitLarge14

__all__ = [
    "CLIP",
    "CLIPImageProcessor",
    "CLIPModel",
    "CLIPProcessor",
    "CLIPTextEncoder",
    "CLIPTokenizer",
    "CLIPVisionEncoder",
    "CLIP_VARIANTS",
    "CLIP_WEIGHTS",
    "ClipVitBase16",
    "ClipVitBase32",
    "ClipVitLarge14",
]
