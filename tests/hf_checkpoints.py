"""Build reference checkpoints with transformers (random weights, real architecture) and
place them where kvmm's loader looks: a plain folder or a Hugging Face cache layout.

Nothing here reaches the network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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


def install_in_hf_cache(folder: Path, repo_id: str, hub_cache: Path, blobs: bool = False) -> str:
    """Expose ``folder``'s files as ``repo_id`` in a Hugging Face cache rooted at
    ``hub_cache`` (``$HF_HOME/hub``), the layout ``huggingface_hub`` reads offline.
    Snapshot entries link to ``folder``'s files, or with ``blobs=True`` (what a real
    download leaves) to copies in the repo's ``blobs/`` folder. Returns the fake commit
    hash."""
    revision = hashlib.sha1(f"{repo_id}:{folder}".encode()).hexdigest()
    repo_dir = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in Path(folder).iterdir():
        target = snapshot / file.name
        if target.exists():
            continue
        if blobs:
            blob = repo_dir / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.parent.mkdir(exist_ok=True)
            shutil.copyfile(file, blob)
            os.symlink(os.path.relpath(blob, snapshot), target)
        else:
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


# --- BiomedCLIP (open_clip CustomTextCLIP: timm ViT + Hugging Face BERT) -----------------

BIOMEDCLIP_TEXT_REPO = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
#: open_clip_config.json "model_cfg" of microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224.
BIOMEDCLIP_224 = dict(
    embed_dim=512,
    vision_cfg=dict(
        timm_model_name="vit_base_patch16_224", timm_model_pretrained=False, timm_pool="",
        timm_proj="linear", image_size=224,
    ),
    text_cfg=dict(
        hf_model_name=BIOMEDCLIP_TEXT_REPO, hf_tokenizer_name=BIOMEDCLIP_TEXT_REPO,
        hf_proj_type="mlp", hf_pooler_type="cls_last_hidden_state_pooler", context_length=256,
    ),
)
#: PubMedBERT-base's config.json (the text tower open_clip builds from hf_model_name).
PUBMEDBERT = dict(
    vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
    layer_norm_eps=1e-12, pad_token_id=0, hidden_act="gelu",
)
# A tiny BiomedCLIP-shaped model for fast tests (3 heads, a 4x4 patch grid, 16 text tokens).
BIOMEDCLIP_TINY = dict(
    embed_dim=20,
    vision_cfg=dict(
        timm_model_name="vit_base_patch16_224", timm_model_pretrained=False, timm_pool="",
        timm_proj="linear", image_size=32,
        timm_model_kwargs=dict(embed_dim=48, depth=2, num_heads=3, img_size=32, patch_size=8),
    ),
    text_cfg=dict(BIOMEDCLIP_224["text_cfg"], context_length=16),
)
BERT_TINY = dict(
    PUBMEDBERT, vocab_size=400, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=40, max_position_embeddings=40,
)
BIOMEDCLIP_TINY_VARIANT = dict(
    patch_size=8, vision_hidden_dim=48, vision_num_layers=2, vision_num_heads=3,
    vision_intermediate_dim=192, text_hidden_dim=24, text_num_layers=2, text_num_heads=2,
    text_intermediate_dim=40, projection_dim=20, image_size=32, vocabulary_size=400,
    max_text_length=16, text_num_positions=40,
)
OPENAI_CLIP_PREPROCESS = dict(
    mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711]
)


def build_biomedclip(model_cfg: dict, bert: dict, seed: int = 0, scale: float = 0.02):
    """open_clip's ``CustomTextCLIP`` for ``model_cfg`` (built offline, the BERT config
    from ``bert``), every tensor drawn at random like :func:`build_reference`."""
    import torch

    from kvmm.cli.convert import build_open_clip

    torch.manual_seed(seed)
    model = build_open_clip(model_cfg, bert)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.normal_(0.0, scale)
            if param.ndim == 1 and name.endswith(("norm1.weight", "norm2.weight", "norm.weight",
                                                  "LayerNorm.weight")):
                param.add_(1.0)
        model.logit_scale.fill_(2.9)
    return model


def save_biomedclip(model, model_cfg: dict, folder: Path, fmt: str = "bin",
                    vocabulary: str | None = None) -> Path:
    """The checkpoint layout of the Hub repo: ``open_clip_config.json`` plus
    ``open_clip_pytorch_model.bin`` (``fmt="bin"``, torch.save) or
    ``open_clip_model.safetensors`` (``fmt="safetensors"``), and ``vocab.txt``."""
    import json

    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": OPENAI_CLIP_PREPROCESS}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "bin":
        torch.save(state, folder / "open_clip_pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(state, str(folder / "open_clip_model.safetensors"))
    if vocabulary is not None:
        for name in ("vocab.txt", "tokenizer_config.json"):
            source = Path(vocabulary) / name
            if source.is_file():
                (folder / name).write_bytes(source.read_bytes())
    return folder


def biomedclip_reference_outputs(model, images: np.ndarray, token_ids: np.ndarray) -> dict:
    """open_clip's normalized embeddings and logits for channels-last ``images``."""
    import torch

    with torch.no_grad():
        image = model.encode_image(torch.tensor(images).permute(0, 3, 1, 2), normalize=True)
        text = model.encode_text(torch.tensor(token_ids, dtype=torch.long), normalize=True)
        logits = model.logit_scale.exp() * image @ text.T
    return {
        "image_embeds": image.numpy(),
        "text_embeds": text.numpy(),
        "image_logits": logits.numpy(),
        "text_logits": logits.T.numpy(),
    }


def bert_token_ids(rng, lengths, total: int, vocab: int, cls: int = 2, sep: int = 3,
                   pad: int = 0, first_id: int = 5) -> np.ndarray:
    """Rows laid out as BERT's tokenizer writes them: [CLS] pieces [SEP] [PAD]..."""
    token_ids = np.full((len(lengths), total), pad, "int32")
    for row, length in enumerate(lengths):
        token_ids[row, 0] = cls
        token_ids[row, 1 : 1 + length] = rng.integers(first_id, vocab, length)
        token_ids[row, 1 + length] = sep
    return token_ids
