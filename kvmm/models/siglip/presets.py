"""SigLIP variants (architectures) and their named pretrained weights."""

from __future__ import annotations

from kvmm.loading import NamedWeights

_BASE = dict(
    patch_size=16,
    vision_hidden_dim=768,
    vision_num_layers=12,
    vision_num_heads=12,
    vision_intermediate_dim=3072,
    text_hidden_dim=768,
    text_num_layers=12,
    text_num_heads=12,
    text_intermediate_dim=3072,
)
_LARGE = dict(
    patch_size=16,
    vision_hidden_dim=1024,
    vision_num_layers=24,
    vision_num_heads=16,
    vision_intermediate_dim=4096,
    text_hidden_dim=1024,
    text_num_layers=24,
    text_num_heads=16,
    text_intermediate_dim=4096,
)
_SO400M = dict(
    patch_size=14,
    vision_hidden_dim=1152,
    vision_num_layers=27,
    vision_num_heads=16,
    vision_intermediate_dim=4304,
    text_hidden_dim=1152,
    text_num_layers=27,
    text_num_heads=16,
    text_intermediate_dim=4304,
)

#: The demo model the repository trains and ships (examples/train_demo_model.py): the SigLIP
#: architecture scaled down for 64 px synthetic shapes and a 128-row vocabulary.
_DEMO = dict(
    patch_size=8,
    vision_hidden_dim=64,
    vision_num_layers=3,
    vision_num_heads=4,
    vision_intermediate_dim=256,
    text_hidden_dim=64,
    text_num_layers=2,
    text_num_heads=4,
    text_intermediate_dim=256,
)

#: Architecture of each variant. ``image_size``, ``vocabulary_size`` and
#: ``max_text_length`` are defaults that a checkpoint may change.
SIGLIP_VARIANTS: dict[str, dict] = {
    "SigLIPBaseP16": dict(_BASE, image_size=224, vocabulary_size=32000, max_text_length=64),
    "SigLIPLargeP16": dict(_LARGE, image_size=256, vocabulary_size=32000, max_text_length=64),
    "SigLIPSo400mP14": dict(_SO400M, image_size=224, vocabulary_size=32000, max_text_length=16),
    "SigLIPDemo": dict(_DEMO, image_size=64, vocabulary_size=128, max_text_length=16),
}

#: Named weights of each variant and the Hugging Face checkpoint they convert from.
SIGLIP_WEIGHTS: dict[str, dict[str, NamedWeights]] = {
    "SigLIPBaseP16": {
        f"google_{size}": NamedWeights(f"google/siglip-base-patch16-{size}", image_size=size)
        for size in (224, 256, 384, 512)
    }
    | {
        "google_multilingual_256": NamedWeights(
            "google/siglip-base-patch16-256-multilingual",
            image_size=256,
            vocabulary_size=250000,
            multilingual=True,
        )
    },
    "SigLIPLargeP16": {
        f"google_{size}": NamedWeights(f"google/siglip-large-patch16-{size}", image_size=size)
        for size in (256, 384)
    },
    "SigLIPSo400mP14": {
        "google_224": NamedWeights(
            "google/siglip-so400m-patch14-224", image_size=224, max_text_length=16
        ),
        "google_384": NamedWeights(
            "google/siglip-so400m-patch14-384", image_size=384, max_text_length=64
        ),
    },
    # Trained by examples/train_demo_model.py and shipped in weights/ (nothing is fetched;
    # the repo id is only a label).
    "SigLIPDemo": {
        "shapes": NamedWeights(
            "kvmm/siglip-demo-shapes",
            image_size=64,
            vocabulary_size=128,
            max_text_length=16,
            local="siglip_demo_shapes/siglip_demo_shapes.weights.h5",
        ),
    },
}
