"""``build_projector`` (LLaVA and kvmm config keys) and LLaVA ``mm_projector`` loading."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from kvmm.errors import WeightsError
from kvmm.projectors.layers import (
    GatedProjector,
    IdentityProjector,
    MLPProjector,
    PerceiverProjector,
    QFormerProjector,
)

PROJECTOR_TYPES = ("linear", "mlpNx_gelu", "identity", "qformer", "perceiver", "gated")
_MLP = re.compile(r"^mlp(\d+)x_gelu$")


def _get(config: dict, *keys, default=None):
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def build_projector(config, **overrides):
    """A projector from a dict or dataclass of LLaVA-style or kvmm keys.

    Type: ``mm_projector_type`` or ``projector_type``: ``"linear"``, ``"mlp2x_gelu"`` (any
    ``mlpNx_gelu``), ``"mlp"`` (with ``depth`` / ``num_layers``), ``"identity"``,
    ``"qformer"``, ``"perceiver"``, ``"gated"``.
    Widths: ``hidden_size`` / ``output_dim`` / ``llm_hidden_size`` (the language model's
    width); ``mm_hidden_size`` / ``input_dim`` / ``vision_hidden_size`` (the features'
    width, optional: Keras infers it, but when given it is checked on the first call for
    ``identity``). Q-Former: ``num_query_tokens``; Perceiver: ``num_latents``; both:
    ``num_layers`` (or ``projector_num_layers``), ``num_heads`` (or
    ``num_attention_heads``), ``projector_hidden_size``, ``intermediate_size``.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    config = {**dict(config), **overrides}
    kind = str(_get(config, "mm_projector_type", "projector_type", default="linear")).lower()
    output_dim = _get(config, "hidden_size", "output_dim", "llm_hidden_size", "text_hidden_size")
    input_dim = _get(config, "mm_hidden_size", "input_dim", "vision_hidden_size")
    if output_dim is None and kind != "identity":
        raise ValueError(
            f"build_projector needs the language model's width ('hidden_size' or 'output_dim') "
            f"for projector type {kind!r}; got keys {sorted(config)}."
        )
    name = config.get("name")
    match = _MLP.match(kind)
    if kind == "linear":
        return MLPProjector(output_dim, depth=1, name=name)
    if match or kind == "mlp":
        depth = int(match.group(1)) if match else int(_get(config, "depth", "num_layers", default=2))
        return MLPProjector(output_dim, depth=depth,
                            hidden_dim=_get(config, "projector_hidden_size"), name=name)
    if kind == "identity":
        return IdentityProjector(output_dim, name=name)
    if kind == "gated":
        return GatedProjector(output_dim, name=name)
    if kind in ("qformer", "perceiver"):
        common = dict(
            num_layers=int(_get(config, "projector_num_layers", "num_layers", default=2)),
            num_heads=int(_get(config, "projector_num_heads", "num_heads", "num_attention_heads", default=8)),
            hidden_dim=_get(config, "projector_hidden_size"),
            intermediate_dim=_get(config, "intermediate_size"),
            name=name,
        )
        if kind == "qformer":
            return QFormerProjector(output_dim, num_queries=int(_get(config, "num_query_tokens", "num_queries", default=32)), **common)
        return PerceiverProjector(output_dim, num_queries=int(_get(config, "num_latents", default=64)), **common)
    del input_dim
    raise ValueError(
        f"Unknown projector type {kind!r}; choose one of linear, mlp2x_gelu (mlpNx_gelu), mlp, "
        f"identity, qformer, perceiver, gated."
    )


def _read_state_dict(path: Path) -> dict:
    """Tensors of a safetensors file or a PyTorch ``.bin`` as NumPy arrays (the ``.bin`` is
    read without executing code)."""
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:
            raise WeightsError(f"Cannot read {path} as safetensors: {exc}") from exc
    try:
        from kvmm.utils import torch_pickle  # written without torch, safe unpickler
    except ImportError:
        torch_pickle = None
    if torch_pickle is not None and hasattr(torch_pickle, "load_state_dict"):
        return {k: np.asarray(v) for k, v in torch_pickle.load_state_dict(path).items()}
    try:
        import torch
    except ImportError as exc:
        raise WeightsError(
            f"Reading the PyTorch file {path} needs torch (or use a .safetensors file)."
        ) from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"Cannot read {path} as a PyTorch state dict: {exc}") from exc
    return {k: v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy() for k, v in state.items()}


def load_llava_projector(path, projector: MLPProjector | None = None, prefix: str | None = None):
    """Load LLaVA's ``mm_projector.bin`` / ``.safetensors`` (keys
    ``model.mm_projector.N.weight|bias``, ``N`` = 0, 2, 4... for ``mlpNx_gelu``, 0 for
    ``linear``) into an :class:`MLPProjector` (built from the checkpoint when
    ``projector`` is None). Returns the projector; raises :class:`WeightsError` naming any
    missing, unexpected or mis-shaped tensor."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"No such projector checkpoint: {path}")
    state = _read_state_dict(path)
    if prefix is None:
        found = sorted({m.group(1) for k in state if (m := re.match(r"^(.*?mm_projector\.)\d+\.weight$", k))})
        if len(found) != 1:
            raise WeightsError(
                f"{path} has no single 'mm_projector.N.weight' group of tensors "
                f"(keys: {', '.join(sorted(state)[:8])})."
            )
        prefix = found[0]
    indices = sorted(int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.weight$", k)))
    if projector is None:
        first, last = state[f"{prefix}{indices[0]}.weight"], state[f"{prefix}{indices[-1]}.weight"]
        projector = MLPProjector(int(last.shape[0]), depth=len(indices), hidden_dim=int(first.shape[0]))
        projector.build((None, None, int(first.shape[1])))
    if not isinstance(projector, MLPProjector) or len(indices) != projector.depth:
        raise WeightsError(
            f"{path} holds a {len(indices)}-layer MLP projector ({prefix}{indices}); it does "
            f"not fit {projector!r} (depth {getattr(projector, 'depth', '?')})."
        )
    expected = {f"{prefix}{i}.{p}" for i in indices for p in ("weight", "bias")}
    unexpected = [k for k in state if k.startswith(prefix) and k not in expected]
    missing = sorted(expected - set(state))
    if missing or unexpected:
        raise WeightsError(f"{path}: missing {missing or 'none'}, unexpected {unexpected or 'none'}.")
    for index, layer in zip(indices, projector.dense_layers):
        kernel = np.asarray(state[f"{prefix}{index}.weight"], "float32").T
        bias = np.asarray(state[f"{prefix}{index}.bias"], "float32")
        if tuple(layer.kernel.shape) != kernel.shape or tuple(layer.bias.shape) != bias.shape:
            raise WeightsError(
                f"{path}: {prefix}{index}.weight has shape {kernel.T.shape}, the projector's "
                f"layer {layer.name} expects {tuple(layer.kernel.shape)[::-1]}."
            )
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
    return projector
