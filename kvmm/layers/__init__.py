"""Transformer building blocks shared by every kvmm model family.

Each block exists once here; SigLIP, CLIP and BiomedCLIP compose them.
"""

from kvmm.layers.activations import get_activation
from kvmm.layers.attention import MultiHeadAttention
from kvmm.layers.attention_pooling import AttentionPoolingHead
from kvmm.layers.class_token import ClassToken
from kvmm.layers.dense import Dense
from kvmm.layers.encoder import TransformerEncoder
from kvmm.layers.encoder_block import TransformerEncoderBlock
from kvmm.layers.mlp import MLP
from kvmm.layers.patch_embedding import PatchEmbedding
from kvmm.layers.position_embedding import PositionEmbedding, resize_position_grid

__all__ = [
    "AttentionPoolingHead",
    "ClassToken",
    "Dense",
    "MLP",
    "MultiHeadAttention",
    "PatchEmbedding",
    "PositionEmbedding",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "get_activation",
    "resize_position_grid",
]
