"""BiomedCLIP variant (architecture) and its named pretrained weights."""

from __future__ import annotations

from kvmm.loading import NamedWeights

#: Architecture of the variant: timm ViT-B/16 image tower + PubMedBERT-base text tower,
#: 512-d embeddings. ``image_size`` and ``max_text_length`` (open_clip's context length)
#: are defaults that a checkpoint's ``open_clip_config.json`` may change.
BIOMEDCLIP_VARIANTS: dict[str, dict] = {
    "BiomedClipVitBase16": dict(
        patch_size=16,
        vision_hidden_dim=768,
        vision_num_layers=12,
        vision_num_heads=12,
        vision_intermediate_dim=3072,
        text_hidden_dim=768,
        text_num_layers=12,
        text_num_heads=12,
        text_intermediate_dim=3072,
        projection_dim=512,
        image_size=224,
        vocabulary_size=30522,
        max_text_length=256,
    ),
}

#: Named weights and the Hugging Face (open_clip format) checkpoint they convert from.
BIOMEDCLIP_WEIGHTS: dict[str, dict[str, NamedWeights]] = {
    "BiomedClipVitBase16": {
        "microsoft_224": NamedWeights(
            "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
            image_size=224,
            max_text_length=256,
        ),
    },
}
