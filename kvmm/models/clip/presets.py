"""CLIP variants (architectures) and their named pretrained weights."""

from __future__ import annotations

from kvmm.loading import NamedWeights

_B = dict(
    vision_hidden_dim=768, vision_num_layers=12, vision_num_heads=12, vision_intermediate_dim=3072,
    text_hidden_dim=512, text_num_layers=12, text_num_heads=8, text_intermediate_dim=2048,
    projection_dim=512,
)
_L = dict(
    vision_hidden_dim=1024, vision_num_layers=24, vision_num_heads=16, vision_intermediate_dim=4096,
    text_hidden_dim=768, text_num_layers=12, text_num_heads=12, text_intermediate_dim=3072,
    projection_dim=768,
)
_TEXT = dict(vocabulary_size=49408, max_text_length=77, image_size=224)

#: Architecture of each variant; ``image_size``, ``activation`` and the text settings are
#: defaults that a checkpoint may change (LAION's use exact GELU, OpenAI's quick GELU).
CLIP_VARIANTS: dict[str, dict] = {
    "ClipVitBase32": dict(_B, **_TEXT, patch_size=32),
    "ClipVitBase16": dict(_B, **_TEXT, patch_size=16),
    "ClipVitLarge14": dict(_L, **_TEXT, patch_size=14),
}

_LAION = {"activation": "gelu"}

#: Named weights of each variant and the Hugging Face checkpoint they convert from.
CLIP_WEIGHTS: dict[str, dict[str, NamedWeights]] = {
    "ClipVitBase32": {
        "openai_224": NamedWeights("openai/clip-vit-base-patch32", image_size=224),
        "laion2b_s34B_b79K_224": NamedWeights(
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", image_size=224, config=_LAION
        ),
    },
    "ClipVitBase16": {
        "openai_224": NamedWeights("openai/clip-vit-base-patch16", image_size=224),
    },
    "ClipVitLarge14": {
        "openai_224": NamedWeights("openai/clip-vit-large-patch14", image_size=224),
        "openai_336": NamedWeights("openai/clip-vit-large-patch14-336", image_size=336),
        "laion2b_s32B_b82K_224": NamedWeights(
            "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", image_size=224, config=_LAION
        ),
    },
}
