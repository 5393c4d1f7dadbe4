"""Convert a checkpoint to a Keras ``.weights.h5`` file and verify it against transformers.

The engine behind ``kvmm convert`` and ``conversion/convert.py``; the key maps are the ones
the library loads with (``kvmm/models/<family>/convert.py``).
"""

from __future__ import annotations

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


#: transformers class that each kvmm family is checked against.
REFERENCE_CLASSES = {"SigLIP": "SiglipModel", "CLIP": "CLIPModel"}


def _reference_source(family, variant, weights) -> str:
    """What ``from_pretrained`` should load for the same ``weights=`` argument."""
    source = resolve_weights(family, variant, weights)
    if source.kind == "folder":
        return str(Path(source.path))
    if source.kind in ("named", "hub"):
        return source.repo_id
    raise ValueError(f"Cannot verify {weights!r}: transformers cannot read {source.kind} files.")


def verify(model, weights, family, num_images=2, num_texts=3, seed=0) -> dict:
    """Run random inputs through ``model`` and the transformers model loaded from the same
    checkpoint; return max abs differences of embeddings and logits."""
    import keras

    try:
        import torch
        import transformers
    except ImportError as exc:
        raise KvmmError("--verify needs transformers and torch: pip install transformers torch") from exc
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
        report = (verifier or globals()["verify"])(model, weights, family)
        for key, value in report.items():
            log(f"  max |kvmm - transformers| {key:>14}: {value:.2e}")
        worst = max(report["image_embeds"], report["text_embeds"])
        if worst > tolerance:
            raise KvmmError(
                f"Verification failed: embeddings differ by {worst:.2e} > {tolerance:.0e}."
            )
    save_weights_atomic(model, out)
    log(f"Wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {model.count_params():,} parameters)")
    return report
