"""Convert a checkpoint to a Keras ``.weights.h5`` file and verify it against transformers.

The engine behind ``kvmm convert`` and ``conversion/convert.py``; the key maps are the ones
the library loads with (``kvmm/models/<family>/convert.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kvmm.errors import KvmmError
from kvmm.loading import create_model, resolve_weights, save_weights_atomic


def families() -> list:
    """Every model family the command line knows (BiomedCLIP when it is installed)."""
    from kvmm.models.clip import CLIP
    from kvmm.models.siglip import SIGLIP

    found = [SIGLIP, CLIP]
    try:
        from kvmm.models.biomedclip import BIOMEDCLIP

        found.append(BIOMEDCLIP)
    except ImportError:
        pass
    return found


def family_of(variant: str, extra=()):
    """The family that has ``variant``, or a :class:`KvmmError` listing the known ones."""
    everything = [*extra, *families()]
    for family in everything:
        if variant in family.variants:
            return family
    known = [v for family in everything for v in family.variants]
    raise KvmmError(f"Unknown model {variant!r}; choose one of {', '.join(known)}.")


#: transformers class that each kvmm family is checked against (BiomedCLIP: open_clip).
REFERENCE_CLASSES = {"SigLIP": "SiglipModel", "CLIP": "CLIPModel"}


def _reference_source(family, variant, weights) -> str:
    """What ``from_pretrained`` should load for the same ``weights=`` argument."""
    source = resolve_weights(family, variant, weights)
    if source.kind == "folder":
        return str(Path(source.path))
    if source.kind in ("named", "hub"):
        return source.repo_id
    raise ValueError(f"Cannot verify {weights!r}: transformers cannot read {source.kind} files.")


def build_open_clip(model_cfg: dict, bert_config: dict):
    """open_clip's ``CustomTextCLIP`` for an ``open_clip_config.json`` ``model_cfg``, built
    offline: the BERT config open_clip would fetch from ``hf_model_name`` is ``bert_config``
    (transformers ``BertConfig`` arguments), written to a temporary folder. Weights are
    open_clip's random initialisation. ``vision_cfg.timm_model_kwargs`` is applied by
    rebuilding the timm trunk with them when the installed open_clip predates that key."""
    import copy
    import dataclasses
    import tempfile

    import torch
    from open_clip.model import CLIPVisionCfg, CustomTextCLIP
    from transformers import BertConfig

    cfg = copy.deepcopy(model_cfg)
    timm_kwargs = None
    if "timm_model_kwargs" not in {f.name for f in dataclasses.fields(CLIPVisionCfg)}:
        timm_kwargs = cfg["vision_cfg"].pop("timm_model_kwargs", None)
    cfg["vision_cfg"]["timm_model_pretrained"] = False
    with tempfile.TemporaryDirectory() as bert_folder:
        BertConfig(**bert_config).save_pretrained(bert_folder)
        cfg["text_cfg"].update(hf_model_name=bert_folder, hf_tokenizer_name=bert_folder,
                               hf_model_pretrained=False)
        model = CustomTextCLIP(**cfg)
    if timm_kwargs:
        import timm

        trunk = timm.create_model(cfg["vision_cfg"]["timm_model_name"], pretrained=False,
                                  **timm_kwargs)
        trunk.reset_classifier(0)
        model.visual.trunk = trunk
        model.visual.head.proj = torch.nn.Linear(trunk.num_features, cfg["embed_dim"], bias=False)
    return model.eval()


def _open_clip_reference(model, weights, family):
    """open_clip's ``CustomTextCLIP`` built from the checkpoint's ``open_clip_config.json``
    and loaded with its tensors. The BERT config open_clip would fetch (``hf_model_name``)
    is written locally from the kvmm text tower's sizes, so no network is needed; a wrong
    size fails ``load_state_dict``."""
    import torch

    from kvmm.loading import _checkpoint_config, _fetch_checkpoint, open_checkpoint

    source = resolve_weights(family, model.variant, weights)
    if source.kind == "h5":
        raise ValueError(f"Cannot verify {weights!r}: open_clip cannot read .weights.h5 files.")
    config, _ = _checkpoint_config(family, source)
    if config is None:
        raise KvmmError(f"{source.label} has no {family.config_file} to build open_clip from.")
    text = model.text_model
    reference = build_open_clip(config.get("model_cfg", config), dict(
        vocab_size=text.vocabulary_size, hidden_size=text.hidden_dim,
        num_hidden_layers=text.num_layers, num_attention_heads=text.encoder.num_heads,
        intermediate_size=text.encoder.intermediate_dim,
        max_position_embeddings=text.position_embedding.num_positions,
        layer_norm_eps=text.embeddings_layer_norm.epsilon, pad_token_id=text.pad_token_id,
        hidden_act="gelu",
    ))
    checkpoint = open_checkpoint(_fetch_checkpoint(family, source))
    state = {k: torch.from_numpy(np.ascontiguousarray(checkpoint.read(k))) for k in checkpoint.keys()}
    result = reference.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys
                  if not any(re.search(p, k) for p in family.ignored_keys)]
    if result.missing_keys or unexpected:
        raise KvmmError(
            f"open_clip could not load {source.label}: missing {result.missing_keys[:5]}, "
            f"unexpected {unexpected[:5]}."
        )
    return reference


def _verify_open_clip(model, weights, family, num_images, num_texts, seed) -> dict:
    import keras
    import torch

    reference = _open_clip_reference(model, weights, family)
    height, width = model.vision_model.image_size
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (num_images, height, width, 3)).astype("float32")
    text = model.text_model
    token_ids = np.full((num_texts, model.max_text_length), text.pad_token_id, "int32")
    for row in range(num_texts):
        length = int(rng.integers(1, model.max_text_length - 1))
        token_ids[row, : length + 2] = rng.integers(text.pad_token_id + 1, text.vocabulary_size,
                                                    length + 2)
    with torch.no_grad():
        image = reference.encode_image(torch.tensor(images).permute(0, 3, 1, 2), normalize=True)
        texts = reference.encode_text(torch.tensor(token_ids, dtype=torch.long), normalize=True)
        logits = (reference.logit_scale.exp() * image @ texts.T).numpy()
    ours = model({"images": images, "token_ids": token_ids})
    return {
        "image_embeds": float(np.abs(model.encode_images(images) - image.numpy()).max()),
        "text_embeds": float(np.abs(model.encode_texts(token_ids) - texts.numpy()).max()),
        "image_logits": float(np.abs(keras.ops.convert_to_numpy(ours["image_logits"]) - logits).max()),
    }


def verify(model, weights, family, num_images=2, num_texts=3, seed=0) -> dict:
    """Run random inputs through ``model`` and the reference model (transformers; open_clip
    for BiomedCLIP) loaded from the same checkpoint; return max abs differences of
    embeddings and logits."""
    import keras

    needs = "open_clip_torch" if family.name == "BiomedCLIP" else "transformers"
    try:
        import torch
        import transformers

        if family.name == "BiomedCLIP":
            import open_clip  # noqa: F401
    except ImportError as exc:
        raise KvmmError(f"--verify needs {needs} and torch: pip install {needs} torch") from exc
    if family.name == "BiomedCLIP":
        return _verify_open_clip(model, weights, family, num_images, num_texts, seed)
    if family.name not in REFERENCE_CLASSES:
        raise KvmmError(f"--verify does not support the {family.name} family.")
    reference_class = getattr(transformers, REFERENCE_CLASSES[family.name])
    source = _reference_source(family, model.variant, weights)
    reference = reference_class.from_pretrained(source).eval()
    height, width = model.vision_model.image_size
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (num_images, height, width, 3)).astype("float32")
    token_ids = rng.integers(0, model.vocabulary_size, (num_texts, model.max_text_length))
    token_ids = token_ids.astype("int32")
    reference_size = reference.config.vision_config.image_size
    with torch.no_grad():
        ref = reference(
            input_ids=torch.tensor(token_ids, dtype=torch.long),
            pixel_values=torch.tensor(images).permute(0, 3, 1, 2),
            interpolate_pos_encoding=(height, width) != (reference_size, reference_size),
        )
    ours = model({"images": images, "token_ids": token_ids})
    return {
        "image_embeds": float(np.abs(model.encode_images(images) - ref.image_embeds.numpy()).max()),
        "text_embeds": float(np.abs(model.encode_texts(token_ids) - ref.text_embeds.numpy()).max()),
        "image_logits": float(
            np.abs(keras.ops.convert_to_numpy(ours["image_logits"]) - ref.logits_per_image.numpy()).max()
        ),
    }


def convert(variant, weights, out, input_shape=None, verify=False, tolerance=1e-4,
            family=None, log=print, verifier=None):
    """Build ``variant`` with ``weights``, optionally verify it (``verifier``, default
    :func:`verify`), and save it atomically to ``out`` (a ``.weights.h5`` path).

    Returns the verification report (a dict of max abs differences) or ``None``.
    """
    family = family or family_of(variant)
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise KvmmError(f"--out must end with '.weights.h5', got {out.name!r}.")
    model = create_model(family, variant, weights=weights, input_shape=input_shape)
    report = None
    if verify:
        reference_name = "open_clip" if family.name == "BiomedCLIP" else "transformers"
        report = (verifier or globals()["verify"])(model, weights, family)
        for key, value in report.items():
            log(f"  max |kvmm - {reference_name}| {key:>14}: {value:.2e}")
        worst = max(report["image_embeds"], report["text_embeds"])
        if worst > tolerance:
            raise KvmmError(
                f"Verification failed: embeddings differ by {worst:.2e} > {tolerance:.0e}."
            )
    save_weights_atomic(model, out)
    log(f"Wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {model.count_params():,} parameters)")
    return report
