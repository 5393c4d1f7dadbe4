#!/usr/bin/env python
"""kvmm image-text encoders on CPU (Keras 3 on JAX, TensorFlow, PyTorch) against transformers.

One command measures, for each model (``--model siglip-base16|clip-b32|all``, default all),
on the machine it runs on and in the same run:

* throughput: images/s of ``model.encode_images`` and texts/s of ``model.encode_texts`` at
  several batch sizes for every Keras backend, next to transformers'
  ``get_image_features`` / ``get_text_features`` (PyTorch) with the same L2 normalisation;
* load time and memory: ``<Variant>(weights=<HF folder>)`` (conversion from the Hugging
  Face safetensors), ``<Variant>(weights=<.weights.h5>)`` (the "cached" load, what a second
  load of a named weight does) and ``<HF model>.from_pretrained(<folder>)``.

Every measurement runs in a fresh subprocess of this script (the Keras backend is fixed per
process, and peak RSS is per process). All subprocesses get the same CPU settings: the same
CPU affinity (the first ``--threads`` cores, default all) and the same intra-op thread count
for PyTorch, TensorFlow and OpenMP/MKL; XLA (JAX) sizes its pool from the affinity mask.

The checkpoints have random weights with the real architectures (speed does not depend on
the values); they are built with transformers and reused with ``--checkpoint DIR``.

    python benchmarks/encoders_speed.py                       # both models, full runs
    python benchmarks/encoders_speed.py --model clip-b32      # one model
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
PARITY_ROWS = 2  # embeddings compared with transformers, a check that the same network ran
CONTENTION_MARGIN = 0.75  # load average above the cores used by this much: other work ran
TEXT_BODY_TOKENS = (5, 20)  # random "words" per text, before EOS and padding

# The benchmarked models. Unset config values are transformers' defaults, which are the
# released checkpoints' architectures.
MODELS = {
    "siglip-base16": dict(
        title="SigLIP Base/16-224",
        # google/siglip-base-patch16-224: 768 wide, 12 layers, 12 heads, MLP 3072, text
        # 64 tokens, vocabulary 32000.
        result_stem="siglip_base",  # results/siglip_base_cpu.md (name kept from before)
        kvmm_module="kvmm.models.siglip",
        kvmm_class="SigLIPBaseP16",
        hf_config_class="SiglipConfig",
        hf_model_class="SiglipModel",
        model_type="siglip",
        family="siglip",
        image_size=IMAGE_SIZE,
        patch_size=16,
        # vision tower geometry, for the FLOP count (% of the machine's matmul rate)
        vision=dict(width=768, mlp=3072, layers=12, class_token=False, map_head=True),
        hf_config=dict(vision_config=dict(image_size=IMAGE_SIZE, patch_size=16), text_config=dict()),
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
        hf_config_class="CLIPConfig",
        hf_model_class="CLIPModel",
        model_type="clip",
        family="clip",
        image_size=IMAGE_SIZE,
        patch_size=32,
        vision=dict(width=768, mlp=3072, layers=12, class_token=True, map_head=False),
        hf_config=dict(vision_config=dict(image_size=IMAGE_SIZE, patch_size=32), text_config=dict()),
        folder_name="clip-vit-base-patch32-random",
        # CLIP's tokenizer: BOS (49406) + tokens + EOS (49407), padded to 77 with EOS.
        text=dict(length=77, bos=49406, eos=49407, pad=49407, low=0, high=49406),
        text_note="BOS + random token ids + EOS, padded to 77 with EOS (what CLIP's tokenizer "
                  "with `padding=\"max_length\"` produces); no attention mask on either side "
                  "(the causal mask already hides the padding from the pooled EOS position)",
        image_note="random images in [-1, 1] (about the CLIP processor's range)",
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
        hf_config=dict(vision_config=dict(image_size=_size, patch_size=16), text_config=dict()),
        folder_name=f"siglip-base-patch16-{_size}-random",
    )
#: ``--families``: which models each family stands for.
FAMILIES = {
    "siglip": ["siglip-base16", "siglip-base16-256", "siglip-base16-384", "siglip-base16-512"],
    "clip": ["clip-b32"],
}
# BiomedCLIP (open_clip as its reference) is not wired in yet: add a MODELS entry with an
# open_clip reference engine once kvmm.models.biomedclip exists.
UNITS = {"images": "images/s", "texts": "texts/s"}
DEFAULT_BATCHES = {"images": "1,8,32", "texts": "1,32,256"}
QUICK_BATCHES = {"images": "2", "texts": "2"}


def _default_out(model: str, quick: bool) -> Path:
    stem = MODELS[model]["result_stem"] + ("_cpu_quick" if quick else "_cpu")
    return HERE / "results" / f"{stem}.md"


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


def _worker_prepare(spec: dict) -> dict:
    """Build the Hugging Face checkpoint (random weights, real architecture)."""
    model_cfg = MODELS[spec["model"]]
    folder = Path(spec["folder"])
    result = {}
    if not _checkpoint_complete(spec["model"], folder):
        import torch
        import transformers
        from transformers.initialization import no_init_weights

        start = time.perf_counter()
        config_class = getattr(transformers, model_cfg["hf_config_class"])
        model_class = getattr(transformers, model_cfg["hf_model_class"])
        # Skip transformers' (slow) initialisers; fill every parameter with N(0, 0.02)
        # instead, LayerNorms with 1 / 0 (what the initialisers do, keeps the activations
        # in a realistic range for the parity check).
        with no_init_weights():
            model = model_class(config_class(**model_cfg["hf_config"])).eval()
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.empty(p.shape).normal_(0.0, 0.02, generator=generator))
            for module in model.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.fill_(1.0)
                    module.bias.zero_()
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        result["num_parameters"] = sum(p.numel() for p in model.parameters())
        del model
        result["hf_build_s"] = time.perf_counter() - start
    return result


def _worker_run(spec: dict) -> dict:
    """Load one model in this fresh process (timed, with peak RSS), then optionally warm up
    the encoders and time single calls on the parent's request."""
    t_start = time.perf_counter()
    model_cfg = MODELS[spec["model"]]
    engine, threads = spec["engine"], spec["threads"]
    out: dict = {"engine": engine, "backend": spec.get("backend"), "source": spec["source"]}
    out["loadavg_start"] = _loadavg()

    # ---- imports and framework initialisation (not part of the load time) ----
    if engine == "kvmm":
        import importlib

        import keras
        import numpy as np

        builder = getattr(importlib.import_module(model_cfg["kvmm_module"]),
                          model_cfg["kvmm_class"])
        backend = keras.backend.backend()
        assert backend == spec["backend"], (backend, spec["backend"])
        _set_framework_threads(threads, {backend})
        # One tiny op so that the backend's lazy runtime start (XLA client, TF eager
        # context) is not counted as loading.
        keras.ops.convert_to_numpy(keras.ops.add(keras.ops.ones((2,)), 1.0))
    else:
        import numpy as np
        import torch
        import transformers

        model_class = getattr(transformers, model_cfg["hf_model_class"])
        _set_framework_threads(threads, {"torch"})
        torch.ones(2).add_(1.0)
    out["import_s"] = time.perf_counter() - t_start
    out["rss_after_imports"] = _rss_bytes()
    out["peak_rss_before_load"] = _peak_rss_bytes()

    # ---- load ----
    start = time.perf_counter()
    if engine == "kvmm":
        weights = spec["h5"] if spec["source"] == "h5" else spec["folder"]
        model = builder(weights=weights)
    else:
        model = model_class.from_pretrained(spec["folder"], dtype=torch.float32).eval()
    out["load_s"] = time.perf_counter() - start
    out["peak_rss_after_load"] = _peak_rss_bytes()
    out["rss_after_load"] = _rss_bytes()
    # Read every weight once. transformers memory-maps the safetensors file, so its
    # weights only become resident when first used; this makes the memory figures
    # comparable (kvmm's weights are resident after the load already).
    start = time.perf_counter()
    if engine == "kvmm":
        checksum = sum(
            float(keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.abs(w.value))))
            for w in model.weights
        )
        out["num_parameters"] = int(sum(int(np.prod(w.shape)) for w in model.weights))
    else:
        with torch.inference_mode():
            checksum = sum(
                float(t.abs().sum()) for t in (*model.parameters(), *model.buffers())
                if t.is_floating_point()
            )
        out["num_parameters"] = int(sum(p.numel() for p in model.parameters()))
    out["read_weights_s"] = time.perf_counter() - start
    out["weights_checksum"] = checksum
    out["peak_rss_after_read"] = _peak_rss_bytes()
    out["rss_after_read"] = _rss_bytes()
    if engine == "hf":
        out["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
        out["num_threads"] = torch.get_num_threads()
    elif spec["backend"] == "torch":
        import torch

        out["num_threads"] = torch.get_num_threads()
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
        if engine == "kvmm":
            prepared[modality] = inputs
            method = model.encode_images if modality == "images" else model.encode_texts
            encoders[modality] = (lambda method: lambda x, b: method(x, batch_size=b))(method)
        else:
            # transformers takes channels-first float tensors / int64 token ids (what its
            # processor returns); the conversion is done once, outside the timed region.
            if modality == "images":
                prepared[modality] = torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous()
                features, argument = model.get_image_features, "pixel_values"
            else:
                prepared[modality] = torch.from_numpy(inputs.astype("int64"))
                features, argument = model.get_text_features, "input_ids"

            def encode(x, batch_size, features=features, argument=argument):
                chunks = []
                with torch.inference_mode():
                    for i in range(0, x.shape[0], batch_size):
                        feats = features(**{argument: x[i:i + batch_size]})
                        if not isinstance(feats, torch.Tensor):  # transformers >= 5
                            feats = feats.pooler_output
                        feats = feats / feats.norm(dim=-1, keepdim=True)
                        chunks.append(feats.numpy())
                return np.concatenate(chunks)

            encoders[modality] = encode

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
    if engine == "kvmm":
        out["jit_compile"] = {
            "images": repr(getattr(model.vision_model, "jit_compile", None)),
            "texts": repr(getattr(model.text_model, "jit_compile", None)),
        }
    if spec.get("save_h5"):
        # The file for the cached-load rows, written by the kvmm code under test (after
        # every measurement of this process so far).
        start = time.perf_counter()
        model.save_weights(spec["save_h5"])
        out["save_h5_s"] = time.perf_counter() - start
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
def _checkpoint_complete(model: str, folder: Path) -> bool:
    model_cfg = MODELS[model]
    config = folder / "config.json"
    if not (config.is_file() and (folder / "model.safetensors").is_file()):
        return False
    try:
        data = json.loads(config.read_text())
    except ValueError:
        return False
    vision = data.get("vision_config", {})
    if data.get("model_type") != model_cfg["model_type"] or (
        vision.get("image_size") != model_cfg["image_size"]
        or vision.get("patch_size") != model_cfg["patch_size"]
        or vision.get("hidden_size", 768) != 768
    ):
        raise SystemExit(f"{folder} is not a {model_cfg['title']} checkpoint ({config}).")
    return True


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
            env=_worker_env(spec["threads"], backend),
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


def _engine_label(r: dict) -> str:
    if r["engine"] == "hf":
        return "transformers (PyTorch)"
    return f"kvmm / {r['backend']}"


def _load_groups(loads: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """Load records grouped by (engine, backend, source), in order of first appearance."""
    groups: dict[tuple, list[dict]] = {}
    for l in loads:
        groups.setdefault((l["engine"], l.get("backend"), l["source"]), []).append(l)
    return list(groups.items())


def _render(model: str, cfg: dict, env_info: dict, runs: list[dict], loads: list[dict]) -> str:
    model_cfg = MODELS[model]
    hf_model = model_cfg["hf_model_class"]
    kvmm_class = model_cfg["kvmm_class"]
    hf_run = next(r for r in runs if r["engine"] == "hf")
    n_params = hf_run.get("num_parameters", 0)
    lines = []
    add = lines.append
    add(f"# {model_cfg['title']} on CPU: kvmm vs transformers")
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
            f"PyTorch's OpenMP pool (transformers and kvmm / torch alike) slows down far more "
            f"than XLA's or TensorFlow's, so the medians favour kvmm on JAX and TensorFlow. "
            f"The *by round* columns pair each call with transformers' call of the same round "
            f"(adjacent in time); rounds with a lower load average are the fairer comparison.")
    for modality in cfg["batches"]:
        hf_tp = {b: _median(v["items_per_s"]) for b, v in hf_run["throughput"][modality].items()}
        unit = UNITS[modality]
        noun = "image" if modality == "images" else "text"
        add("")
        add(f"## Throughput: {noun} embeddings")
        add("")
        if modality == "images":
            call = (f"`model.encode_images(images, batch_size=B)` (kvmm; Keras `predict`) "
                    f"against `{hf_model}.get_image_features(pixel_values=...)`")
            what = f"B {model_cfg['image_note']}, {model_cfg['image_size']}px square"
        else:
            call = (f"`model.encode_texts(token_ids, batch_size=B)` (kvmm; Keras `predict`) "
                    f"against `{hf_model}.get_text_features(input_ids=...)`")
            what = f"B texts: {model_cfg['text_note']}"
        add(f"{call} under `torch.inference_mode()` plus L2 normalisation (transformers, "
            f"float32, attention `{hf_run.get('attn_implementation')}`; the projected embedding "
            f"is the output's `pooler_output`). Each timed call encodes "
            f"{cfg['batches_per_call']} batch(es) of {what}. After "
            f"{1 + cfg['extra_warmup']} warm-up call(s) (the first one compiles), the median of "
            f"{cfg['repeats']} timed call(s) is reported, with the range. "
            + ("The engines' timed calls are interleaved (all four models loaded in their own "
               "processes, one computing at a time, order rotated every round), so load from "
               "other processes hits all engines at the same times (not equally, see below "
               "the table if it was high). " if cfg["interleaved"] else
               "Engines were timed one after the other (`--sequential`). ")
            + "kvmm/transformers > 1 means kvmm is faster.")
        add("")
        add(f"| engine | batch | {unit} (median) | range | kvmm / transformers "
            "| by round: kvmm / transformers | by round: load avg | first call (s) "
            "| process peak RSS (MiB) |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in runs:
            for b, v in r["throughput"][modality].items():
                med = _median(v["items_per_s"])
                ratio = med / hf_tp[b] if r["engine"] != "hf" else 1.0
                rng = f"{min(v['items_per_s']):.2f}-{max(v['items_per_s']):.2f}"
                hf_calls = hf_run["throughput"][modality][b]["items_per_s"]
                by_round = " / ".join(
                    f"{x / y:.2f}" for x, y in zip(v["items_per_s"], hf_calls)
                ) if r["engine"] != "hf" else "-"
                loads_by_round = " / ".join(f"{x:.1f}" for x in v["loadavg"])
                add(f"| {_engine_label(r)} | {b} | {med:.2f} | {rng} | {ratio:.2f} | "
                    f"{by_round} | {loads_by_round} | "
                    f"{v['first_call_s']:.1f} | {_mib(v['peak_rss']):.0f} |")
        add("")
        gaps = [f"{r['backend']} {r['parity_max_abs_diff'][modality]:.1e}"
                for r in runs if r["engine"] == "kvmm"]
        add(f"Check that the same network ran: max |difference| of the normalized {noun} "
            f"embeddings (first {PARITY_ROWS}) against transformers: {', '.join(gaps)}.")
        kvmm_runs = [r for r in runs if r["engine"] == "kvmm"]
        add("Keras `jit_compile` as resolved by `predict`: " + ", ".join(
            f"{r['backend']} {r.get('jit_compile', {}).get(modality)}" for r in kvmm_runs) + ".")
    add("")
    add("## Load time and memory")
    add("")
    add(f"Each load runs in a fresh process ({cfg['load_repeats']} process(es) per row; medians "
        f"are reported). Timed: only the `{kvmm_class}(weights=...)` / "
        f"`{hf_model}.from_pretrained` call, after the imports and the backend's start (shown "
        f"separately). The whole model (image and text towers, {n_params / 1e6:.0f}M "
        f"parameters, {n_params * 4 / 1e9:.1f} GB in float32) is loaded. Memory is measured "
        f"after the load and after reading every weight once: transformers memory-maps the "
        f"safetensors file, so its weights become resident only when first used (the column "
        f"*right after load*). Peak RSS is `ru_maxrss` (covering the load and the read); the "
        f"increase is over the RSS after the imports. Ratios are kvmm/transformers (> 1: kvmm "
        f"slower or larger).")
    add("")
    add("| engine | weights | load (s) | vs transformers | peak RSS (MiB) | vs transformers "
        "| RSS increase (MiB) | vs transformers | increase right after load (MiB) "
        "| import + start (s) |")
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def increase(l):
        return l["peak_rss_after_read"] - l["rss_after_imports"]

    hf_loads = [l for l in loads if l["engine"] == "hf"]
    hf_load_s = _median([l["load_s"] for l in hf_loads])
    hf_peak = _median([l["peak_rss_after_read"] for l in hf_loads])
    hf_incr = _median([increase(l) for l in hf_loads])
    source_label = {
        "folder": "HF folder (safetensors, converted)",
        "h5": "`.weights.h5` (cached load)",
    }
    for key, group in _load_groups(loads):
        load_s = _median([l["load_s"] for l in group])
        peak = _median([l["peak_rss_after_read"] for l in group])
        incr = _median([increase(l) for l in group])
        lazy = _median([l["rss_after_load"] - l["rss_after_imports"] for l in group])
        imp = _median([l["import_s"] for l in group])
        label = _engine_label(group[0])
        src = source_label[key[2]] if key[0] == "kvmm" else "HF folder (`from_pretrained`)"
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
        f"architecture (speed does not depend on the values), built with transformers "
        f"(`{hf_model}({model_cfg['hf_config_class']}(...))`) and saved with `save_pretrained`.")
    add("- `KVMM_CACHE=off`; the cached load reads a `.weights.h5` saved by kvmm "
        "(`model.save_weights`), the file kvmm's converted-weights cache holds.")
    add(f"- Wall time of this model's run: {cfg['total_s']:.0f} s.")
    add("")
    return "\n".join(lines)


def _environment(loadavg_start: float) -> dict:
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
                ("torch", "torch"), ("transformers", "transformers"), ("numpy", "numpy"),
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
    # The .weights.h5 of the cached-load rows is written by this run's kvmm (so it always
    # fits the code under test) into a temporary folder, with the checkpoint unless
    # --checkpoint names one to keep.
    tmp_root = Path(tempfile.mkdtemp(prefix=f"encoders_speed_{model}_"))
    if folder is None:
        folder = tmp_root / MODELS[model]["folder_name"]
    h5 = tmp_root / f"kvmm-{MODELS[model]['kvmm_class']}.weights.h5"
    base = dict(model=model, threads=threads, folder=str(folder), h5=str(h5))
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
        engines = [("hf", None)] + [("kvmm", b) for b in opts["backends"]]

        def start(engine, backend):
            spec = dict(common, engine=engine, backend=backend, source="folder")
            if engine == "kvmm" and not h5.exists():
                spec["save_h5"] = str(h5)
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
        # 2. More fresh processes for the load rows (folder), and the cached (.h5) loads.
        load_only = dict(common, batches={})
        for i in range(opts["load_repeats"]):
            for engine, backend in engines:
                for source in (("folder",) if engine == "hf" else ("folder", "h5")):
                    if source == "folder" and i == 0:
                        continue  # measured in step 1
                    spec = dict(load_only, engine=engine, backend=backend, source=source)
                    loads.append(_run_worker(
                        spec, backend, timeout,
                        f"{model}: load {engine}{'/' + backend if backend else ''} from "
                        f"{source} ({i + 1}/{opts['load_repeats']})"))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    env_info = _environment(loadavg_start)
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
    hf_parity = next(r for r in runs if r["engine"] == "hf")["parity"]
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
    add("# kvmm encoders on CPU: summary")
    add("")
    add(f"Generated by `{opts['command']}` on {machine['date']}; {machine['cpu']}, "
        f"{opts['threads']} thread(s). Versions: "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".")
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
    add("Median items/s; *ratio* = engine / reference (transformers) measured in the same run "
        "(> 1: kvmm faster). *% matmul* = images/s x the vision tower's GFLOPs per image "
        "(matmuls and convolutions only) / the reference matmul rate.")
    add("")
    add("| model | modality | batch | engine | items/s | ratio | % matmul |")
    add("|---|---|---:|---|---:|---:|---:|")
    for d in data:
        model = d["config"]["model"]
        runs = d["throughput_runs"]
        ref = next(r for r in runs if r["engine"] == "hf")
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
    add("Medians over fresh processes; ratios are engine / transformers' `from_pretrained` "
        "(> 1: slower or larger). Peak RSS covers the load and one read of every weight.")
    add("")
    add("| model | engine | weights | load (s) | ratio | peak RSS (MiB) | ratio |")
    add("|---|---|---|---:|---:|---:|---:|")
    for d in data:
        model = d["config"]["model"]
        loads = d["throughput_runs"] + d["load_only_runs"]
        ref = [l for l in loads if l["engine"] == "hf"]
        ref_s = _median([l["load_s"] for l in ref])
        ref_peak = _median([l["peak_rss_after_read"] for l in ref])
        for key, group in _load_groups(loads):
            load_s = _median([l["load_s"] for l in group])
            peak = _median([l["peak_rss_after_read"] for l in group])
            source = ("HF folder" if key[2] == "folder" else "cached `.weights.h5`")
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
                             f"{default_model}; all: {', '.join(MODELS)}, one after the other)")
    parser.add_argument("--families", default=None,
                        help=f"comma-separated families instead of --model: "
                             f"{', '.join(f'{k} ({len(v)} models)' for k, v in FAMILIES.items())}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 2, 1 repetition, 1 load process per row; "
                             "only SigLIP Base/16-224 and CLIP B/32 unless --model/--families")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown output for a single --model (default "
                             "benchmarks/results/<model>_cpu.md, with --quick "
                             "<model>_cpu_quick.md); raw numbers go next to it as .json")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="folder for the random-weight HF checkpoint, built there if "
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
    models = list(MODELS) if args.model == "all" else [
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
        models = ["siglip-base16", "clip-b32"]
    if args.out is not None and len(models) > 1:
        parser.error("--out needs a single --model")
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
        out_md = args.out or _default_out(model, quick)
        written.append(_benchmark(model, opts, folder, out_md))
    matmul.append(_run_worker({"task": "matmul", "threads": threads}, "jax", opts["timeout"],
                              "float32 matmul rate (after)"))
    summary = _summary(written, matmul, opts)
    out_summary = (args.out.parent if args.out else HERE / "results") / (
        _machine_slug(threads) + ("_quick" if quick else "") + ".md")
    out_summary.write_text(summary)
    print(summary)
    _log("wrote " + ", ".join(str(p) for p in [*written, out_summary]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
