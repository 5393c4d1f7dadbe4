"""The SigLIP variants users build: ``SigLIPBaseP16``, ``SigLIPLargeP16``, ``SigLIPSo400mP14`` and
the shipped demo model ``SigLIPDemo``."""

from __future__ import annotations

from kvmm.loading import ModelFamily, variant_builder
from kvmm.models.siglip.convert import config_from_checkpoint, siglip_key_map
from kvmm.models.siglip.model import SigLIPModel
from kvmm.models.siglip.presets import SIGLIP_VARIANTS, SIGLIP_WEIGHTS

SIGLIP = ModelFamily(
    name="SigLIP",
    model_class=SigLIPModel,
    variants=SIGLIP_VARIANTS,
    weights=SIGLIP_WEIGHTS,
    key_map=siglip_key_map,
    config_from_checkpoint=config_from_checkpoint,
    architecture_keys=(
        "patch_size",
        "vision_hidden_dim",
        "vision_num_layers",
        "vision_num_heads",
        "vision_intermediate_dim",
        "text_hidden_dim",
        "text_num_layers",
        "text_num_heads",
        "text_intermediate_dim",
    ),
    ignored_keys=(r"\.position_ids$",),
    vocabulary_files=("spiece.model",),
)

_DOC = """{title}

    Args:
        weights: ``None`` (random initialisation), a named weight ({names}), a local
            Hugging Face checkpoint folder, ``"hf:<repo_id>"`` for any compatible SigLIP
            checkpoint on the Hub, or a ``.weights.h5`` file from ``model.save_weights``.
            {fetched}
        input_shape: ``(height, width, 3)``. Defaults to the checkpoint's resolution
            ({default} px without weights). Another resolution interpolates the position
            embeddings (bicubic, as transformers' ``interpolate_pos_encoding``).
        name: model name (default ``{lower}``).
        dtype: dtype policy, e.g. ``"float32"``, ``"bfloat16"``, ``"mixed_bfloat16"``.
        progress: show conversion progress (default: when attached to a terminal).

    Returns:
        A :class:`SigLIPModel`. Use ``SigLIPProcessor.for_model(model)`` for matching
        preprocessing (image size, text length, vocabulary).

    Example:
        >>> model = kvmm.models.siglip.{variant}(weights="{example}")
        >>> processor = kvmm.models.siglip.SigLIPProcessor.for_model(model)
        >>> inputs = processor(text=["{prompt}"], image_paths=["{image}"])
        >>> probs = keras.ops.sigmoid(model(inputs)["image_logits"])
    """

_FETCHED = (
    "Named and ``hf:`` weights are downloaded with ``huggingface_hub`` and converted\n"
    "            on first use; the converted weights are cached (``$KVMM_CACHE``, default\n"
    "            ``~/.cache/kvmm``) so later loads skip the conversion."
)
_SHIPPED = (
    "The named weight ships with kvmm (``weights/``): nothing is downloaded, it\n"
    "            loads offline."
)


def _variant(variant: str, title: str):
    names = list(SIGLIP_WEIGHTS[variant])
    return variant_builder(SIGLIP, variant, _DOC.format(
        title=title,
        names=", ".join(f'``"{n}"``' for n in names),
        default=SIGLIP_VARIANTS[variant]["image_size"],
        lower=variant.lower(),
        variant=variant,
        example=names[0],
        fetched=_SHIPPED if variant == "SigLIPDemo" else _FETCHED,
        prompt="a small red circle" if variant == "SigLIPDemo" else "a photo of a cat",
        image="shape.png" if variant == "SigLIPDemo" else "cat.jpg",
    ))


SigLIPBaseP16 = _variant("SigLIPBaseP16", "SigLIP Base, 16px patches (ViT-B/16 image tower, 768 wide, 12 layers).")
SigLIPLargeP16 = _variant("SigLIPLargeP16", "SigLIP Large, 16px patches (ViT-L/16 image tower, 1024 wide, 24 layers).")
SigLIPDemo = _variant(
    "SigLIPDemo",
    "The kvmm demo model: the SigLIP architecture scaled down (64 px images, 8 px patches,\n"
    "    64 wide, 3 image and 2 text layers, 16 text positions, a 128-row vocabulary).\n\n"
    "    ``weights=\"shapes\"`` loads the weights the repository ships in ``weights/``, trained\n"
    "    from scratch by ``examples/train_demo_model.py`` on synthetic coloured shapes\n"
    "    (:mod:`kvmm.demo.shapes`): not a Google checkpoint, and it knows only shapes. Its\n"
    "    ``spiece.model`` lies next to the weights, so ``SigLIPProcessor.for_model(model)``\n"
    "    works offline.",
)
SigLIPSo400mP14 = _variant(
    "SigLIPSo400mP14",
    "SigLIP So400m, 14px patches (shape-optimised 400M image tower, 1152 wide, 27 layers).\n\n"
    "    ``google_224`` uses 16 text positions, ``google_384`` 64: build the processor with\n"
    "    ``SigLIPProcessor.for_model(model)`` to get the right text length.",
)
