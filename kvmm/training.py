"""Fine-tuning helpers: lock a tower (LiT) and LoRA through Keras' own ``enable_lora``."""

from __future__ import annotations

from collections.abc import Sequence

import keras

#: Dense layers of the shared blocks (kvmm/layers): attention projections and MLP.
LORA_TARGETS = ("query", "key", "value", "output", "fc1", "fc2")


def lock_tower(model, tower: str = "vision") -> None:
    """Freeze one tower of a dual encoder (``"vision"`` or ``"text"``), as in LiT
    ("locked-image tuning": ``lock_tower(model, "vision")``). The other tower and the logit
    scale/bias keep training. The same as ``model.vision_model.trainable = False``."""
    towers = {"vision": model.vision_model, "text": model.text_model}
    if tower not in towers:
        raise ValueError(f'tower must be "vision" or "text", got {tower!r}.')
    towers[tower].trainable = False


def enable_lora(
    model,
    rank: int,
    targets: Sequence[str] = ("query", "value"),
    towers: Sequence[str] = ("vision", "text"),
    train_logit_scale: bool = False,
) -> list:
    """Low-rank adaptation with Keras' own ``Dense.enable_lora(rank)``.

    LoRA factors are added to the Dense layers named in ``targets`` (any of
    ``LORA_TARGETS``) inside the chosen towers; every other variable is frozen, so only the
    LoRA factors train (plus ``logit_scale``/``logit_bias`` with ``train_logit_scale``).
    Call it after loading weights and before ``compile``. Returns the LoRA-enabled layers.
    """
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown:
        raise ValueError(f"Unknown LoRA targets {unknown}; choose from {list(LORA_TARGETS)}.")
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}.")
    chosen = {"vision": model.vision_model, "text": model.text_model}
    bad = [t for t in towers if t not in chosen]
    if bad:
        raise ValueError(f'towers must be among "vision", "text"; got {bad}.')
    if not model.built:
        raise ValueError("Build or load the model before enabling LoRA.")
    for variable in model.weights:
        variable.trainable = False
    enabled = []
    for name in towers:
        for layer in chosen[name]._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.Dense) and layer.name in targets:
                layer.enable_lora(rank)
                enabled.append(layer)
    if not enabled:
        raise ValueError(f"No Dense layer named {list(targets)} in the {list(towers)} towers.")
    if train_logit_scale:
        for variable in model.weights:
            if variable.path.split("/")[-1] in ("logit_scale", "logit_bias"):
                variable.trainable = True
    return enabled
