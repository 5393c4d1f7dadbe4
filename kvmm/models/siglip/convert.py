"""SigLIP key map: Hugging Face ``SiglipModel`` tensor names -> kvmm Keras variables.

This is the one place that knows the checkpoint layout; the loader
(:func:`kvmm.loading.create_model`) and the tools in ``conversion/`` use it.
"""

from __future__ import annotations

from kvmm.errors import WeightsError
from kvmm.loading import Rule
from kvmm.models.keymap import (
    conv,
    dense,
    fused_qkv,
    hf_encoder,
    hf_tower_arguments,
    layer_norm,
    mlp,
    position_grid,
    same,
)


def vision_key_map(vision, prefix: str = "vision_model") -> list[Rule]:
    """Rules for :class:`SigLIPVisionEncoder` (also usable for a bare ``SiglipVisionModel``)."""
    head = vision.head
    rules = [
        Rule(f"{prefix}.embeddings.patch_embedding.weight",
             [(vision.patch_embedding.projection.kernel, conv)]),
        Rule(f"{prefix}.embeddings.patch_embedding.bias",
             [(vision.patch_embedding.projection.bias, same)]),
        Rule(f"{prefix}.embeddings.position_embedding.weight",
             [(vision.position_embedding.embeddings, position_grid(vision.grid_size))]),
    ]
    rules += hf_encoder(f"{prefix}.encoder", vision.encoder)
    rules += layer_norm(f"{prefix}.post_layernorm", vision.post_layer_norm)
    rules += [
        Rule(f"{prefix}.head.probe", [(head.probe, same)]),
    ]
    rules += fused_qkv(f"{prefix}.head.attention.", head.attention, "in_proj_weight", "in_proj_bias")
    rules += dense(f"{prefix}.head.attention.out_proj", head.attention.output_dense)
    rules += layer_norm(f"{prefix}.head.layernorm", head.layer_norm)
    rules += mlp(f"{prefix}.head.mlp", head.mlp)
    return rules


def text_key_map(text, prefix: str = "text_model") -> list[Rule]:
    """Rules for :class:`SigLIPTextEncoder`."""
    rules = [
        Rule(f"{prefix}.embeddings.token_embedding.weight",
             [(text.token_embedding.embeddings, same)]),
        Rule(f"{prefix}.embeddings.position_embedding.weight",
             [(text.position_embedding.embeddings, same)]),
    ]
    rules += hf_encoder(f"{prefix}.encoder", text.encoder)
    rules += layer_norm(f"{prefix}.final_layer_norm", text.final_layer_norm)
    rules += dense(f"{prefix}.head", text.head)
    return rules


def siglip_key_map(model) -> list[Rule]:
    """Every tensor of a transformers ``SiglipModel`` checkpoint, mapped onto ``model``."""
    return (
        vision_key_map(model.vision_model)
        + text_key_map(model.text_model)
        + [
            Rule("logit_scale", [(model.logit_scale, same)]),
            Rule("logit_bias", [(model.logit_bias, same)]),
        ]
    )


# Defaults of transformers' SiglipVisionConfig / SiglipTextConfig: Google's config.json
# files leave out values equal to them.
_VISION_DEFAULTS = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    num_channels=3, image_size=224, patch_size=16, hidden_act="gelu_pytorch_tanh",
    layer_norm_eps=1e-6,
)
_TEXT_DEFAULTS = dict(
    vocab_size=32000, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=64, hidden_act="gelu_pytorch_tanh",
    layer_norm_eps=1e-6, projection_size=None,
)


def config_from_checkpoint(config: dict) -> dict:
    """Model arguments from a transformers ``SiglipModel`` ``config.json``."""
    model_type = config.get("model_type", "siglip")
    if model_type != "siglip":
        raise WeightsError(
            f"The checkpoint's config.json describes a {model_type!r} model, not SigLIP "
            f"('siglip')."
        )
    vision = {**_VISION_DEFAULTS, **(config.get("vision_config") or {})}
    text = {**_TEXT_DEFAULTS, **(config.get("text_config") or {})}
    for part, values in (("vision", vision), ("text", text)):
        if values["hidden_act"] != "gelu_pytorch_tanh":
            raise WeightsError(
                f"The checkpoint's {part} tower uses {values['hidden_act']!r}; SigLIP uses "
                f"'gelu_pytorch_tanh'."
            )
    projection = text["projection_size"] or text["hidden_size"]
    if projection != vision["hidden_size"]:
        raise WeightsError(
            f"The checkpoint's text projection ({projection}) differs from the vision width "
            f"({vision['hidden_size']}); kvmm's SigLIP needs them equal."
        )
    return hf_tower_arguments(vision, text)
