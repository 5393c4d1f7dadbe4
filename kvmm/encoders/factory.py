"""``create_encoder``: pick a kvmm vision tower by name, checkpoint or type.

Names resolve through kvmm's own loader (:func:`kvmm.loading.create_model`); nothing
here reads checkpoints itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

from kvmm.encoders.tower import VisionTower
from kvmm.errors import WeightsError

logger = logging.getLogger("kvmm.encoders")


@dataclasses.dataclass(frozen=True)
class EncoderFamily:
    """A model family that can serve as a vision tower.

    ``module`` is imported lazily and must expose ``family_attr`` (its
    :class:`kvmm.loading.ModelFamily`); ``model_types`` are the ``model_type`` values of a
    checkpoint's ``config.json`` that belong to it.
    """

    name: str
    module: str
    family_attr: str
    has_cls_token: bool
    model_types: tuple[str, ...] = ()

    def model_family(self):
        """The :class:`kvmm.loading.ModelFamily` (raises a clear error if not installed)."""
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            raise ValueError(f"Encoder type {self.name!r} is not available: {exc}") from exc
        return getattr(module, self.family_attr)


ENCODER_FAMILIES: dict[str, EncoderFamily] = {}
_ALIASES = {"sigclip": "siglip"}


def register_encoder_family(family: EncoderFamily) -> None:
    """Add (or replace) a family in the ``create_encoder`` registry."""
    ENCODER_FAMILIES[family.name] = family


register_encoder_family(EncoderFamily("siglip", "kvmm.models.siglip", "SIGLIP", False, ("siglip",)))
register_encoder_family(EncoderFamily("clip", "kvmm.models.clip", "CLIP", True, ("clip",)))
# BiomedCLIP: timm ViT-B/16 with a class token.
register_encoder_family(
    EncoderFamily("biomedclip", "kvmm.models.biomedclip", "BIOMEDCLIP", True, ("biomedclip",))
)


@dataclasses.dataclass
class EncoderConfig:
    """Arguments of :func:`create_encoder` as a dataclass (a dict with these keys works too)."""

    name_or_path: str | None = None
    encoder_type: str | None = None
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "default"
    image_size: int | None = None
    weights: object = "auto"


def _canonical_type(encoder_type: str) -> str:
    key = _ALIASES.get(encoder_type.lower(), encoder_type.lower())
    if key not in ENCODER_FAMILIES:
        raise ValueError(
            f"Unknown encoder_type {encoder_type!r}; choose one of "
            f"{', '.join(sorted(ENCODER_FAMILIES) + sorted(_ALIASES))}."
        )
    return key


def detect_encoder_type(name_or_path: str) -> str:
    """The family a name stands for: a local folder by its ``config.json`` ``model_type``
    (an ``open_clip_config.json`` folder is BiomedCLIP), otherwise by the name ("siglip" ->
    SigLIP, "biomedclip" -> BiomedCLIP, else CLIP)."""
    folder = Path(os.path.expanduser(str(name_or_path)))
    config = folder / "config.json"
    if (folder / "open_clip_config.json").is_file() and not config.is_file():
        return "biomedclip"
    if config.is_file():
        model_type = json.loads(config.read_text()).get("model_type", "")
        for family in ENCODER_FAMILIES.values():
            if model_type in family.model_types:
                return family.name
    lowered = str(name_or_path).lower()
    if "siglip" in lowered:
        return "siglip"
    if "biomedclip" in lowered:
        return "biomedclip"
    return "clip"


def _find_variant(family, name: str):
    """(variant, weights) for a variant name or a Hugging Face repo id of the catalog."""
    if name in family.variants:
        return name, None
    repo = name[3:] if name.startswith("hf:") else name
    for variant, named in family.weights.items():
        for weight_name, spec in named.items():
            if spec.repo_id == repo:
                return variant, weight_name
    return None, None


def _variant_for_checkpoint(family, name: str):
    """(family, variant, weights) for a local folder or an ``hf:`` id: the variant whose
    architecture the checkpoint's ``config.json`` has, or an ad-hoc one built from it."""
    from kvmm.loading import _checkpoint_config, _matching_variants, resolve_weights

    source = resolve_weights(family, next(iter(family.variants)), name)
    config, _ = _checkpoint_config(family, source)
    if config is None:
        raise WeightsError(f"{source.label} has no {family.config_file}; cannot tell its variant.")
    arch = family.config_from_checkpoint(config)
    matches = _matching_variants(family, arch)
    if matches:
        return family, matches[0], name
    custom = dataclasses.replace(family, variants={**family.variants, "Custom": arch})
    return custom, "Custom", name


def create_encoder(
    name_or_path=None,
    encoder_type: str | None = None,
    vision_feature_layer: int = -2,
    vision_feature_select_strategy: str = "default",
    image_size: int | None = None,
    weights="auto",
    **kwargs,
) -> VisionTower:
    """A :class:`VisionTower` giving ``(batch, tokens, dim)`` features for a language model.

    Args:
        name_or_path: a variant name (``"SigLIPBaseP16"``, weights then random unless
            ``weights`` names one), a Hugging Face repo id of kvmm's catalog
            (``"google/siglip-base-patch16-224"`` -> its variant and named weight), an
            ``"hf:<repo_id>"`` id or a local checkpoint folder (variant read from its
            ``config.json``), or an already built kvmm model. Also a dict or an
            :class:`EncoderConfig` holding all arguments.
        encoder_type: ``"clip"``, ``"siglip"`` (alias ``"sigclip"``) or ``"biomedclip"``.
            ``None`` detects it (folder ``model_type``, else the name) and logs the choice.
        vision_feature_layer: hidden state to use, counted like transformers'
            ``hidden_states`` (``-1`` last layer, ``-2`` the one before).
        vision_feature_select_strategy: ``"default"``, ``"patch"``, ``"cls"`` or ``"full"``
            (see :class:`VisionTower`).
        image_size: input resolution (interpolates position embeddings if it differs).
        weights: ``"auto"`` (the weights the name implies; none for a bare variant name),
            or anything ``weights=`` of a kvmm variant accepts.
        **kwargs: passed to the variant builder (``dtype``, ``progress``...).
    """
    if isinstance(name_or_path, EncoderConfig):
        return create_encoder(**dataclasses.asdict(name_or_path), **kwargs)
    if isinstance(name_or_path, dict):
        return create_encoder(**{**name_or_path, **kwargs})
    if name_or_path is None:
        raise ValueError("create_encoder needs name_or_path (a variant, repo id, folder or model).")

    if not isinstance(name_or_path, str):  # an already built model or vision tower
        model = name_or_path
        key = encoder_type or getattr(model, "family", None)
        if key is None or key.lower() not in {**ENCODER_FAMILIES, **_ALIASES}:
            key = detect_encoder_type(type(model).__name__)  # SigLIPModel, CLIPModel, ...
        key = _canonical_type(key)
    else:
        if encoder_type is None:
            key = detect_encoder_type(name_or_path)
            logger.info("create_encoder: %r detected as encoder type %r", name_or_path, key)
        else:
            key = _canonical_type(encoder_type)
        family = ENCODER_FAMILIES[key].model_family()
        variant, named = _find_variant(family, name_or_path)
        if variant is None:
            family, variant, named = _variant_for_checkpoint(family, name_or_path)
        chosen = named if weights == "auto" else weights
        input_shape = None if image_size is None else (image_size, image_size, 3)
        from kvmm.loading import create_model

        model = create_model(family, variant, weights=chosen, input_shape=input_shape, **kwargs)
        logger.info("create_encoder: %s variant %s, weights %r", key, variant, chosen)
    vision_model = getattr(model, "vision_model", model)
    return VisionTower(
        vision_model,
        has_cls_token=ENCODER_FAMILIES[key].has_cls_token,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy=vision_feature_select_strategy,
        encoder_type=key,
        name=f"{key}_vision_tower",
    )
