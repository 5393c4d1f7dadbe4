"""Activation functions by the names the reference implementations use."""

from __future__ import annotations

import keras
from keras import ops


def _gelu_tanh(x):
    return keras.activations.gelu(x, approximate=True)


def _gelu_exact(x):
    return keras.activations.gelu(x, approximate=False)


def _quick_gelu(x):
    x = ops.convert_to_tensor(x)
    return x * ops.sigmoid(1.702 * x)


_ACTIVATIONS = {
    "gelu_tanh": _gelu_tanh,  # transformers "gelu_pytorch_tanh" (SigLIP)
    "gelu": _gelu_exact,  # erf GELU (timm ViT, BERT)
    "quick_gelu": _quick_gelu,  # OpenAI CLIP
}


def get_activation(name: str):
    """Return the activation called ``name``: ``"gelu_tanh"``, ``"gelu"`` or ``"quick_gelu"``."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}."
        ) from None
