"""The BiomedCLIP variant users build: ``BiomedClipVitBase16``."""

from __future__ import annotations

from kvmm.loading import ModelFamily, variant_builder
from kvmm.models.biomedclip.convert import IGNORED_KEYS, biomedclip_key_map, config_from_checkpoint
from kvmm.models.biomedclip.model import BiomedCLIPModel
from kvmm.models.biomedclip.presets import BIOMEDCLIP_VARIANTS, BIOMEDCLIP_WEIGHTS
from kvmm.models.dual_encoder import VISION_ARCHITECTURE_KEYS

BIOMEDCLIP = ModelFamily(
    name="BiomedCLIP",
    model_class=BiomedCLIPModel,
    variants=BIOMEDCLIP_VARIANTS,
    weights=BIOMEDCLIP_WEIGHTS,
    key_map=biomedclip_key_map,
    config_from_checkpoint=config_from_checkpoint,
    # The text tower's sizes are not in open_clip_config.json: tensor shapes check them.
    architecture_keys=(*VISION_ARCHITECTURE_KEYS, "projection_dim"),
    ignored_keys=IGNORED_KEYS,
    config_file="open_clip_config.json",
    # safetensors first: it is read without any pickle at all.
    checkpoint_files=("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
    vocabulary_files=("vocab.txt",),
)


_DOC = """BiomedCLIP: timm ViT-B/16 image tower + PubMedBERT text tower, 512-d embeddings.

    Args:
        weights: ``None`` (random initialisation), ``"microsoft_224"``
            (microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224), a local open_clip
            checkpoint folder (``open_clip_config.json`` + ``open_clip_model.safetensors``
            or ``open_clip_pytorch_model.bin``), ``"hf:<repo_id>"`` for a compatible
            open_clip checkpoint on the Hub, or a ``.weights.h5`` file. The PyTorch pickle
            is read without running code from it (a file that tries is refused); named and
            ``hf:`` weights are converted on first use and cached (``$KVMM_CACHE``).
        input_shape: ``(height, width, 3)``; default 224 px. Another resolution interpolates
            the patch position embeddings (bicubic).
        name: model name (default ``biomedclipvitbase16``).
        dtype: dtype policy, e.g. ``"float32"``, ``"bfloat16"``, ``"mixed_bfloat16"``.
        progress: show conversion progress (default: when attached to a terminal).

    Returns:
        A :class:`BiomedCLIPModel`. Probabilities over labels are
        ``keras.ops.softmax(model(inputs)["image_logits"], axis=-1)``.

    Example:
        >>> model = kvmm.models.biomedclip.BiomedClipVitBase16(weights="microsoft_224")
        >>> processor = kvmm.models.biomedclip.BiomedCLIPProcessor.for_model(model)
        >>> inputs = processor(text=["chest x-ray", "brain MRI"], image_paths=["scan.png"])
        >>> probs = keras.ops.softmax(model(inputs)["image_logits"], axis=-1)
    """


BiomedClipVitBase16 = variant_builder(BIOMEDCLIP, "BiomedClipVitBase16", _DOC)
