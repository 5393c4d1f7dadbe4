"""Building blocks of the key maps: Hugging Face (PyTorch) tensor -> Keras variable.

Each family's ``convert.py`` composes these into its one key map.
"""

from __future__ import annotations

import numpy as np

from kvmm.layers import resize_position_grid
from kvmm.loading import Rule


def same(array, shape):
    return array


def linear(array, shape):
    """torch ``Linear`` weight ``(out, in)`` -> Keras ``Dense`` kernel ``(in, out)``."""
    return array.T


def conv(array, shape):
    """torch ``Conv2d`` weight ``(out, in, kh, kw)`` -> Keras ``Conv2D`` ``(kh, kw, in, out)``."""
    return array.transpose(2, 3, 1, 0)


def rows(index: int, count: int, convert=same):
    """Block ``index`` of ``count`` equal row blocks (torch's fused ``in_proj`` = [q; k; v])."""

    def take(array, shape):
        size = array.shape[0] // count
        return convert(array[index * size : (index + 1) * size], shape)

    return take


def position_grid(grid: tuple[int, int], num_prefix_tokens: int = 0):
    """Keep a position table, or resize its patch grid to ``grid`` when the model's
    resolution differs from the checkpoint's (bicubic, as transformers interpolates)."""

    def convert(array, shape):
        if array.shape == tuple(shape) or array.ndim != 2 or array.shape[1] != shape[1]:
            return array
        return resize_position_grid(np.asarray(array), grid, num_prefix_tokens)

    return convert


def dense(prefix: str, layer) -> list[Rule]:
    rules = [Rule(f"{prefix}.weight", [(layer.kernel, linear)])]
    if layer.use_bias:
        rules.append(Rule(f"{prefix}.bias", [(layer.bias, same)]))
    return rules


def layer_norm(prefix: str, layer) -> list[Rule]:
    return [
        Rule(f"{prefix}.weight", [(layer.gamma, same)]),
        Rule(f"{prefix}.bias", [(layer.beta, same)]),
    ]


def mlp(prefix: str, block) -> list[Rule]:
    return dense(f"{prefix}.fc1", block.fc1) + dense(f"{prefix}.fc2", block.fc2)


def fused_qkv(prefix: str, attention, weight: str = "weight", bias: str = "bias") -> list[Rule]:
    """A fused ``[q; k; v]`` projection (torch ``in_proj_weight``, timm ``qkv``) split
    onto a :class:`kvmm.layers.MultiHeadAttention`'s query / key / value."""
    parts = [attention.query, attention.key, attention.value]
    rules = [Rule(f"{prefix}{weight}", [(d.kernel, rows(i, 3, linear)) for i, d in enumerate(parts)])]
    if attention.use_bias:
        rules.append(Rule(f"{prefix}{bias}", [(d.bias, rows(i, 3)) for i, d in enumerate(parts)]))
    return rules


#: Checkpoint names of one encoder block's parts (below ``<prefix>.<layer index>.``).
#: transformers' CLIP / SigLIP encoder layers:
HF_CLIP_BLOCK = dict(
    layer_norm1="layer_norm1", query="self_attn.q_proj", key="self_attn.k_proj",
    value="self_attn.v_proj", output="self_attn.out_proj", layer_norm2="layer_norm2",
    fc1="mlp.fc1", fc2="mlp.fc2",
)
#: transformers' BERT layers (post-LN: layer_norm1 follows attention, layer_norm2 the MLP):
HF_BERT_BLOCK = dict(
    query="attention.self.query", key="attention.self.key", value="attention.self.value",
    output="attention.output.dense", layer_norm1="attention.output.LayerNorm",
    fc1="intermediate.dense", fc2="output.dense", layer_norm2="output.LayerNorm",
)
#: timm ViT blocks (fused ``qkv``):
TIMM_VIT_BLOCK = dict(
    layer_norm1="norm1", qkv="attn.qkv", output="attn.proj", layer_norm2="norm2",
    fc1="mlp.fc1", fc2="mlp.fc2",
)


def encoder_rules(prefix: str, encoder, names: dict) -> list[Rule]:
    """Every block of a :class:`kvmm.layers.TransformerEncoder` from checkpoint tensors
    ``{prefix}.{i}.{names[part]}.weight/bias`` (``names``: one of the tables above)."""
    rules = []
    for i, block in enumerate(encoder.blocks):
        p = f"{prefix}.{i}"
        attention = block.attention
        rules += layer_norm(f"{p}.{names['layer_norm1']}", block.layer_norm1)
        if "qkv" in names:
            rules += fused_qkv(f"{p}.{names['qkv']}.", attention)
        else:
            for part in ("query", "key", "value"):
                rules += dense(f"{p}.{names[part]}", getattr(attention, part))
        rules += dense(f"{p}.{names['output']}", attention.output_dense)
        rules += layer_norm(f"{p}.{names['layer_norm2']}", block.layer_norm2)
        rules += dense(f"{p}.{names['fc1']}", block.mlp.fc1)
        rules += dense(f"{p}.{names['fc2']}", block.mlp.fc2)
    return rules


def hf_encoder(prefix: str, encoder) -> list[Rule]:
    """A transformers CLIP/SigLIP-style encoder (``{prefix}.layers.N.self_attn.q_proj`` ...)
    onto a :class:`kvmm.layers.TransformerEncoder`."""
    return encoder_rules(f"{prefix}.layers", encoder, HF_CLIP_BLOCK)


def hf_tower_arguments(vision: dict, text: dict) -> dict:
    """kvmm model arguments from transformers-style ``vision_config`` / ``text_config``
    dicts (defaults already filled in): the part every dual-encoder family shares."""
    image_size = vision["image_size"]
    return dict(
        image_size=image_size if isinstance(image_size, int) else tuple(image_size),
        patch_size=vision["patch_size"],
        vision_hidden_dim=vision["hidden_size"],
        vision_num_layers=vision["num_hidden_layers"],
        vision_num_heads=vision["num_attention_heads"],
        vision_intermediate_dim=vision["intermediate_size"],
        vocabulary_size=text["vocab_size"],
        max_text_length=text["max_position_embeddings"],
        text_hidden_dim=text["hidden_size"],
        text_num_layers=text["num_hidden_layers"],
        text_num_heads=text["num_attention_heads"],
        text_intermediate_dim=text["intermediate_size"],
        layer_norm_epsilon=vision["layer_norm_eps"],
    )
