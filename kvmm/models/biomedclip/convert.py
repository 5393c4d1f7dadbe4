"""BiomedCLIP key map: open_clip ``CustomTextCLIP`` state-dict names -> kvmm Keras variables.

The checkpoint is open_clip's: ``open_clip_config.json`` plus ``open_clip_model.safetensors``
or ``open_clip_pytorch_model.bin`` (a PyTorch pickle, read without running code from it,
see :mod:`kvmm.utils.torch_pickle`). Tensor names: ``visual.trunk.*`` (timm ViT),
``visual.head.proj.weight``, ``text.transformer.*`` (transformers ``BertModel``),
``text.proj.{0,2}.weight`` and ``logit_scale``.
"""

from __future__ import annotations

import re

from kvmm.errors import WeightsError
from kvmm.loading import Rule
from kvmm.models.keymap import (
    HF_BERT_BLOCK,
    TIMM_VIT_BLOCK,
    conv,
    dense,
    encoder_rules,
    layer_norm,
    position_grid,
    same,
)


def _reshape(array, shape):
    return array.reshape(shape)


def vision_key_map(vision, prefix: str = "visual") -> list[Rule]:
    """Rules for the timm ViT image tower (a :class:`CLIPVisionEncoder` without
    pre-LayerNorm) from ``{prefix}.trunk.*`` and ``{prefix}.head.proj``."""
    trunk = f"{prefix}.trunk"
    grid = position_grid(vision.grid_size, 1)
    rules = [
        Rule(f"{trunk}.cls_token", [(vision.class_token.token, _reshape)]),
        # (1, 1 + patches, dim) -> (1 + patches, dim), resized to the model's grid if needed
        Rule(f"{trunk}.pos_embed", [(vision.position_embedding.embeddings,
                                     lambda a, s: grid(a[0], s))]),
        Rule(f"{trunk}.patch_embed.proj.weight",
             [(vision.patch_embedding.projection.kernel, conv)]),
        Rule(f"{trunk}.patch_embed.proj.bias",
             [(vision.patch_embedding.projection.bias, same)]),
    ]
    rules += encoder_rules(f"{trunk}.blocks", vision.encoder, TIMM_VIT_BLOCK)
    rules += layer_norm(f"{trunk}.norm", vision.post_layer_norm)
    rules += dense(f"{prefix}.head.proj", vision.projection)
    return rules


def text_key_map(text, prefix: str = "text") -> list[Rule]:
    """Rules for :class:`BiomedCLIPTextEncoder` from ``{prefix}.transformer.*`` (BERT) and
    ``{prefix}.proj.*``."""
    embeddings = f"{prefix}.transformer.embeddings"
    rules = [
        Rule(f"{embeddings}.word_embeddings.weight", [(text.token_embedding.embeddings, same)]),
        Rule(f"{embeddings}.position_embeddings.weight",
             [(text.position_embedding.embeddings, same)]),
        Rule(f"{embeddings}.token_type_embeddings.weight",
             [(text.token_type_embedding.embeddings, same)]),
    ]
    rules += layer_norm(f"{embeddings}.LayerNorm", text.embeddings_layer_norm)
    rules += encoder_rules(f"{prefix}.transformer.encoder.layer", text.encoder, HF_BERT_BLOCK)
    rules += dense(f"{prefix}.proj.0", text.projection.fc1)
    rules += dense(f"{prefix}.proj.2", text.projection.fc2)
    return rules


def biomedclip_key_map(model) -> list[Rule]:
    """Every tensor of an open_clip BiomedCLIP checkpoint, mapped onto ``model``."""
    return (
        vision_key_map(model.vision_model)
        + text_key_map(model.text_model)
        + [Rule("logit_scale", [(model.logit_scale, _reshape)])]
    )


#: Buffers and unused modules a checkpoint may hold: BERT's ``position_ids`` /
#: ``token_type_ids`` buffers, and its pooler (dense + tanh), which the
#: ``cls_last_hidden_state_pooler`` BiomedCLIP uses never calls.
IGNORED_KEYS = (
    r"\.position_ids$",
    r"\.token_type_ids$",
    r"^text\.transformer\.pooler\.",
)

#: timm ViT sizes: width, depth, heads, MLP width.
_TIMM_VIT_SIZES = {
    "tiny": (192, 12, 3, 768),
    "small": (384, 12, 6, 1536),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
}


def config_from_checkpoint(config: dict) -> dict:
    """Model arguments from an open_clip ``open_clip_config.json`` (BiomedCLIP layout).

    The image tower comes from ``vision_cfg.timm_model_name`` (``vit_<size>_patch<P>_<S>``);
    the text tower's size is not in the file (open_clip reads it from the BERT checkpoint
    named by ``hf_model_name``), so the variant's sizes apply and the tensor shapes are
    checked on load.
    """
    model_cfg = config.get("model_cfg", config)
    vision = model_cfg.get("vision_cfg")
    text = model_cfg.get("text_cfg")
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise WeightsError(
            "The checkpoint's open_clip_config.json has no model_cfg.vision_cfg / text_cfg; "
            "it is not an open_clip model configuration."
        )
    name = vision.get("timm_model_name")
    if not name or not text.get("hf_model_name"):
        raise WeightsError(
            "The open_clip checkpoint is not a BiomedCLIP-style model (a timm image tower "
            f"and a Hugging Face text tower): timm_model_name={name!r}, "
            f"hf_model_name={text.get('hf_model_name')!r}."
        )
    match = re.fullmatch(r"vit_(tiny|small|base|large)_patch(\d+)_(\d+)(\..*)?", name)
    if match is None:
        raise WeightsError(f"Unsupported timm image tower {name!r} (kvmm reads vit_<size>_patch<P>_<S>).")
    width, depth, heads, mlp_width = _TIMM_VIT_SIZES[match.group(1)]
    patch_size, image_size = int(match.group(2)), int(match.group(3))
    # timm.create_model(**timm_model_kwargs) overrides of the named architecture
    overrides = dict(vision.get("timm_model_kwargs") or {})
    unknown = sorted(set(overrides) - {"embed_dim", "depth", "num_heads", "mlp_ratio",
                                       "patch_size", "img_size"})
    if unknown:
        raise WeightsError(f"Unsupported timm_model_kwargs in open_clip_config.json: {unknown}.")
    width = int(overrides.get("embed_dim", width))
    depth = int(overrides.get("depth", depth))
    heads = int(overrides.get("num_heads", heads))
    if "mlp_ratio" in overrides or "embed_dim" in overrides:
        mlp_width = int(width * float(overrides.get("mlp_ratio", 4.0)))
    patch_size = int(overrides.get("patch_size", patch_size))
    image_size = overrides.get("img_size", image_size)
    settings = {
        # open_clip's default pool is "avg"; "" keeps timm ViT's own class-token pooling
        "timm_pool": (vision.get("timm_pool", "avg"), ("", "token")),
        "timm_proj": (vision.get("timm_proj", "linear"), ("linear",)),
        "timm_proj_bias": (bool(vision.get("timm_proj_bias", False)), (False,)),
        "hf_proj_type": (text.get("hf_proj_type", text.get("proj", "mlp")), ("mlp",)),
        "hf_pooler_type": (
            text.get("hf_pooler_type", text.get("pooler_type", "cls_last_hidden_state_pooler")),
            ("cls_last_hidden_state_pooler",),
        ),
    }
    for key, (value, supported) in settings.items():
        if value not in supported:
            raise WeightsError(
                f"Unsupported BiomedCLIP setting {key}={value!r} in open_clip_config.json "
                f"(kvmm supports {', '.join(map(repr, supported))})."
            )
    image_size = vision.get("image_size", image_size)
    return dict(
        image_size=image_size if isinstance(image_size, int) else tuple(image_size),
        patch_size=patch_size,
        vision_hidden_dim=width,
        vision_num_layers=depth,
        vision_num_heads=heads,
        vision_intermediate_dim=mlp_width,
        projection_dim=int(model_cfg.get("embed_dim", 512)),
        max_text_length=int(text.get("context_length", 256)),
    )


def tokenizer_repo(config: dict) -> str | None:
    """The Hugging Face repo open_clip takes the tokenizer from (``hf_tokenizer_name``)."""
    text = config.get("model_cfg", config).get("text_cfg") or {}
    return text.get("hf_tokenizer_name") or text.get("hf_model_name")
