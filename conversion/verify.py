"""Numerical verification of a converted kvmm model against transformers."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from kvmm.loading import resolve_weights


def _reference_source(family, variant, weights) -> str:
    """What ``from_pretrained`` should load for the same ``weights=`` argument."""
    source = resolve_weights(family, variant, weights)
    if source.kind == "folder":
        return str(Path(source.path))
    if source.kind in ("named", "hub"):
        return source.repo_id
    raise ValueError(f"Cannot verify {weights!r}: transformers cannot read {source.kind} files.")


#: transformers class that each kvmm family is checked against.
REFERENCE_CLASSES = {"SigLIP": "SiglipModel", "CLIP": "CLIPModel"}


def verify(model, weights, family, num_images=2, num_texts=3, seed=0) -> dict:
    """Run random inputs through ``model`` and the transformers model loaded from the same
    checkpoint; return max abs differences of embeddings and logits."""
    import torch
    import transformers

    reference_class = getattr(transformers, REFERENCE_CLASSES[family.name])
    source = _reference_source(family, model.variant, weights)
    reference = reference_class.from_pretrained(source).eval()
    height, width = model.vision_model.image_size
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (num_images, height, width, 3)).astype("float32")
    token_ids = rng.integers(0, model.vocabulary_size, (num_texts, model.max_text_length))
    token_ids = token_ids.astype("int32")
    reference_size = reference.config.vision_config.image_size
    with torch.no_grad():
        ref = reference(
            input_ids=torch.tensor(token_ids, dtype=torch.long),
            pixel_values=torch.tensor(images).permute(0, 3, 1, 2),
            interpolate_pos_encoding=(height, width) != (reference_size, reference_size),
        )
    ours = model({"images": images, "token_ids": token_ids})
    return {
        "image_embeds": float(np.abs(model.encode_images(images) - ref.image_embeds.numpy()).max()),
        "text_embeds": float(np.abs(model.encode_texts(token_ids) - ref.text_embeds.numpy()).max()),
        "image_logits": float(
            np.abs(keras.ops.convert_to_numpy(ours["image_logits"]) - ref.logits_per_image.numpy()).max()
        ),
    }
