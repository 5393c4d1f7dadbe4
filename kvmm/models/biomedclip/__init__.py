"""BiomedCLIP (Zhang et al., 2023): Microsoft's biomedical image-text encoder, a timm
ViT-B/16 and PubMedBERT trained on PMC-15M, converted from its open_clip checkpoint.

>>> import keras, kvmm
>>> model = kvmm.models.biomedclip.BiomedClipVitBase16(weights="microsoft_224")
>>> processor = kvmm.models.biomedclip.BiomedCLIPProcessor.for_model(model)
>>> probs = keras.ops.softmax(model(processor(text=labels, images=images))["image_logits"], axis=-1)
"""

from kvmm.models.biomedclip.image_processor import BiomedCLIPImageProcessor
from kvmm.models.biomedclip.model import BiomedCLIPModel, BiomedCLIPTextEncoder
from kvmm.models.biomedclip.presets import BIOMEDCLIP_VARIANTS, BIOMEDCLIP_WEIGHTS
from kvmm.models.biomedclip.processor import BiomedCLIPProcessor
from kvmm.models.biomedclip.tokenizer import BiomedCLIPTokenizer
from kvmm.models.biomedclip.variants import BIOMEDCLIP, BiomedClipVitBase16

__all__ = [
    "BIOMEDCLIP",
    "BIOMEDCLIP_VARIANTS",
    "BIOMEDCLIP_WEIGHTS",
    "BiomedCLIPImageProcessor",
    "BiomedCLIPModel",
    "BiomedCLIPProcessor",
    "BiomedCLIPTextEncoder",
    "BiomedCLIPTokenizer",
    "BiomedClipVitBase16",
]
