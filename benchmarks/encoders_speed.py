#!/usr/bin/env python
"""kvmm image-text encoders on CPU (Keras 3 on JAX, TensorFlow, PyTorch) against their references.

One command measures, for each model (``--model siglip-base16|clip-b32|biomedclip-b16|all``,
default all), on the machine it runs on and in the same run:

* throughput: images/s of ``model.encode_images`` and texts/s of ``model.encode_texts`` at
  several batch sizes for every Keras backend, next to the reference: transformers'
  ``get_image_features`` / ``get_text_features`` (SigLIP, CLIP) or open_clip's
  ``encode_image`` / ``encode_text`` (BiomedCLIP), PyTorch, with the same L2 normalisation;
* load time and memory: ``<Variant>(weights=<checkpoint folder>)`` (conversion from the
  reference checkpoint), ``<Variant>(weights=<named weight>)`` from a Hugging Face cache
  holding the checkpoint, first (converting into an empty kvmm cache) and second (from
  kvmm's converted cache) load, and the reference's own load
  (``<HF model>.from_pretrained(<folder>)``; open_clip: ``CustomTextCLIP`` from
  ``open_clip_config.json`` + ``load_checkpoint``).

Every measurement runs in a fresh subprocess of this script (the Keras backend is fixed per
process, and peak RSS is per process). All subprocesses get the same CPU settings: the same
CPU affinity (the first ``--threads`` cores, default all) and the same intra-op thread count
for PyTorch, TensorFlow and OpenMP/MKL; XLA (JAX) sizes its pool from the affinity mask.

The checkpoints have random weights with the real architectures (speed does not depend on
the values); they are built with transformers / open_clip and reused with
``--checkpoint DIR``.

    python benchmarks/encoders_speed.py                       # all models, full runs
    python benchmarks/encoders_speed.py --model clip-b32      # one model
    python benchmarks/encoders_speed.py --families biomedclip # one family
    python benchmarks/encoders_speed.py --quick               # smoke run: batch 2, 1 repetition
    python benchmarks/encoders_speed.py --checkpoint /tmp/bench_ckpt   # build once, reuse

Results go to ``benchmarks/results/<model>_cpu.md`` (``--out`` for a single model), with the
raw numbers next to it as ``.json``. ``benchmarks/siglip_speed.py`` is an alias for
``--model siglip-base16``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT_MARK = "@@ENCODERS_SPEED_RESULT@@"
IMAGE_SIZE = 224
BACKENDS = ("jax", "tensorflow", "torch")
MODALITIES = ("images", "texts")
PARITY_ROWS = 2  # embeddings compared with the reference: the same network ran
CONTENTION_MARGIN = 0.75  # load average above the cores used by this much: other work ran
TEXT_BODY_TOKENS = (5, 20)  # random "words" per text, before EOS and padding

# The benchmarked models and their reference implementations ("reference": a key of
# REFERENCES: "hf" = transformers, "open_clip"). Unset transformers config values are
# transformers' defaults, which are the released checkpoints' architectures.
#: Vision tower geometry of a ViT-B with a class token and no pooling head (CLIP,
#: BiomedCLIP), for the FLOP count (% of the machine's matmul rate).
VIT_B = dict(width=768, mlp=3072, layers=12, class_token=True, map_head=False)
MODELS = {
    "siglip-base16": dict(
        title="SigLIP Base/16-224",
        # google/siglip-base-patch16-224: 768 wide, 12 layers, 12 heads, MLP 3072, text
        # 64 tokens, vocabulary 32000.
        result_stem="siglip_base",  # results/siglip_base_cpu.md (name kept from before)
        kvmm_module="kvmm.models.siglip",
        kvmm_class="SigLIPBaseP16",
        # the named weight whose Hub repo the checkpoint poses as for the cached-load rows
        named=("google_224", "google/siglip-base-patch16-224"),
        reference="hf",
        hf_config_class="SiglipConfig",
        hf_model_class="SiglipModel",
        family="siglip",
        image_size=IMAGE_SIZE,
        patch_size=16,
        vision=dict(VIT_B, class_token=False, map_head=True),
        folder_name="siglip-base-patch16-224-random",
        # SigLIP's tokenizer: text tokens + EOS (1), padded to 64 with the pad id (1).
        text=dict(length=64, bos=None, eos=1, pad=1, low=2, high=32000),
        text_note="random token ids + EOS (1), padded to 64 with the pad id 1 (what SigLIP's "
                  "tokenizer with `padding=\"max_length\"` produces)",
        image_note="random images in [-1, 1] (the SigLIP processor's range)",
    ),
    "clip-b32": dict(
        title="CLIP ViT-B/32-224",
        # openai/clip-vit-base-patch32: image tower 768 wide, 12 layers, 12 heads; text tower
        # 512 wide, 12 layers, 8 heads, 77 tokens, vocabulary 49408; 512-d embeddings.
        result_stem="clip_b32",
        kvmm_module="kvmm.models.clip",
        kvmm_class="ClipVitBase32",
        named=("openai_224", "openai/clip-vit-base-patch32"),
        reference="hf",
        hf_config_class="CLIPConfig",
        hf_model_class="CLIPModel",
        family="clip",
        image_size=IMAGE_SIZE,
        patch_size=32,
        vision=VIT_B,
        folder_name="clip-vit-base-patch32-random",
        # CLIP's tokenizer: BOS (49406) + tokens + EOS (49407), padded to 77 with EOS.
        text=dict(length=77, bos=49406, eos=49407, pad=49407, low=0, high=49406),
        text_note="BOS + random token ids + EOS, padded to 77 with EOS (what CLIP's tokenizer "
                  "with `padding=\"max_length\"` produces); no attention mask on either side "
                  "(the causal mask already hides the padding from the pooled EOS position)",
        image_note="random images in [-1, 1] (about the CLIP processor's range)",
    ),
    "biomedclip-b16": dict(
        title="BiomedCLIP ViT-B/16-224",
        # microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224: open_clip CustomTextCLIP,
        # timm ViT-B/16 (768 wide, 12 layers, 12 heads, class token) + PubMedBERT-base
        # (768 wide, 12 layers, 256 tokens, vocabulary 30522), 512-d embeddings.
        result_stem="biomedclip_b16",
        kvmm_module="kvmm.models.biomedclip",
        kvmm_class="BiomedClipVitBase16",
        named=("microsoft_224", "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"),
        reference="open_clip",
        # open_clip_config.json of the Hub repo (what the saved checkpoint carries) ...
        open_clip_config=dict(
            model_cfg=dict(
                embed_dim=512,
                vision_cfg=dict(timm_model_name="vit_base_patch16_224",
                                timm_model_pretrained=False, timm_pool="", timm_proj="linear",
                                image_size=IMAGE_SIZE),
                text_cfg=dict(
                    hf_model_name="microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                    hf_tokenizer_name="microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                    hf_proj_type="mlp", hf_pooler_type="cls_last_hidden_state_pooler",
                    context_length=256),
            ),
            preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073],
                                std=[0.26862954, 0.26130258, 0.27577711]),
        ),
        # ... and the config.json of its text_cfg.hf_model_name (PubMedBERT-base), which
        # open_clip reads to build the BERT tower; written locally (transformers BertConfig).
        bert_config=dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072,
                         max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                         pad_token_id=0, hidden_act="gelu"),
        family="biomedclip",
        image_size=IMAGE_SIZE,
        patch_size=16,
        vision=VIT_B,
        folder_name="biomedclip-pubmedbert-256-vit-base-patch16-224-random",
        # BiomedCLIP's tokenizer (BERT WordPiece): [CLS] (2) + tokens + [SEP] (3), padded
        # to 256 with [PAD] (0); ids 0-4 are the special tokens.
        text=dict(length=256, bos=2, eos=3, pad=0, low=5, high=30522),
        text_note="[CLS] (2) + random token ids + [SEP] (3), padded to 256 with [PAD] (0) "
                  "(what BiomedCLIP's BERT tokenizer produces); the attention mask "
                  "`token_ids != 0` is derived from the ids on both sides",
        image_note="random images in [-1, 1] (about the CLIP mean/std normalisation's range)",
    ),
}
# SigLIP Base/16 at the other checkpoint resolutions (google/siglip-base-patch16-256/384/
# 512): the same weights shapes but for the position table, 256 / 576 / 1024 image tokens
# instead of 196, to show how the cost grows with the number of tokens.
for _size in (256, 384, 512):
    MODELS[f"siglip-base16-{_size}"] = dict(
        MODELS["siglip-base16"],
        title=f"SigLIP Base/16-{_size}",
        result_stem=f"siglip_base_{_size}",
        image_size=_size,
        folder_name=f"siglip-base-patch16-{_size}-random",
        named=(f"google_{_size}", f"google/siglip-base-patch16-{_size}"),
    )
# SigLIP So400m/14-224 (google/siglip-so400m-patch14-224: 1152 wide, 27 layers, 16 heads,
# MLP 4304, 16 text positions): 878M parameters, 3.5 GB in float32, for the peak memory of
# converting a large checkpoint (issue: no second full copy). Not in "all" (slow);
# ``--model siglip-so400m14 --batches 1 --modalities images`` measures its load rows.
_SO400M_TOWER = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                     num_attention_heads=16)
MODELS["siglip-so400m14"] = dict(
    MODELS["siglip-base16"],
    title="SigLIP So400m/14-224",
    result_stem="siglip_so400m",
    kvmm_class="SigLIPSo400mP14",
    named=("google_224", "google/siglip-so400m-patch14-224"),
    patch_size=14,
    vision=dict(width=1152, mlp=4304, layers=27, class_token=False, map_head=True),
    hf_config=dict(vision_config=dict(image_size=IMAGE_SIZE, patch_size=14, **_SO400M_TOWER),
                   text_config=dict(_SO400M_TOWER, max_position_embeddings=16)),
    folder_name="siglip-so400m-patch14-224-random",
    text=dict(length=16, bos=None, eos=1, pad=1, low=2, high=32000),
    width=1152,
)
#: ``--families``: which models each family stands for (the first one is ``--quick``'s).
FAMILIES = {
    "siglip": ["siglip-base16", "siglip-base16-256", "siglip-base16-384", "siglip-base16-512"],
    "clip": ["clip-b32"],
    "biomedclip": ["biomedclip-b16"],
}
#: Only run when named with --model.
SLOW_MODELS = ("siglip-so400m14",)
UNITS = {"images": "images/s", "texts": "texts/s"}
DEFAULT_BATCHES = {"images": "1,8,32", "texts": "1,32,256"}
QUICK_BATCHES = {"images": "2", "texts": "2"}


def _default_out(model: str, quick: bool, folder: Path | None = None) -> Path:
    stem = MODELS[model]["result_stem"] + ("_cpu_quick" if quick else "_cpu")
    return (folder or HERE / "results") / f"{stem}.md"


# =========================================================================================
# Helpers shared by the parent and the workers (standard library only)
# =========================================================================================
def _rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> str:
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return " ".join(w for w in wanted if w in flags) or "-"
    except OSError:
        pass
    return "unknown"


def _mem_total_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode == 0:
            return out.stdout.strip() + (" (with local changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "-"


# =========================================================================================
# Workers (run as ``encoders_speed.py --worker '<json spec>'``)
# =========================================================================================
def _apply_cpu_settings(threads: int) -> None:
    """Pin to the first ``threads`` allowed cores; framework thread counts follow."""
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[:threads])


def _set_framework_threads(threads: int, frameworks: set[str]) -> None:
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(threads)
    if "tensorflow" in frameworks:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)


def _random_images(n: int, size: int = IMAGE_SIZE):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, size=(n, size, size, 3)).astype("float32")


def _random_token_ids(text: dict, n: int):
    """Token ids shaped like the family's tokenizer output with ``padding="max_length"``."""
    import numpy as np

    rng = np.random.default_rng(1)
    ids = np.full((n, text["length"]), text["pad"], dtype="int32")
    for row in ids:
        body = rng.integers(text["low"], text["high"], size=rng.integers(
            TEXT_BODY_TOKENS[0], TEXT_BODY_TOKENS[1] + 1)).tolist()
        tokens = ([text["bos"]] if text["bos"] is not None else []) + body + [text["eos"]]
        row[: len(tokens)] = tokens
    return ids


# ---- the reference checkpoints: built once (random weights, real architecture) ----------
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _randomize(model) -> None:
    """Every parameter N(0, 0.02), LayerNorms 1 / 0 (what the initialisers do; keeps the
    activations in a realistic range for the parity check)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.empty(p.shape).normal_(0.0, 0.02, generator=generator))
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()


def _hf_config(model_cfg: dict) -> dict:
    if "hf_config" in model_cfg:
        return model_cfg["hf_config"]
    return dict(vision_config=dict(image_size=model_cfg["image_size"],
                                   patch_size=model_cfg["patch_size"]), text_config=dict())


def _not_this_model(model_cfg: dict, config: Path):
    raise SystemExit(f"{config.parent} is not a {model_cfg['title']} checkpoint ({config}).")


def _hf_checkpoint_complete(model_cfg: dict, folder: Path) -> bool:
    """Whether ``folder`` holds the model's HF checkpoint (one of another model stops)."""
    config = folder / "config.json"
    if not (config.is_file() and (folder / "model.safetensors").is_file()):
        return False
    try:
        data = json.loads(config.read_text())
    except ValueError:
        return False
    vision = data.get("vision_config", {})
    if data.get("model_type") != model_cfg["family"] or (
        vision.get("image_size") != model_cfg["image_size"]
        or vision.get("patch_size") != model_cfg["patch_size"]
        or vision.get("hidden_size", 768) != model_cfg.get("width", 768)
    ):
        _not_this_model(model_cfg, config)
    return True


def _hf_build(model_cfg: dict, folder: Path) -> int:
    import transformers
    from transformers.initialization import no_init_weights

    config_class = getattr(transformers, model_cfg["hf_config_class"])
    model_class = getattr(transformers, model_cfg["hf_model_class"])
    # Skip transformers' (slow) initialisers; _randomize fills every parameter instead.
    with no_init_weights():
        model = model_class(config_class(**_hf_config(model_cfg))).eval()
    _randomize(model)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def _open_clip_weights(folder: Path) -> Path | None:
    return next((folder / n for n in OPEN_CLIP_WEIGHTS if (folder / n).is_file()), None)


def _open_clip_checkpoint_complete(model_cfg: dict, folder: Path) -> bool:
    """Whether ``folder`` holds the model's open_clip checkpoint (one of another model
    stops)."""
    config = folder / OPEN_CLIP_CONFIG
    if not (config.is_file() and _open_clip_weights(folder) and (folder / "vocab.txt").is_file()):
        return False
    try:
        vision = json.loads(config.read_text())["model_cfg"]["vision_cfg"]
    except (ValueError, KeyError):
        return False
    expected = model_cfg["open_clip_config"]["model_cfg"]["vision_cfg"]
    if any(vision.get(k) != expected[k] for k in ("timm_model_name", "image_size")):
        _not_this_model(model_cfg, config)
    return True


def _write_bert_config(model_cfg: dict, folder: str) -> None:
    """The config.json open_clip reads from ``text_cfg.hf_model_name`` (the Hub's
    PubMedBERT config in real use), as a local folder."""
    from transformers import BertConfig

    BertConfig(**model_cfg["bert_config"]).save_pretrained(folder)


def _open_clip_model(open_clip_cfg: dict, bert_folder: str):
    """open_clip's ``CustomTextCLIP`` as ``create_model`` builds it for an
    ``open_clip_config.json`` ``model_cfg`` when a full checkpoint follows (no tower
    weights downloaded), with the BERT config read from ``bert_folder``."""
    import copy

    from open_clip.model import CustomTextCLIP

    cfg = copy.deepcopy(open_clip_cfg)
    cfg["vision_cfg"]["timm_model_pretrained"] = False
    cfg["text_cfg"].update(hf_model_name=bert_folder, hf_tokenizer_name=bert_folder,
                           hf_model_pretrained=False)
    return CustomTextCLIP(**cfg, cast_dtype=None)


def _open_clip_build(model_cfg: dict, folder: Path) -> int:
    """The Hub repo's layout: open_clip_config.json (with the real names), the state dict
    as open_clip_pytorch_model.bin (torch.save), and a vocab.txt of the right size."""
    import torch

    config = model_cfg["open_clip_config"]
    with tempfile.TemporaryDirectory(prefix="encoders_speed_bert_") as bert_folder:
        _write_bert_config(model_cfg, bert_folder)
        model = _open_clip_model(config["model_cfg"], bert_folder).eval()
    _randomize(model)
    (folder / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2))
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()},
               folder / "open_clip_pytorch_model.bin")
    # PubMedBERT's special tokens first; the rest only fills the vocabulary to its size
    # (the benchmark feeds token ids, nothing is tokenized).
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = special + [f"[unused{i}]" for i in range(model_cfg["bert_config"]["vocab_size"]
                                                     - len(special))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return sum(p.numel() for p in model.parameters())


def _checkpoint_complete(model: str, folder: Path) -> bool:
    model_cfg = MODELS[model]
    return REFERENCES[model_cfg["reference"]]["complete"](model_cfg, folder)


def _worker_prepare(spec: dict) -> dict:
    """Build the reference checkpoint (random weights, real architecture)."""
    model_cfg = MODELS[spec["model"]]
    folder = Path(spec["folder"])
    result = {}
    if not _checkpoint_complete(spec["model"], folder):
        start = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        result["num_parameters"] = REFERENCES[model_cfg["reference"]]["build"](model_cfg, folder)
        result["hf_build_s"] = time.perf_counter() - start
    return result


# ---- the engines: how each one is started, loaded, read and called (in a worker) --------
class _KvmmEngine:
    """``<Variant>(weights=...)`` on this process's Keras backend; ``encode_images`` /
    ``encode_texts`` (Keras ``predict``; on TensorFlow one ``tf.function`` per tower)."""

    def __init__(self, model_cfg: dict, spec: dict):
        import importlib

        import keras

        self.keras = keras
        self.builder = getattr(importlib.import_module(model_cfg["kvmm_module"]),
                               model_cfg["kvmm_class"])
        self.backend = keras.backend.backend()
        assert self.backend == spec["backend"], (self.backend, spec["backend"])
        _set_framework_threads(spec["threads"], {self.backend})
        # One tiny op so that the backend's lazy runtime start (XLA client, TF eager
        # context) is not counted as loading.
        keras.ops.convert_to_numpy(keras.ops.add(keras.ops.ones((2,)), 1.0))

    def load(self, spec: dict) -> None:
        # "first" / "cache": the named weight, from a Hugging Face cache holding the
        # checkpoint as its repo; first load (empty KVMM_CACHE) or second load.
        named = spec["source"] in ("cache", "first")
        self.model = self.builder(weights=spec["named"] if named else spec["folder"])

    def read_weights(self) -> tuple[float, int]:
        import numpy as np

        ops = self.keras.ops
        checksum = sum(float(ops.convert_to_numpy(ops.sum(ops.abs(w.value))))
                       for w in self.model.weights)
        return checksum, int(sum(int(np.prod(w.shape)) for w in self.model.weights))

    def info(self) -> dict:
        if self.backend != "torch":
            return {}
        import torch

        return {"num_threads": torch.get_num_threads()}

    def encoder(self, modality: str, inputs):
        method = self.model.encode_images if modality == "images" else self.model.encode_texts
        return inputs, lambda x, b: method(x, batch_size=b)

    def after_warmup(self) -> dict:
        return {"jit_compile": {
            "images": repr(getattr(self.model.vision_model, "jit_compile", None)),
            "texts": repr(getattr(self.model.text_model, "jit_compile", None)),
        }}


class _TorchReference:
    """A PyTorch reference, float32 under ``torch.inference_mode()``: channels-first
    images and int64 token ids (what its preprocessing returns; converted once, outside
    the timed region), embeddings L2-normalized and converted to NumPy like kvmm's."""

    def __init__(self, model_cfg: dict, spec: dict):
        import torch

        self.torch = torch
        _set_framework_threads(spec["threads"], {"torch"})
        torch.ones(2).add_(1.0)

    def read_weights(self) -> tuple[float, int]:
        with self.torch.inference_mode():
            checksum = sum(
                float(t.abs().sum()) for t in (*self.model.parameters(), *self.model.buffers())
                if t.is_floating_point()
            )
        return checksum, int(sum(p.numel() for p in self.model.parameters()))

    def info(self) -> dict:
        return {"attn_implementation": self.attention(),
                "num_threads": self.torch.get_num_threads()}

    def encoder(self, modality: str, inputs):
        import numpy as np

        torch = self.torch
        if modality == "images":
            prepared = torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous()
        else:
            prepared = torch.from_numpy(inputs.astype("int64"))
        features = self.features(modality)

        def encode(x, batch_size):
            chunks = []
            with torch.inference_mode():
                for i in range(0, x.shape[0], batch_size):
                    feats = features(x[i:i + batch_size])
                    feats = feats / feats.norm(dim=-1, keepdim=True)
                    chunks.append(feats.numpy())
            return np.concatenate(chunks)

        return prepared, encode

    def after_warmup(self) -> dict:
        return {}


class _TransformersEngine(_TorchReference):
    """``<HF model>.from_pretrained(folder)``; ``get_image_features`` /
    ``get_text_features``, the output's ``pooler_output`` (transformers >= 5)."""

    def __init__(self, model_cfg: dict, spec: dict):
        import transformers

        self.model_class = getattr(transformers, model_cfg["hf_model_class"])
        super().__init__(model_cfg, spec)

    def load(self, spec: dict) -> None:
        self.model = self.model_class.from_pretrained(
            spec["folder"], dtype=self.torch.float32).eval()

    def attention(self):
        return getattr(self.model.config, "_attn_implementation", None)

    def features(self, modality: str):
        if modality == "images":
            method, argument = self.model.get_image_features, "pixel_values"
        else:
            method, argument = self.model.get_text_features, "input_ids"

        def features(x):
            feats = method(**{argument: x})
            return feats if isinstance(feats, self.torch.Tensor) else feats.pooler_output

        return features


class _OpenClipEngine(_TorchReference):
    """What ``open_clip.create_model_from_pretrained("hf-hub:...")`` does once the files
    are downloaded: ``CustomTextCLIP`` from ``open_clip_config.json`` (timm ViT, BERT from
    its config, both randomly initialised), then ``open_clip.load_checkpoint``
    (``torch.load(weights_only=True)`` + ``load_state_dict``); ``encode_image`` /
    ``encode_text``."""

    def __init__(self, model_cfg: dict, spec: dict):
        import open_clip
        import transformers  # noqa: F401  (open_clip's BERT tower)

        self.open_clip = open_clip
        super().__init__(model_cfg, spec)
        # The BERT config open_clip reads for text_cfg.hf_model_name, from the Hugging Face
        # cache in real use; written here, before the timed load.
        self.bert_folder = tempfile.TemporaryDirectory(prefix="encoders_speed_bert_")
        _write_bert_config(model_cfg, self.bert_folder.name)

    def load(self, spec: dict) -> None:
        folder = Path(spec["folder"])
        config = json.loads((folder / OPEN_CLIP_CONFIG).read_text())
        self.model = _open_clip_model(config["model_cfg"], self.bert_folder.name)
        self.open_clip.load_checkpoint(self.model, str(_open_clip_weights(folder)),
                                       strict=True, weights_only=True)
        self.model.eval()

    def attention(self):
        fused = getattr(self.model.visual.trunk.blocks[0].attn, "fused_attn", None)
        bert = getattr(self.model.text.transformer.config, "_attn_implementation", None)
        return f"ViT fused_attn={fused}, BERT {bert}"

    def features(self, modality: str):
        return self.model.encode_image if modality == "images" else self.model.encode_text


def _worker_run(spec: dict) -> dict:
    """Load one model in this fresh process (timed, with peak RSS), then optionally warm up
    the encoders and time single calls on the parent's request."""
    t_start = time.perf_counter()
    model_cfg = MODELS[spec["model"]]
    out: dict = {"engine": spec["engine"], "backend": spec.get("backend"),
                 "source": spec["source"]}
    out["loadavg_start"] = _loadavg()

    # ---- imports and framework initialisation (not part of the load time) ----
    import numpy as np

    engine = ENGINES[spec["engine"]](model_cfg, spec)
    out["import_s"] = time.perf_counter() - t_start
    out["rss_after_imports"] = _rss_bytes()
    out["peak_rss_before_load"] = _peak_rss_bytes()

    # ---- load ----
    start = time.perf_counter()
    engine.load(spec)
    out["load_s"] = time.perf_counter() - start
    out["peak_rss_after_load"] = _peak_rss_bytes()
    out["rss_after_load"] = _rss_bytes()
    # Read every weight once. transformers memory-maps the safetensors file, so its
    # weights only become resident when first used; this makes the memory figures
    # comparable (kvmm's and open_clip's weights are resident after the load already).
    start = time.perf_counter()
    checksum, out["num_parameters"] = engine.read_weights()
    out["read_weights_s"] = time.perf_counter() - start
    out["weights_checksum"] = checksum
    out["peak_rss_after_read"] = _peak_rss_bytes()
    out["rss_after_read"] = _rss_bytes()
    out.update(engine.info())
    out["affinity"] = sorted(os.sched_getaffinity(0))

    # ---- throughput ----
    batches = {m: b for m, b in (spec.get("batches") or {}).items() if b}
    if not batches:
        out["loadavg_end"] = _loadavg()
        return out
    per_call = spec["batches_per_call"]
    prepared, encoders = {}, {}
    for modality, sizes in batches.items():
        n = max(sizes) * per_call
        if modality == "images":
            inputs = _random_images(n, model_cfg["image_size"])
        else:
            inputs = _random_token_ids(model_cfg["text"], n)
        prepared[modality], encoders[modality] = engine.encoder(modality, inputs)

    # Warm up (the first call compiles on JAX/TensorFlow), then report ready and time
    # single calls on the parent's request, so the parent can interleave the engines'
    # timed calls (other load on the machine then hits all engines alike).
    out["warmup"], out["parity"] = {}, {}
    for modality, sizes in batches.items():
        out["warmup"][modality] = {}
        for b in sizes:
            x = prepared[modality][: b * per_call]
            t0 = time.perf_counter()
            emb = encoders[modality](x, b)
            first_call_s = time.perf_counter() - t0
            for _ in range(spec["extra_warmup"]):
                encoders[modality](x, b)
            out["warmup"][modality][str(b)] = {"first_call_s": first_call_s}
            if modality not in out["parity"]:
                out["parity"][modality] = np.asarray(emb[:PARITY_ROWS], dtype="float64").tolist()
    out.update(engine.after_warmup())
    out["peak_rss_after_warmup"] = _peak_rss_bytes()
    out["rss_after_warmup"] = _rss_bytes()
    out["loadavg_end"] = _loadavg()
    _emit(out)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        modality, b = request["modality"], int(request["batch"])
        x = prepared[modality][: b * per_call]
        t0 = time.perf_counter()
        encoders[modality](x, b)
        seconds = time.perf_counter() - t0
        _emit({"modality": modality, "batch": b, "items": b * per_call, "seconds": seconds,
               "loadavg": _loadavg()})
    return {"peak_rss_end": _peak_rss_bytes(), "loadavg_end": _loadavg()}


#: The reference implementations. The key is the record's "engine" in the results ("hf"
#: for transformers, as in earlier runs); the texts are the report's wording.
REFERENCES = {
    "hf": dict(
        engine=_TransformersEngine, complete=_hf_checkpoint_complete, build=_hf_build,
        name="transformers",
        possessive="transformers'",
        label="transformers (PyTorch)",
        image_call="`{hf_model_class}.get_image_features(pixel_values=...)`",
        text_call="`{hf_model_class}.get_text_features(input_ids=...)`",
        call_note="transformers, float32, attention `{attention}`; the projected embedding is "
                  "the output's `pooler_output`",
        load_call="`{hf_model_class}.from_pretrained`",
        load_note="transformers memory-maps the safetensors file, so its weights become "
                  "resident only when first used (the column *right after load*)",
        folder="HF folder (`from_pretrained`)",
        kvmm_folder="HF folder (safetensors, converted)",
        summary_folder="HF folder",
        summary_load="transformers' `from_pretrained`",
        built="built with transformers (`{hf_model_class}({hf_config_class}(...))`) and saved "
              "with `save_pretrained`",
    ),
    "open_clip": dict(
        engine=_OpenClipEngine, complete=_open_clip_checkpoint_complete,
        build=_open_clip_build,
        name="open_clip",
        possessive="open_clip's",
        label="open_clip (PyTorch)",
        image_call="open_clip's `CustomTextCLIP.encode_image(images)`",
        text_call="`CustomTextCLIP.encode_text(token_ids)`",
        call_note="open_clip, float32, attention: {attention}; both return the projected "
                  "embedding",
        load_call="open_clip `CustomTextCLIP(**model_cfg)` (from `open_clip_config.json`) + "
                  "`open_clip.load_checkpoint` (`torch.load(weights_only=True)` + "
                  "`load_state_dict`; what `create_model_from_pretrained` does after the "
                  "download)",
        load_note="open_clip first builds the model with random initialisation (timm's and "
                  "transformers' initialisers), then copies in the tensors `torch.load` read, "
                  "so its weights are resident after the load",
        folder="open_clip folder (`torch.load` + `load_state_dict`)",
        kvmm_folder="open_clip folder (`.bin` pickle, converted)",
        summary_folder="open_clip folder",
        summary_load="open_clip's load (`CustomTextCLIP` + `load_checkpoint`)",
        built="built with open_clip (`CustomTextCLIP(**model_cfg)` from the Hub's "
              "`open_clip_config.json`, PubMedBERT's `BertConfig` written locally for "
              "`hf_model_name`) and saved with `torch.save(state_dict)` as "
              "`open_clip_pytorch_model.bin`",
    ),
}
#: The worker classes by record name.
ENGINES = {"kvmm": _KvmmEngine, **{k: v["engine"] for k, v in REFERENCES.items()}}


def _emit(obj: dict) -> None:
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _worker_matmul(spec: dict) -> dict:
    """float32 matmul rate (GFLOP/s) of this machine with the same thread settings: the best
    of NumPy (its BLAS), PyTorch and JAX (XLA) on square matrices."""
    import numpy as np

    n, repeats = spec.get("matmul_size", 2048), spec.get("matmul_repeats", 5)
    flops = 2.0 * n**3
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    candidates = {"numpy": lambda: a @ b}
    import torch

    _set_framework_threads(spec["threads"], {"torch"})
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    candidates["torch"] = lambda: torch.mm(ta, tb)
    import jax
    import jax.numpy as jnp

    ja, jb = jnp.asarray(a), jnp.asarray(b)
    jdot = jax.jit(jnp.dot)
    candidates["jax"] = lambda: jdot(ja, jb).block_until_ready()
    rates = {}
    for name, run in candidates.items():
        run()
        run()
        best = min(_timed(run) for _ in range(repeats))
        rates[name] = flops / best / 1e9
    return {"matmul_size": n, "gflops": rates, "loadavg": _loadavg()}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _vision_gflops(model: str) -> float:
    """GFLOPs (2 x multiply-adds of the matmuls and convolutions) of one image through the
    vision tower; elementwise work (LayerNorm, GELU, softmax) is not counted."""
    cfg = MODELS[model]
    v, patch = cfg["vision"], cfg["patch_size"]
    width, mlp, layers = v["width"], v["mlp"], v["layers"]
    grid = cfg["image_size"] // patch
    tokens = grid * grid + (1 if v["class_token"] else 0)
    flops = 2 * grid * grid * patch * patch * 3 * width                # patch embedding
    per_layer = (2 * tokens * 4 * width * width                        # q, k, v, out
                 + 2 * 2 * tokens * tokens * width                     # scores, weighted sum
                 + 2 * 2 * tokens * width * mlp)                       # MLP
    flops += layers * per_layer
    if v["map_head"]:  # SigLIP's attention-pooling head: k/v over all tokens, one query
        flops += 2 * 2 * tokens * width * width + 2 * 2 * tokens * width
        flops += 2 * (2 * width * width + 2 * width * mlp)
    return flops / 1e9


def _worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    _apply_cpu_settings(spec["threads"])
    if spec["task"] == "prepare":
        result = _worker_prepare(spec)
    elif spec["task"] == "matmul":
        result = _worker_matmul(spec)
    else:
        result = _worker_run(spec)
    _emit(result)


# =========================================================================================
# Parent
# =========================================================================================
def _install_as_hub_repo(folder: Path, repo_id: str, hub: Path) -> None:
    """Expose ``folder``'s files as ``repo_id`` in a Hugging Face cache at ``hub``, laid out
    as a download leaves it (``blobs/<file>``, linked from ``snapshots/<commit>/<file>``,
    ``refs/main``). The blobs are hard links to ``folder``'s files (copies across file
    systems), so kvmm sees files of the Hugging Face cache itself, as after a real download."""
    revision = "0" * 40
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for file in folder.iterdir():
        blob = repo / "blobs" / file.name
        if not blob.exists():
            try:
                os.link(file.resolve(), blob)
            except OSError:
                shutil.copyfile(file, blob)
        if not (snapshot / file.name).exists():
            os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)


def _worker_env(threads: int, backend: str | None) -> dict:
    env = dict(os.environ)
    n = str(threads)
    env.update(
        OMP_NUM_THREADS=n,
        MKL_NUM_THREADS=n,
        OPENBLAS_NUM_THREADS=n,
        TF_NUM_INTRAOP_THREADS=n,
        KVMM_CACHE="off",  # folder loads are never cached; keep the run side-effect free
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        TOKENIZERS_PARALLELISM="false",
        JAX_PLATFORMS="cpu",
        CUDA_VISIBLE_DEVICES="",
        PYTHONWARNINGS="ignore",
    )
    if backend:
        env["KERAS_BACKEND"] = backend
    else:
        env.pop("KERAS_BACKEND", None)
    return env


def _log(message: str) -> None:
    print(f"[encoders_speed] {message}", file=sys.stderr, flush=True)


class _Worker:
    """A subprocess of this script, talking JSON lines over stdin/stdout."""

    def __init__(self, spec: dict, backend: str | None, timeout: float, label: str):
        self.label, self.timeout = label, timeout
        _log(f"{label} ...")
        self.start = time.perf_counter()
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
            env={**_worker_env(spec["threads"], backend), **(spec.get("env") or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.tail: list[str] = []
        self.messages: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(RESULT_MARK):
                self.messages.put(json.loads(line[len(RESULT_MARK):]))
            else:
                self.tail = (self.tail + [line])[-50:]
        self.messages.put(None)

    def fail(self, why: str):
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        self.stderr.seek(0)
        sys.stderr.write("".join(self.tail) + "\n" + self.stderr.read()[-8000:] + "\n")
        raise SystemExit(f"[encoders_speed] {self.label} failed: {why}")

    def receive(self) -> dict:
        try:
            message = self.messages.get(timeout=self.timeout)
        except queue.Empty:
            self.fail(f"no answer within {self.timeout:.0f}s")
        if message is None:
            self.fail(f"exit code {self.proc.wait()}")
        return message

    def request(self, obj: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            self.fail(str(exc))
        return self.receive()

    def finish(self, quit_message: bool = False) -> dict | None:
        final = self.request({"quit": True}) if quit_message else None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        code = self.proc.wait()
        if code != 0:
            self.fail(f"exit code {code}")
        self.stderr.close()
        wall = time.perf_counter() - self.start
        _log(f"{self.label} done in {wall:.1f}s")
        return final


def _run_worker(spec: dict, backend: str | None, timeout: float, label: str) -> dict:
    """One-shot worker: its single result."""
    worker = _Worker(spec, backend, timeout, label)
    result = worker.receive()
    worker.finish()
    return result


def _median(values):
    return statistics.median(values) if values else float("nan")


def _mib(n_bytes) -> float:
    return n_bytes / 1024**2


def _cosine_gap(a, b) -> float:
    """Largest absolute difference between two sets of L2-normalized embeddings."""
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def _is_reference(r: dict) -> bool:
    return r["engine"] != "kvmm"


def _reference_run(records: list[dict]) -> dict:
    return next(r for r in records if _is_reference(r))


def _engine_label(r: dict) -> str:
    if _is_reference(r):
        return REFERENCES[r["engine"]]["label"]
    return f"kvmm / {r['backend']}"


def _reference_text(model: str, attention=None) -> dict:
    """The report's wording for the model's reference (REFERENCES), filled in."""
    model_cfg = MODELS[model]
    fields = dict(model_cfg, attention=attention)
    return {k: v.format(**fields) if isinstance(v, str) else v
            for k, v in REFERENCES[model_cfg["reference"]].items()}


def _load_groups(loads: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """Load records grouped by (engine, backend, source), in order of first appearance."""
    groups: dict[tuple, list[dict]] = {}
    for l in loads:
        groups.setdefault((l["engine"], l.get("backend"), l["source"]), []).append(l)
    return list(groups.items())


def _render(model: str, cfg: dict, env_info: dict, runs: list[dict], loads: list[dict]) -> str:
    model_cfg = MODELS[model]
    kvmm_class = model_cfg["kvmm_class"]
    hf_run = _reference_run(runs)
    n_params = hf_run.get("num_parameters", 0)
    ref = _reference_text(model, hf_run.get("attn_implementation"))
    name = ref["name"]
    lines = []
    add = lines.append
    add(f"# {model_cfg['title']} on CPU: kvmm vs {name}")
    add("")
    add(f"Generated by `{cfg['command']}` on {env_info['date']}.")
    if cfg["quick"]:
        add("")
        add("**Quick (smoke) run: tiny batches, one repetition. These figures are not "
            "meaningful throughputs; run without `--quick` for those.**")
    add("")
    add("## Machine")
    add("")
    add(f"- CPU: {env_info['cpu']} ({env_info['cpu_flags']}); {env_info['cores']} logical cores "
        f"visible, {cfg['threads']} used by every run (affinity cores {cfg['cores_used']})")
    add(f"- Memory: {env_info['mem_gib']:.1f} GiB; OS: {env_info['os']}; Python {env_info['python']}")
    add("- Versions: " + ", ".join(f"{k} {v}" for k, v in env_info["versions"].items()))
    add(f"- kvmm commit: {env_info['commit']}")
    add(f"- Load average (1 min) at start / end of this model's run: "
        f"{env_info['loadavg_start']:.2f} / {env_info['loadavg_end']:.2f}; during the timed "
        f"calls: median {cfg['loadavg_timed_median']:.2f}, max {cfg['loadavg_timed_max']:.2f} "
        f"(other processes on the machine make figures noisy)")
    if cfg["loadavg_timed_median"] > cfg["threads"] + CONTENTION_MARGIN:
        add("")
        add(f"**Other processes competed for the CPU during the timed calls** (median load "
            f"average {cfg['loadavg_timed_median']:.2f} with {cfg['threads']} core(s) used; "
            f"one engine computing alone gives about {cfg['threads']}). Under contention "
            f"PyTorch's OpenMP pool ({name} and kvmm / torch alike) slows down far more "
            f"than XLA's or TensorFlow's, so the medians favour kvmm on JAX and TensorFlow. "
            f"The *by round* columns pair each call with {ref['possessive']} call of the same round "
            f"(adjacent in time); rounds with a lower load average are the fairer comparison.")
    for modality in cfg["batches"]:
        hf_tp = {b: _median(v["items_per_s"]) for b, v in hf_run["throughput"][modality].items()}
        unit = UNITS[modality]
        noun = "image" if modality == "images" else "text"
        add("")
        add(f"## Throughput: {noun} embeddings")
        add("")
        if modality == "images":
            call = (f"`model.encode_images(images, batch_size=B)` (kvmm; Keras `predict`, "
                    f"a `tf.function` loop on TensorFlow) "
                    f"against {ref['image_call']}")
            what = f"B {model_cfg['image_note']}, {model_cfg['image_size']}px square"
        else:
            call = (f"`model.encode_texts(token_ids, batch_size=B)` (kvmm; Keras `predict`, "
                    f"a `tf.function` loop on TensorFlow) "
                    f"against {ref['text_call']}")
            what = f"B texts: {model_cfg['text_note']}"
        add(f"{call} under `torch.inference_mode()` plus L2 normalisation ({ref['call_note']}"
            f"). Each timed call encodes "
            f"{cfg['batches_per_call']} batch(es) of {what}. After "
            f"{1 + cfg['extra_warmup']} warm-up call(s) (the first one compiles), the median of "
            f"{cfg['repeats']} timed call(s) is reported, with the range. "
            + ("The engines' timed calls are interleaved (all four models loaded in their own "
               "processes, one computing at a time, order rotated every round), so load from "
               "other processes hits all engines at the same times (not equally, see below "
               "the table if it was high). " if cfg["interleaved"] else
               "Engines were timed one after the other (`--sequential`). ")
            + f"kvmm/{name} > 1 means kvmm is faster.")
        add("")
        add(f"| engine | batch | {unit} (median) | range | kvmm / {name} "
            f"| by round: kvmm / {name} | by round: load avg | first call (s) "
            "| process peak RSS (MiB) |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in runs:
            for b, v in r["throughput"][modality].items():
                med = _median(v["items_per_s"])
                ratio = med / hf_tp[b] if not _is_reference(r) else 1.0
                rng = f"{min(v['items_per_s']):.2f}-{max(v['items_per_s']):.2f}"
                hf_calls = hf_run["throughput"][modality][b]["items_per_s"]
                by_round = " / ".join(
                    f"{x / y:.2f}" for x, y in zip(v["items_per_s"], hf_calls)
                ) if not _is_reference(r) else "-"
                loads_by_round = " / ".join(f"{x:.1f}" for x in v["loadavg"])
                add(f"| {_engine_label(r)} | {b} | {med:.2f} | {rng} | {ratio:.2f} | "
                    f"{by_round} | {loads_by_round} | "
                    f"{v['first_call_s']:.1f} | {_mib(v['peak_rss']):.0f} |")
        add("")
        gaps = [f"{r['backend']} {r['parity_max_abs_diff'][modality]:.1e}"
                for r in runs if r["engine"] == "kvmm"]
        add(f"Check that the same network ran: max |difference| of the normalized {noun} "
            f"embeddings (first {PARITY_ROWS}) against {name}: {', '.join(gaps)}.")
        kvmm_runs = [r for r in runs if r["engine"] == "kvmm"]
        add("Keras `jit_compile` as resolved by `predict`: " + ", ".join(
            f"{r['backend']} {r.get('jit_compile', {}).get(modality)}" for r in kvmm_runs) + ".")
    add("")
    add("## Load time and memory")
    add("")
    add(f"Each load runs in a fresh process ({cfg['load_repeats']} process(es) per row; medians "
        f"are reported). Timed: only the `{kvmm_class}(weights=...)` / "
        f"{ref['load_call']} call, after the imports and the backend's start (shown "
        f"separately). The whole model (image and text towers, {n_params / 1e6:.0f}M "
        f"parameters, {n_params * 4 / 1e9:.1f} GB in float32) is loaded. Memory is measured "
        f"after the load and after reading every weight once: {ref['load_note']}. Peak RSS is "
        f"`ru_maxrss` (covering the load and the read); the "
        f"increase is over the RSS after the imports. Ratios are kvmm/{name} (> 1: kvmm "
        f"slower or larger).")
    add("")
    add(f"| engine | weights | load (s) | vs {name} | peak RSS (MiB) | vs {name} "
        f"| RSS increase (MiB) | vs {name} | increase right after load (MiB) "
        "| import + start (s) |")
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def increase(l):
        return l["peak_rss_after_read"] - l["rss_after_imports"]

    hf_loads = [l for l in loads if _is_reference(l)]
    hf_load_s = _median([l["load_s"] for l in hf_loads])
    hf_peak = _median([l["peak_rss_after_read"] for l in hf_loads])
    hf_incr = _median([increase(l) for l in hf_loads])
    source_label = {"folder": ref["kvmm_folder"],
                    "first": "named weight, first load (Hugging Face cache; converts into "
                             "kvmm's cache, on PyTorch uses the file as it is)",
                    "cache": "named weight, second load (kvmm's cache; PyTorch: the Hugging "
                             "Face file again)",
                    "h5": "`.weights.h5` (cached load, earlier runs)"}
    for key, group in _load_groups(loads):
        load_s = _median([l["load_s"] for l in group])
        peak = _median([l["peak_rss_after_read"] for l in group])
        incr = _median([increase(l) for l in group])
        lazy = _median([l["rss_after_load"] - l["rss_after_imports"] for l in group])
        imp = _median([l["import_s"] for l in group])
        label = _engine_label(group[0])
        src = source_label[key[2]] if key[0] == "kvmm" else ref["folder"]
        add(f"| {label} | {src} | {load_s:.2f} | {load_s / hf_load_s:.2f} | {_mib(peak):.0f} | "
            f"{peak / hf_peak:.2f} | {_mib(incr):.0f} | {incr / hf_incr:.2f} | "
            f"{_mib(lazy):.0f} | {imp:.1f} |")
    add("")
    add("## Settings")
    add("")
    add("- Batch sizes: " + "; ".join(
        f"{m} {', '.join(map(str, b))}" for m, b in cfg["batches"].items())
        + f"; {cfg['repeats']} timed repetition(s); {cfg['batches_per_call']} batch(es) per "
          f"call; {cfg['load_repeats']} load process(es) per row.")
    add(f"- Threads: every subprocess is pinned to the same {cfg['threads']} core(s) "
        f"(`sched_setaffinity`), with `torch.set_num_threads({cfg['threads']})`, TensorFlow "
        f"intra-op threads {cfg['threads']}, `OMP_NUM_THREADS`/`MKL_NUM_THREADS`="
        f"{cfg['threads']}; XLA (JAX) sizes its thread pool from the affinity mask. No "
        f"framework gets a different setting.")
    add(f"- Checkpoint: random weights (N(0, 0.02), LayerNorms 1/0), real {model_cfg['title']} "
        f"architecture (speed does not depend on the values), {ref['built']}.")
    add("- Folder loads run with `KVMM_CACHE=off`. The named-weight loads are "
        f"`{model_cfg['kvmm_class']}(weights=\"{model_cfg['named'][0]}\")` offline from a "
        "temporary Hugging Face cache holding the checkpoint as its repo (`blobs/` hard "
        "links, as a download leaves them): the first load in a process with an empty "
        "temporary `KVMM_CACHE` of its own, the second load with the `KVMM_CACHE` the last "
        "first load of that backend left.")
    add(f"- Wall time of this model's run: {cfg['total_s']:.0f} s.")
    add("")
    return "\n".join(lines)


def _environment(loadavg_start: float, reference: str = "hf") -> dict:
    extra = (("open_clip", "open_clip_torch"), ("timm", "timm")) if reference == "open_clip" else ()
    return dict(
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cpu=_cpu_model(),
        cpu_flags=_cpu_flags(),
        cores=os.cpu_count(),
        mem_gib=_mem_total_gib(),
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        versions={
            name: _version(dist)
            for name, dist in (
                ("kvmm", "kvmm"), ("keras", "keras"), ("jax", "jax"), ("jaxlib", "jaxlib"),
                ("tensorflow", "tensorflow-cpu" if _version("tensorflow-cpu") != "-"
                 else "tensorflow"),
                ("torch", "torch"), ("transformers", "transformers"), *extra,
                ("numpy", "numpy"),
            )
        },
        commit=_git_commit(),
        loadavg_start=loadavg_start,
        loadavg_end=_loadavg(),
    )


def _benchmark(model: str, opts: dict, folder: Path, out_md: Path) -> Path:
    """The whole benchmark of one model; writes ``out_md`` and its ``.json``."""
    t_total = time.perf_counter()
    threads, timeout, batches = opts["threads"], opts["timeout"], opts["batches"]
    repeats, per_call = opts["repeats"], opts["batches_per_call"]
    loadavg_start = _loadavg()
    # The named-weight load rows convert with this run's kvmm (so the cache always fits the
    # code under test) into temporary folders, with the checkpoint unless --checkpoint
    # names one to keep.
    tmp_root = Path(tempfile.mkdtemp(prefix=f"encoders_speed_{model}_"))
    if folder is None:
        folder = tmp_root / MODELS[model]["folder_name"]
    hub = tmp_root / "hf_home" / "hub"
    hub_env = {"HF_HOME": str(hub.parent), "HF_HUB_CACHE": str(hub)}
    base = dict(model=model, threads=threads, folder=str(folder),
                named=MODELS[model]["named"][0])
    build = {}
    try:
        if not _checkpoint_complete(model, folder):
            build = _run_worker({**base, "task": "prepare"}, "torch", timeout,
                                f"{model}: building the checkpoint in {folder}")

        common = dict(base, task="run", batches=batches, batches_per_call=per_call,
                      extra_warmup=opts["extra_warmup"])
        runs, loads = [], []
        # 1. One process per engine: timed load from the HF folder (in a fresh process),
        #    warm-up, then timed calls on request. Interleaved (default): all engines stay
        #    loaded and the parent asks them in turn, one computing at a time, rotating
        #    the order every round. --sequential: one engine after the other.
        engines = [(MODELS[model]["reference"], None)] + [("kvmm", b) for b in opts["backends"]]

        def start(engine, backend):
            spec = dict(common, engine=engine, backend=backend, source="folder")
            name = f"{engine}{'/' + backend if backend else ''}"
            worker = _Worker(spec, backend, timeout,
                             f"{model}: load + warm-up + throughput {name}")
            ready = worker.receive()
            ready["throughput"] = {
                modality: {
                    str(b): {"items": b * per_call,
                             "first_call_s": ready["warmup"][modality][str(b)]["first_call_s"],
                             "times_s": [], "items_per_s": [], "loadavg": []}
                    for b in sizes
                }
                for modality, sizes in batches.items()
            }
            runs.append(ready)
            loads.append(ready)
            return worker, ready

        def timed_rounds(pairs):
            for rep in range(repeats):
                order = pairs[rep % len(pairs):] + pairs[: rep % len(pairs)]
                for modality, sizes in batches.items():
                    for b in sizes:
                        for worker, record in order:
                            answer = worker.request({"modality": modality, "batch": b})
                            entry = record["throughput"][modality][str(b)]
                            entry["times_s"].append(answer["seconds"])
                            entry["items_per_s"].append(answer["items"] / answer["seconds"])
                            entry["loadavg"].append(answer["loadavg"])

        def stop(worker, record):
            final = worker.finish(quit_message=True)
            record["peak_rss_end"] = final["peak_rss_end"]
            record["loadavg_end"] = final["loadavg_end"]
            for per_modality in record["throughput"].values():
                for entry in per_modality.values():
                    entry["peak_rss"] = final["peak_rss_end"]

        if opts["sequential"]:
            for engine, backend in engines:
                pair = start(engine, backend)
                timed_rounds([pair])
                stop(*pair)
        else:
            pairs = []
            try:
                for engine, backend in engines:
                    pairs.append(start(engine, backend))
                _log(f"{model}: timing {len(pairs)} engines, interleaved, {repeats} round(s)")
                timed_rounds(pairs)
            except BaseException:
                for worker, _ in pairs:  # the workers this run started
                    with contextlib.suppress(OSError):
                        worker.proc.kill()
                raise
            for pair in pairs:
                stop(*pair)
        # 2. More fresh processes for the load rows: the folder loads; the first load of the
        #    named weight ("first": the checkpoint poses as its repo in a temporary Hugging
        #    Face cache, as a download leaves it, and each process converts into an empty
        #    KVMM_CACHE of its own); the second load of the named weight ("cache": from
        #    what the last "first" process of that backend left in its KVMM_CACHE).
        load_only = dict(common, batches={})
        _install_as_hub_repo(folder, MODELS[model]["named"][1], hub)
        kvmm_caches = {}
        for i in range(opts["load_repeats"]):
            for engine, backend in engines:
                if engine != "kvmm":
                    continue
                previous = kvmm_caches.get(backend)
                if previous is not None:
                    shutil.rmtree(previous, ignore_errors=True)  # 0.8-3.5 GB each
                kvmm_caches[backend] = tmp_root / f"kvmm_cache_{backend}_{i}"
                env = dict(hub_env, KVMM_CACHE=str(kvmm_caches[backend]))
                loads.append(_run_worker(
                    dict(load_only, engine=engine, backend=backend, source="first", env=env),
                    backend, timeout, f"{model}: first load of the named weight, kvmm/{backend} "
                    f"({i + 1}/{opts['load_repeats']})"))
        for i in range(opts["load_repeats"]):
            for engine, backend in engines:
                for source in (("folder",) if engine != "kvmm" else ("folder", "cache")):
                    if source == "folder" and i == 0:
                        continue  # measured in step 1
                    env = {}
                    if source == "cache":
                        env = dict(hub_env, KVMM_CACHE=str(kvmm_caches[backend]))
                    spec = dict(load_only, engine=engine, backend=backend, source=source, env=env)
                    loads.append(_run_worker(
                        spec, backend, timeout,
                        f"{model}: load {engine}{'/' + backend if backend else ''} from "
                        f"{source} ({i + 1}/{opts['load_repeats']})"))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    env_info = _environment(loadavg_start, MODELS[model]["reference"])
    timed_loadavg = [a for r in runs for per_modality in r["throughput"].values()
                     for entry in per_modality.values() for a in entry["loadavg"]]
    cfg = dict(
        model=model, command=opts["command"], quick=opts["quick"],
        interleaved=not opts["sequential"], threads=threads, cores_used=opts["cores_used"],
        batches=batches, repeats=repeats, load_repeats=opts["load_repeats"],
        batches_per_call=per_call, extra_warmup=opts["extra_warmup"],
        loadavg_timed_median=_median(timed_loadavg),
        loadavg_timed_max=max(timed_loadavg, default=float("nan")),
        checkpoint_build=build, total_s=time.perf_counter() - t_total,
    )
    hf_parity = _reference_run(runs)["parity"]
    for r in runs:
        parity = r.pop("parity")
        r["parity_max_abs_diff"] = {m: _cosine_gap(parity[m], hf_parity[m]) for m in batches}
    markdown = _render(model, cfg, env_info, runs, loads)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(markdown)
    out_md.with_suffix(".json").write_text(
        json.dumps(dict(config=cfg, machine=env_info, throughput_runs=runs,
                        load_only_runs=[l for l in loads if "throughput" not in l]), indent=1)
    )
    print(markdown)
    _log(f"{model}: wrote {out_md} and {out_md.with_suffix('.json')}")
    return out_md


def _machine_slug(threads: int) -> str:
    cpu = "".join(c if c.isalnum() else "-" for c in _cpu_model().lower())
    cpu = "-".join(part for part in cpu.split("-") if part and part not in {"processor", "r", "tm"})
    return f"{cpu[:40].strip('-') or 'cpu'}-{threads}t"


def _summary(reports: list[Path], matmul: list[dict], opts: dict) -> str:
    """One table over every model of the run (read back from each model's .json)."""
    best_gflops = max((r for m in matmul for r in m["gflops"].values()), default=float("nan"))
    lines = []
    add = lines.append
    data = [json.loads(p.with_suffix(".json").read_text()) for p in reports]
    machine = data[0]["machine"] if data else _environment(_loadavg())
    versions = {}
    for d in data or [dict(machine=machine)]:
        versions.update(d["machine"]["versions"])
    # The references of the run's models, e.g. {"transformers": ["SigLIP", "CLIP"]}.
    references: dict[str, list[str]] = {}
    for d in data:
        model_cfg = MODELS[d["config"]["model"]]
        family = references.setdefault(REFERENCES[model_cfg["reference"]]["name"], [])
        if model_cfg["title"].split()[0] not in family:
            family.append(model_cfg["title"].split()[0])

    def per_reference(text: dict[str, str]) -> str:
        if len(references) <= 1:
            return text[next(iter(references), "transformers")]
        return "; ".join(f"{text[name]} for {', '.join(families)}"
                         for name, families in references.items())

    add("# kvmm encoders on CPU: summary")
    add("")
    add(f"Generated by `{opts['command']}` on {machine['date']}; {machine['cpu']}, "
        f"{opts['threads']} thread(s). Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    if opts["quick"]:
        add("")
        add("**Quick (smoke) run: tiny batches, one repetition; not meaningful throughputs.**")
    loads = [d["config"]["loadavg_timed_median"] for d in data]
    add("")
    add(f"Load average during the timed calls (median per model): "
        f"{', '.join(f'{x:.1f}' for x in loads)} with {opts['threads']} core(s) used. Above "
        f"about {opts['threads'] + CONTENTION_MARGIN:.1f} other processes competed for the "
        f"CPU and the figures are noisy; see each model's report for per-round ratios.")
    add("")
    add(f"Machine float32 matmul rate ({matmul[0]['matmul_size'] if matmul else '-'}^2 "
        f"matrices, best of NumPy/PyTorch/JAX, measured before and after the models): "
        + "; ".join(", ".join(f"{k} {v:.0f}" for k, v in m["gflops"].items()) + " GFLOP/s"
                    for m in matmul)
        + f". Reference rate: **{best_gflops:.0f} GFLOP/s**.")
    add("")
    add("## Throughput")
    add("")
    names = {name: name for name in references} or {"transformers": "transformers"}
    add(f"Median items/s; *ratio* = engine / reference ({per_reference(names)}) measured in "
        "the same run "
        "(> 1: kvmm faster). *% matmul* = images/s x the vision tower's GFLOPs per image "
        "(matmuls and convolutions only) / the reference matmul rate.")
    add("")
    add("| model | modality | batch | engine | items/s | ratio | % matmul |")
    add("|---|---|---:|---|---:|---:|---:|")
    for d in data:
        model = d["config"]["model"]
        runs = d["throughput_runs"]
        ref = _reference_run(runs)
        for modality, per_batch in ref["throughput"].items():
            for batch in per_batch:
                ref_tp = _median(ref["throughput"][modality][batch]["items_per_s"])
                for r in runs:
                    tp = _median(r["throughput"][modality][batch]["items_per_s"])
                    share = "-"
                    if modality == "images":
                        share = f"{100 * tp * _vision_gflops(model) / best_gflops:.0f}%"
                    add(f"| {MODELS[model]['title']} | {modality} | {batch} | {_engine_label(r)} "
                        f"| {tp:.2f} | {tp / ref_tp:.2f} | {share} |")
    add("")
    add("## Load time and peak memory")
    add("")
    load_calls = {v["name"]: v["summary_load"] for v in REFERENCES.values()}
    add(f"Medians over fresh processes; ratios are engine / {per_reference(load_calls)} "
        "(> 1: slower or larger). Peak RSS covers the load and one read of every weight.")
    add("")
    add("| model | engine | weights | load (s) | ratio | peak RSS (MiB) | ratio |")
    add("|---|---|---|---:|---:|---:|---:|")
    for d in data:
        model = d["config"]["model"]
        loads = d["throughput_runs"] + d["load_only_runs"]
        ref = [l for l in loads if _is_reference(l)]
        ref_s = _median([l["load_s"] for l in ref])
        ref_peak = _median([l["peak_rss_after_read"] for l in ref])
        for key, group in _load_groups(loads):
            load_s = _median([l["load_s"] for l in group])
            peak = _median([l["peak_rss_after_read"] for l in group])
            source = {"folder": REFERENCES[MODELS[model]["reference"]]["summary_folder"],
                      "first": "named weight, first load",
                      "cache": "named weight, later load",
                      "h5": "`.weights.h5`"}.get(key[2], key[2])
            add(f"| {MODELS[model]['title']} | {_engine_label(group[0])} | {source} | "
                f"{load_s:.2f} | {load_s / ref_s:.2f} | {_mib(peak):.0f} | {peak / ref_peak:.2f} |")
    add("")
    add("Per-model reports: " + ", ".join(f"[{p.name}]({p.name})" for p in reports) + ".")
    add("")
    return "\n".join(lines)


def main(argv=None, *, prog: str = "encoders_speed.py", default_model: str = "all") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=default_model,
                        help=f"model(s) to benchmark, comma-separated (default "
                             f"{default_model}; all: "
                             f"{', '.join(m for m in MODELS if m not in SLOW_MODELS)}, one "
                             f"after the other; also: {', '.join(SLOW_MODELS)})")
    parser.add_argument("--families", default=None,
                        help=f"comma-separated families instead of --model: "
                             f"{', '.join(f'{k} ({len(v)} models)' for k, v in FAMILIES.items())}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 2, 1 repetition, 1 load process per row; "
                             "only the first model of each family (SigLIP Base/16-224, CLIP "
                             "B/32, BiomedCLIP B/16) unless --model/--families")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown output for a single --model (default "
                             "benchmarks/results/<model>_cpu.md, with --quick "
                             "<model>_cpu_quick.md); raw numbers go next to it as .json")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="folder for every report (per model and the summary) instead "
                             "of benchmarks/results, e.g. one folder per machine")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="folder for the random-weight reference checkpoint (HF or "
                             "open_clip format), built there if "
                             "missing and reused otherwise; with several models, one "
                             "subfolder per model (DIR/<model>). Default: temporary folders")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated Keras backends (default: all three)")
    parser.add_argument("--modalities", default=",".join(MODALITIES),
                        help="comma-separated: images, texts (default both)")
    parser.add_argument("--batches", default=None,
                        help="batch sizes for images and texts alike, comma-separated "
                             "(--batch-sizes / --text-batch-sizes override per modality)")
    parser.add_argument("--batch-sizes", default=None,
                        help=f"image batch sizes, comma-separated (default "
                             f"{DEFAULT_BATCHES['images']}; quick {QUICK_BATCHES['images']})")
    parser.add_argument("--text-batch-sizes", default=None,
                        help=f"text batch sizes, comma-separated (default "
                             f"{DEFAULT_BATCHES['texts']}; quick {QUICK_BATCHES['texts']})")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 3)")
    parser.add_argument("--load-repeats", type=int, default=None,
                        help="fresh processes per load row (default 2)")
    parser.add_argument("--batches-per-call", type=int, default=1,
                        help="batches per timed encode call (default 1)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed calls per batch size before timing; the first one "
                             "compiles (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="cores/threads for every framework (default: all allowed cores)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for any one answer of a subprocess "
                             "(default 900, quick 300)")
    parser.add_argument("--sequential", action="store_true",
                        help="time one engine after the other instead of interleaving their "
                             "calls (one model in memory at a time instead of four)")
    parser.add_argument("--rerender", type=Path, default=None, metavar="JSON",
                        help="write the Markdown report again from a run's .json (next to "
                             "it, or to --out); runs nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        _worker_main(args.worker)
        return 0
    if args.rerender:
        data = json.loads(args.rerender.read_text())
        cfg = data["config"]
        runs = data["throughput_runs"]
        markdown = _render(cfg["model"], cfg, data["machine"], runs,
                           runs + data["load_only_runs"])
        out_md = args.out or args.rerender.with_suffix(".md")
        out_md.write_text(markdown)
        _log(f"wrote {out_md}")
        return 0

    quick = args.quick
    models = [m for m in MODELS if m not in SLOW_MODELS] if args.model == "all" else [
        m.strip() for m in args.model.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            parser.error(f"unknown model {m!r}; choose from {', '.join(MODELS)} or all")
    if args.families:
        models = []
        for family in (f.strip() for f in args.families.split(",") if f.strip()):
            if family not in FAMILIES:
                parser.error(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
            models += FAMILIES[family]
    elif quick and args.model == "all":
        models = [members[0] for members in FAMILIES.values()]
    if args.out is not None and len(models) > 1:
        parser.error("--out needs a single --model")
    if args.out is not None and args.out_dir is not None:
        parser.error("give --out or --out-dir, not both")
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    for m in modalities:
        if m not in MODALITIES:
            parser.error(f"unknown modality {m!r}")
    if not modalities:
        parser.error("--modalities is empty")
    sizes_arg = {"images": args.batch_sizes or args.batches,
                 "texts": args.text_batch_sizes or args.batches}
    batches = {
        m: [int(b) for b in (sizes_arg[m] or (QUICK_BATCHES if quick else DEFAULT_BATCHES)[m])
            .split(",")]
        for m in MODALITIES if m in modalities
    }
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}")
    allowed = sorted(os.sched_getaffinity(0))
    threads = min(args.threads or len(allowed), len(allowed))
    opts = dict(
        quick=quick, threads=threads, cores_used=allowed[:threads], backends=backends,
        batches=batches, repeats=args.repeats or (1 if quick else 3),
        load_repeats=args.load_repeats or (1 if quick else 2),
        batches_per_call=args.batches_per_call, extra_warmup=max(args.warmup - 1, 0),
        timeout=args.timeout or (300 if quick else 900), sequential=args.sequential,
        command=" ".join(["python", f"benchmarks/{prog}", *argv]),
    )
    matmul = [_run_worker({"task": "matmul", "threads": threads}, "jax", opts["timeout"],
                          "float32 matmul rate (before)")]
    written = []
    for model in models:
        folder = None
        if args.checkpoint is not None:
            folder = args.checkpoint.expanduser().resolve()
            if len(models) > 1:
                folder = folder / model
        out_md = args.out or _default_out(model, quick, args.out_dir)
        written.append(_benchmark(model, opts, folder, out_md))
    matmul.append(_run_worker({"task": "matmul", "threads": threads}, "jax", opts["timeout"],
                              "float32 matmul rate (after)"))
    summary = _summary(written, matmul, opts)
    out_summary = (args.out.parent if args.out else args.out_dir or HERE / "results") / (
        _machine_slug(threads) + ("_quick" if quick else "") + ".md")
    out_summary.write_text(summary)
    print(summary)
    _log("wrote " + ", ".join(str(p) for p in [*written, out_summary]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
