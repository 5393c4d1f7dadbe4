"""Build reference checkpoints with transformers (random weights, real architecture) and
place them where kvmm's loader looks: a plain folder or a Hugging Face cache layout.

Nothing here reaches the network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

# Real configurations of the Google checkpoints (transformers defaults fill the rest).
BASE_224 = dict(vision_config=dict(image_size=224, patch_size=16), text_config=dict())
LARGE_256 = dict(
    vision_config=dict(
        image_size=256, patch_size=16, hidden_size=1024, intermediate_size=4096,
        num_hidden_layers=24, num_attention_heads=16,
    ),
    text_config=dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    ),
)
SO400M_224 = dict(
    vision_config=dict(
        image_size=224, patch_size=14, hidden_size=1152, intermediate_size=4304,
        num_hidden_layers=27, num_attention_heads=16,
    ),
    text_config=dict(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
        max_position_embeddings=16,
    ),
)
MULTILINGUAL_256 = dict(
    vision_config=dict(image_size=256, patch_size=16), text_config=dict(vocab_size=250000)
)
# A tiny SigLIP for fast tests (3 heads, odd sizes, 4x4 patch grid).
TINY = dict(
    vision_config=dict(
        image_size=32, patch_size=8, hidden_size=48, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=3,
    ),
    text_config=dict(
        vocab_size=120, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=3, max_position_embeddings=12,
    ),
)
TINY_VARIANT = dict(
    patch_size=8, vision_hidden_dim=48, vision_num_layers=2, vision_num_heads=3,
    vision_intermediate_dim=64, text_hidden_dim=48, text_num_layers=2, text_num_heads=3,
    text_intermediate_dim=64, image_size=32, vocabulary_size=120, max_text_length=12,
)


def build_reference(model_class, config, seed: int = 0, scale: float = 0.02):
    """A transformers model whose every tensor is drawn at random: weights and biases
    ~ N(0, scale), LayerNorm scales ~ 1 + N(0, scale), so a mix-up of any two tensors (or
    of LayerNorm scale and bias) shows in the outputs.

    transformers' own initialisation is skipped: it takes half a minute for Large/So400m
    and every value is overwritten anyway.
    """
    import torch
    from transformers.initialization import no_init_weights

    torch.manual_seed(seed)
    with no_init_weights():
        model = model_class(config).eval()
    with torch.no_grad():
        norms = {
            name
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.LayerNorm)
        }
        for name, param in model.named_parameters():
            module, _, kind = name.rpartition(".")
            param.normal_(0.0, scale)
            if module in norms and kind == "weight":
                param.add_(1.0)
    return model


def build_siglip(config: dict, seed: int = 0, scale: float = 0.02):
    """A randomly filled transformers ``SiglipModel`` (see :func:`build_reference`)."""
    from transformers import SiglipConfig, SiglipModel

    model = build_reference(SiglipModel, SiglipConfig(**config), seed, scale)
    model.logit_scale.data.fill_(float(np.log(10.0)) + 0.3)
    model.logit_bias.data.fill_(-2.5)
    return model


def build_clip(config: dict, seed: int = 0, scale: float = 0.02):
    """A randomly filled transformers ``CLIPModel`` (see :func:`build_reference`)."""
    from transformers import CLIPConfig, CLIPModel

    model = build_reference(CLIPModel, CLIPConfig(**config), seed, scale)
    model.logit_scale.data.fill_(2.9)
    return model


def save_checkpoint(model, folder: Path, vocabulary: str | None = None) -> Path:
    """``save_pretrained`` into ``folder`` (config.json + model.safetensors)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    if vocabulary is not None:
        (folder / "spiece.model").write_bytes(Path(vocabulary).read_bytes())
    return folder


def install_in_hf_cache(folder: Path, repo_id: str, hub_cache: Path) -> str:
    """Expose ``folder``'s files as ``repo_id`` in a Hugging Face cache rooted at
    ``hub_cache`` (``$HF_HOME/hub``), the layout ``huggingface_hub`` reads offline.
    Returns the fake commit hash."""
    revision = hashlib.sha1(f"{repo_id}:{folder}".encode()).hexdigest()
    repo_dir = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in Path(folder).iterdir():
        target = snapshot / file.name
        if not target.exists():
            os.symlink(file.resolve(), target)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return revision


CLIP_B32 = dict(vision_config=dict(image_size=224, patch_size=32), text_config=dict())
CLIP_TINY = dict(
    vision_config=dict(
        image_size=32, patch_size=8, hidden_size=48, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=3,
    ),
    text_config=dict(
        vocab_size=300, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=16, eos_token_id=299, bos_token_id=298,
        pad_token_id=299,
    ),
    projection_dim=20,
)
CLIP_TINY_VARIANT = dict(
    patch_size=8, vision_hidden_dim=48, vision_num_layers=2, vision_num_heads=3,
    vision_intermediate_dim=64, text_hidden_dim=24, text_num_layers=2, text_num_heads=2,
    text_intermediate_dim=40, projection_dim=20, image_size=32, vocabulary_size=300,
    max_text_length=16, eos_token_id=299,
)


def reference_outputs(model, images: np.ndarray, token_ids: np.ndarray, **kwargs) -> dict:
    """transformers outputs for channels-last ``images`` as NumPy arrays."""
    import torch

    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(token_ids, dtype=torch.long),
            pixel_values=torch.tensor(images).permute(0, 3, 1, 2),
            **kwargs,
        )
    return {
        "image_logits": out.logits_per_image.numpy(),
        "text_logits": out.logits_per_text.numpy(),
        "image_embeds": out.image_embeds.numpy(),
        "text_embeds": out.text_embeds.numpy(),
    }


def random_inputs(rng, image_size, num_images, num_texts, length, vocab):
    """Images in [-1, 1] (channels-last) and token ids ending in ``</s>`` (id 1) padding."""
    images = rng.uniform(-1, 1, (num_images, image_size, image_size, 3)).astype("float32")
    token_ids = rng.integers(2, vocab, (num_texts, length)).astype("int32")
    token_ids[:, -3:] = 1
    return images, token_ids
