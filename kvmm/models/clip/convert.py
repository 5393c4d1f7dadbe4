"""CLIP key map: Hugging Face ``CLIPModel`` tensor names -> kvmm Keras variables."""

from __future__ import annotations

from kvmm.errors import WeightsError
from kvmm.loading import Rule
from kvmm.models.keymap import (
    conv,
    dense,
    hf_encoder,
    hf_tower_arguments,
    layer_norm,
    position_grid,
    same,
)


def vision_key_map(vision, prefix: str = "vision_model", projection: str = "visual_projection"):
    """Rules for :class:`CLIPVisionEncoder`."""
    rules = [
        Rule(f"{prefix}.embeddings.class_embedding", [(vision.class_token.token, same)]),
        Rule(f"{prefix}.embeddings.patch_embedding.weight",
             [(vision.patch_embedding.projection.kernel, conv)]),
        Rule(f"{prefix}.embeddings.position_embedding.weight",
             [(vision.position_embedding.embeddings, position_grid(vision.grid_size, 1))]),
    ]
    rules += layer_norm(f"{prefix}.pre_layrnorm", vision.pre_layer_norm)
    rules += hf_encoder(f"{prefix}.encoder", vision.encoder)
    rules += layer_norm(f"{prefix}.post_layernorm", vision.post_layer_norm)
    rules += dense(projection, vision.projection)
    return rules


def text_key_map(text, prefix: str = "text_model", projection: str = "text_projection"):
    """Rules for :class:`CLIPTextEncoder`."""
    rules = [
        Rule(f"{prefix}.embeddings.token_embedding.weight",
             [(text.token_embedding.embeddings, same)]),
        Rule(f"{prefix}.embeddings.position_embedding.weight",
             [(text.position_embedding.embeddings, same)]),
    ]
    rules += hf_encoder(f"{prefix}.encoder", text.encoder)
    rules += layer_norm(f"{prefix}.final_layer_norm", text.final_layer_norm)
    rules += dense(projection, text.projection)
    return rules


def clip_key_map(model) -> list[Rule]:
    """Every tensor of a transformers ``CLIPModel`` checkpoint, mapped onto ``model``."""
    return (
        vision_key_map(model.vision_model)
        + text_key_map(model.text_model)
        + [Rule("logit_scale", [(model.logit_scale, lambda a, s: a.reshape(s))])]
    )


# transformers' CLIPVisionConfig / CLIPTextConfig defaults, which config.json files omit.
_VISION_DEFAULTS = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5,
)
_TEXT_DEFAULTS = dict(
    vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
    num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
    layer_norm_eps=1e-5, eos_token_id=49407,
)
_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}


def config_from_checkpoint(config: dict) -> dict:
    """Model arguments from a transformers ``CLIPModel`` ``config.json``."""
    model_type = config.get("model_type", "clip")
    if model_type != "clip":
        raise WeightsError(
            f"The checkpoint's config.json describes a {model_type!r} model, not CLIP ('clip')."
        )
    vision = {**_VISION_DEFAULTS, **(config.get("vision_config") or {})}
    text = {**_TEXT_DEFAULTS, **(config.get("text_config") or {})}
    activation = _ACTIVATIONS.get(vision["hidden_act"])
    if activation is None or text["hidden_act"] != vision["hidden_act"]:
        raise WeightsError(
            f"Unsupported CLIP activations: vision {vision['hidden_act']!r}, text "
            f"{text['hidden_act']!r} (kvmm supports 'quick_gelu' and 'gelu', the same in both)."
        )
    return dict(
        hf_tower_arguments(vision, text),
        projection_dim=config.get("projection_dim", 512),
        activation=activation,
        eos_token_id=text["eos_token_id"],
    )
