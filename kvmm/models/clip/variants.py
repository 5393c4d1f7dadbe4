"""The CLIP variants users build: ``ClipVitBase32``, ``ClipVitBase16``, ``ClipVitLarge14``."""

from __future__ import annotations

from kvmm.loading import ModelFamily, variant_builder
from kvmm.models.clip.convert import clip_key_map, config_from_checkpoint
from kvmm.models.clip.model import CLIPModel
from kvmm.models.clip.presets import CLIP_VARIANTS, CLIP_WEIGHTS
from kvmm.models.dual_encoder import TEXT_ARCHITECTURE_KEYS, VISION_ARCHITECTURE_KEYS

CLIP = ModelFamily(
    name="CLIP",
    model_class=CLIPModel,
    variants=CLIP_VARIANTS,
    weights=CLIP_WEIGHTS,
    key_map=clip_key_map,
    config_from_checkpoint=config_from_checkpoint,
    architecture_keys=(*VISION_ARCHITECTURE_KEYS, *TEXT_ARCHITECTURE_KEYS, "projection_dim"),
    ignored_keys=(r"\.position_ids$",),
    vocabulary_files=("tokenizer.json", "vocab.json"),  # a folder holding either
)

_DOC = """{title}

    Args:
        weights: ``None`` (random initialisation), a named weight ({names}), a local
            Hugging Face ``CLIPModel`` checkpoint folder, ``"hf:<repo_id>"`` for any
            compatible CLIP checkpoint on the Hub, or a ``.weights.h5`` file. Named and
            ``hf:`` weights are downloaded with ``huggingface_hub``, converted on first use
            and cached (``$KVMM_CACHE``, default ``~/.cache/kvmm``).
        input_shape: ``(height, width, 3)``. Defaults to the checkpoint's resolution
            (224 px without weights). Another resolution interpolates the patch position
            embeddings (bicubic, as transformers' ``interpolate_pos_encoding``).
        name: model name (default ``{lower}``).
        dtype: dtype policy, e.g. ``"float32"``, ``"bfloat16"``, ``"mixed_bfloat16"``.
        progress: show conversion progress (default: when attached to a terminal).

    Returns:
        A :class:`CLIPModel`. Probabilities over labels are
        ``keras.ops.softmax(model(inputs)["image_logits"], axis=-1)``.

    Example:
        >>> model = kvmm.models.clip.{variant}(weights="{example}")
        >>> processor = kvmm.models.clip.CLIPProcessor.for_model(model)
        >>> inputs = processor(text=["a photo of a cat", "a photo of a dog"], image_paths=["cat.jpg"])
        >>> probs = keras.ops.softmax(model(inputs)["image_logits"], axis=-1)
    """


def _variant(variant: str, title: str):
    names = list(CLIP_WEIGHTS[variant])
    return variant_builder(CLIP, variant, _DOC.format(
        title=title,
        names=", ".join(f'``"{n}"``' for n in names),
        lower=variant.lower(),
        variant=variant,
        example=names[0],
    ))


ClipVitBase32 = _variant("ClipVitBase32", "CLIP ViT-B/32 (768-wide image tower, 512-d embeddings).")
ClipVitBase16 = _variant("ClipVitBase16", "CLIP ViT-B/16 (768-wide image tower, 512-d embeddings).")
ClipVitLarge14 = _variant(
    "ClipVitLarge14",
    "CLIP ViT-L/14 (1024-wide image tower, 768-d embeddings); ``openai_336`` runs at 336 px.",
)
