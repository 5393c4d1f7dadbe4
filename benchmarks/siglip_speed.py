#!/usr/bin/env python
"""SigLIP Base/16-224 on CPU: kvmm (Keras 3 on JAX, TensorFlow, PyTorch) against transformers.

One command measures, on the machine it runs on and in the same run:

* throughput: images/s of ``model.encode_images`` at several batch sizes for every Keras
  backend, next to transformers' ``SiglipModel.get_image_features`` in PyTorch;
* load time and memory: ``SigLIPBaseP16(weights=<HF folder>)`` (conversion from the
  Hugging Face safetensors), ``SigLIPBaseP16(weights=<.weights.h5>)`` (the "cached" load,
  what a second load of a named weight does) and ``SiglipModel.from_pretrained(<folder>)``.

Every measurement runs in a fresh subprocess of this script (the Keras backend is fixed per
process, and peak RSS is per process). All subprocesses get the same CPU settings: the same
CPU affinity (the first ``--threads`` cores, default all) and the same intra-op thread count
for PyTorch, TensorFlow and OpenMP/MKL; XLA (JAX) sizes its pool from the affinity mask.

The checkpoint has random weights with the real architecture (speed does not depend on
the values); it is built once with transformers and reused with ``--checkpoint DIR``.

    python benchmarks/siglip_speed.py                 # full run (~5-10 min on 2 cores)
    python benchmarks/siglip_speed.py --quick         # smoke run: batch 2, 1 repetition
    python benchmarks/siglip_speed.py --checkpoint /tmp/siglip_b16  # build once, reuse

Results go to ``benchmarks/results/siglip_base_cpu.md`` (``--out``), with the raw numbers
next to it as ``.json``. See ``benchmarks/README.md``.
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
DEFAULT_OUT = HERE / "results" / "siglip_base_cpu.md"
QUICK_OUT = HERE / "results" / "siglip_base_cpu_quick.md"
RESULT_MARK = "@@SIGLIP_SPEED_RESULT@@"
H5_NAME = "kvmm-SigLIPBaseP16.weights.h5"
IMAGE_SIZE = 224
# SigLIP Base/16-224 as google/siglip-base-patch16-224 (transformers defaults fill the rest:
# 768 wide, 12 layers, 12 heads, MLP 3072, text 64 tokens, vocabulary 32000).
HF_CONFIG = dict(vision_config=dict(image_size=IMAGE_SIZE, patch_size=16), text_config=dict())
BACKENDS = ("jax", "tensorflow", "torch")
PARITY_ROWS = 2  # embeddings compared with transformers, a check that the same network ran


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
# Workers (run as ``siglip_speed.py --worker '<json spec>'``)
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


def _random_images(n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    # Values in [-1, 1], what the SigLIP processor produces.
    return rng.uniform(-1.0, 1.0, size=(n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")


def _worker_prepare(spec: dict) -> dict:
    """Build the Hugging Face checkpoint (random weights, real architecture)."""
    folder = Path(spec["folder"])
    result = {}
    if not _checkpoint_complete(folder):
        import torch
        from transformers import SiglipConfig, SiglipModel

        start = time.perf_counter()
        torch.manual_seed(0)
        model = SiglipModel(SiglipConfig(**HF_CONFIG)).eval()
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        del model
        result["hf_build_s"] = time.perf_counter() - start
    return result


def _worker_run(spec: dict) -> dict:
    """Load one model in this fresh process (timed, with peak RSS), then optionally time
    image encoding at the requested batch sizes."""
    t_start = time.perf_counter()
    engine, threads = spec["engine"], spec["threads"]
    out: dict = {"engine": engine, "backend": spec.get("backend"), "source": spec["source"]}
    out["loadavg_start"] = _loadavg()

    # ---- imports and framework initialisation (not part of the load time) ----
    if engine == "kvmm":
        import keras
        import numpy as np

        from kvmm.models.siglip import SigLIPBaseP16

        backend = keras.backend.backend()
        assert backend == spec["backend"], (backend, spec["backend"])
        _set_framework_threads(threads, {backend})
        # One tiny op so that the backend's lazy runtime start (XLA client, TF eager
        # context) is not counted as loading.
        keras.ops.convert_to_numpy(keras.ops.add(keras.ops.ones((2,)), 1.0))
    else:
        import numpy as np
        import torch
        from transformers import SiglipModel

        _set_framework_threads(threads, {"torch"})
        torch.ones(2).add_(1.0)
    out["import_s"] = time.perf_counter() - t_start
    out["rss_after_imports"] = _rss_bytes()
    out["peak_rss_before_load"] = _peak_rss_bytes()

    # ---- load ----
    start = time.perf_counter()
    if engine == "kvmm":
        weights = spec["h5"] if spec["source"] == "h5" else spec["folder"]
        model = SigLIPBaseP16(weights=weights)
    else:
        model = SiglipModel.from_pretrained(spec["folder"], dtype=torch.float32).eval()
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
    else:
        with torch.inference_mode():
            checksum = sum(
                float(t.abs().sum()) for t in (*model.parameters(), *model.buffers())
                if t.is_floating_point()
            )
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
    batch_sizes = spec.get("batch_sizes") or []
    if batch_sizes:
        per_call = spec["batches_per_call"]
        images = _random_images(max(batch_sizes) * per_call)
        if engine == "kvmm":
            def encode(x, batch_size):
                return model.encode_images(x, batch_size=batch_size)
            prepared = images
        else:
            # transformers takes channels-first tensors (what its processor returns); the
            # layout change is done once, outside the timed region.
            prepared = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

            def encode(x, batch_size):
                chunks = []
                with torch.inference_mode():
                    for i in range(0, x.shape[0], batch_size):
                        feats = model.get_image_features(pixel_values=x[i:i + batch_size])
                        if not isinstance(feats, torch.Tensor):  # transformers >= 5
                            feats = feats.pooler_output
                        feats = feats / feats.norm(dim=-1, keepdim=True)
                        chunks.append(feats.numpy())
                return np.concatenate(chunks)

        # Warm up (the first call compiles on JAX/TensorFlow), then report ready and
        # time single calls on the parent's request, so the parent can interleave the
        # engines' timed calls (other load on the machine then hits all engines alike).
        out["warmup"] = {}
        for b in batch_sizes:
            x = prepared[: b * per_call]
            t0 = time.perf_counter()
            emb = encode(x, b)
            first_call_s = time.perf_counter() - t0
            for _ in range(spec["extra_warmup"]):
                encode(x, b)
            out["warmup"][str(b)] = {"first_call_s": first_call_s}
            if "parity" not in out:
                out["parity"] = np.asarray(emb[:PARITY_ROWS], dtype="float64").tolist()
        if engine == "kvmm":
            out["jit_compile"] = repr(getattr(model.vision_model, "jit_compile", None))
        if spec.get("save_h5"):
            # The file for the cached-load rows, written by the kvmm code under test
            # (after every measurement of this process so far).
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
            b = int(request["batch"])
            x = prepared[: b * per_call]
            t0 = time.perf_counter()
            encode(x, b)
            seconds = time.perf_counter() - t0
            _emit({"batch": b, "images": b * per_call, "seconds": seconds,
                   "loadavg": _loadavg()})
        return {"peak_rss_end": _peak_rss_bytes(), "loadavg_end": _loadavg()}
    out["loadavg_end"] = _loadavg()
    return out


def _emit(obj: dict) -> None:
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    _apply_cpu_settings(spec["threads"])
    if spec["task"] == "prepare":
        result = _worker_prepare(spec)
    else:
        result = _worker_run(spec)
    _emit(result)


# =========================================================================================
# Parent
# =========================================================================================
def _checkpoint_complete(folder: Path) -> bool:
    config = folder / "config.json"
    if not (config.is_file() and (folder / "model.safetensors").is_file()):
        return False
    try:
        vision = json.loads(config.read_text()).get("vision_config", {})
    except ValueError:
        return False
    if vision.get("image_size") != IMAGE_SIZE or vision.get("patch_size") != 16 or (
        vision.get("hidden_size", 768) != 768
    ):
        raise SystemExit(f"{folder} is not a SigLIP Base/16-224 checkpoint ({config}).")
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


class _Worker:
    """A subprocess of this script, talking JSON lines over stdin/stdout."""

    def __init__(self, spec: dict, backend: str | None, timeout: float, label: str):
        self.label, self.timeout = label, timeout
        print(f"[siglip_speed] {label} ...", file=sys.stderr, flush=True)
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
        raise SystemExit(f"[siglip_speed] {self.label} failed: {why}")

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
        print(f"[siglip_speed] {self.label} done in {wall:.1f}s", file=sys.stderr, flush=True)
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


def _render(cfg: dict, env_info: dict, runs: list[dict], loads: list[dict]) -> str:
    hf_run = next(r for r in runs if r["engine"] == "hf")
    hf_tp = {b: _median(v["images_per_s"]) for b, v in hf_run["throughput"].items()}
    lines = []
    add = lines.append
    add("# SigLIP Base/16-224 on CPU: kvmm vs transformers")
    add("")
    add(f"Generated by `{cfg['command']}` on {env_info['date']}.")
    if cfg["quick"]:
        add("")
        add("**Quick (smoke) run: batch 2, one repetition. These figures are not meaningful "
            "throughputs; run without `--quick` for those.**")
    add("")
    add("## Machine")
    add("")
    add(f"- CPU: {env_info['cpu']} ({env_info['cpu_flags']}); {env_info['cores']} logical cores "
        f"visible, {cfg['threads']} used by every run (affinity cores {cfg['cores_used']})")
    add(f"- Memory: {env_info['mem_gib']:.1f} GiB; OS: {env_info['os']}; Python {env_info['python']}")
    add("- Versions: " + ", ".join(f"{k} {v}" for k, v in env_info["versions"].items()))
    add(f"- kvmm commit: {env_info['commit']}")
    add(f"- Load average (1 min) at start / end of the run: {env_info['loadavg_start']:.2f} / "
        f"{env_info['loadavg_end']:.2f} (other processes on the machine make figures noisy)")
    add("")
    add("## Throughput: image embeddings")
    add("")
    add(f"`model.encode_images(images, batch_size=B)` (kvmm; Keras `predict`) against "
        f"`SiglipModel.get_image_features` under `torch.inference_mode()` plus L2 "
        f"normalisation (transformers, float32, attention `{hf_run.get('attn_implementation')}`). "
        f"Each timed call encodes {cfg['batches_per_call']} batch(es) of B random 224x224 "
        f"images; after {1 + cfg['extra_warmup']} warm-up call(s) (the first one compiles), "
        f"the median of {cfg['repeats']} timed call(s) is reported, with the range. "
        + ("The engines' timed calls are interleaved (all four models loaded in their own "
           "processes, one computing at a time, order rotated every round), so load from "
           "other processes affects all engines alike. " if cfg["interleaved"] else
           "Engines were timed one after the other (`--sequential`). ")
        + "kvmm/transformers > 1 means kvmm is faster.")
    add("")
    add("| engine | batch | images/s (median) | range | kvmm / transformers | first call (s) "
        "| process peak RSS (MiB) |")
    add("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        for b, v in r["throughput"].items():
            med = _median(v["images_per_s"])
            ratio = med / hf_tp[b] if r["engine"] != "hf" else 1.0
            rng = f"{min(v['images_per_s']):.2f}-{max(v['images_per_s']):.2f}"
            add(f"| {_engine_label(r)} | {b} | {med:.2f} | {rng} | {ratio:.2f} | "
                f"{v['first_call_s']:.1f} | {_mib(v['peak_rss']):.0f} |")
    add("")
    gaps = [f"{r['backend']} {r['parity_max_abs_diff']:.1e}" for r in runs if r["engine"] == "kvmm"]
    add(f"Check that the same network ran: max |difference| of the normalized embeddings "
        f"against transformers: {', '.join(gaps)}.")
    kvmm_runs = [r for r in runs if r["engine"] == "kvmm"]
    add("Keras `jit_compile` as resolved by `predict`: " + ", ".join(
        f"{r['backend']} {r.get('jit_compile')}" for r in kvmm_runs) + ".")
    add("")
    add("## Load time and memory")
    add("")
    add(f"Each load runs in a fresh process ({cfg['load_repeats']} process(es) per row; medians "
        f"are reported). Timed: only the `SigLIPBaseP16(weights=...)` / `from_pretrained` call, "
        f"after the imports and the backend's start (shown separately). The whole model "
        f"(image and text towers, ~203M parameters, 0.8 GB in float32) is loaded. Memory is "
        f"measured after the load and after reading every weight once: transformers "
        f"memory-maps the safetensors file, so its weights become resident only when first "
        f"used (the column *right after load*). Peak RSS is `ru_maxrss` (covering the load "
        f"and the read); the increase is over the RSS after the imports. Ratios are "
        f"kvmm/transformers (> 1: kvmm slower or larger).")
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
    keys = []
    for l in loads:
        key = (l["engine"], l.get("backend"), l["source"])
        if key not in keys:
            keys.append(key)
    source_label = {
        "folder": "HF folder (safetensors, converted)",
        "h5": "`.weights.h5` (cached load)",
    }
    for key in keys:
        group = [l for l in loads if (l["engine"], l.get("backend"), l["source"]) == key]
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
    add(f"- Batch sizes {', '.join(map(str, cfg['batch_sizes']))}; {cfg['repeats']} timed "
        f"repetition(s); {cfg['batches_per_call']} batch(es) per call; "
        f"{cfg['load_repeats']} load process(es) per row.")
    add(f"- Threads: every subprocess is pinned to the same {cfg['threads']} core(s) "
        f"(`sched_setaffinity`), with `torch.set_num_threads({cfg['threads']})`, TensorFlow "
        f"intra-op threads {cfg['threads']}, `OMP_NUM_THREADS`/`MKL_NUM_THREADS`="
        f"{cfg['threads']}; XLA (JAX) sizes its thread pool from the affinity mask. No "
        f"framework gets a different setting.")
    add("- Checkpoint: random weights, real SigLIP Base/16-224 architecture (speed does not "
        "depend on the values), built with transformers and saved with `save_pretrained`.")
    add(f"- `KVMM_CACHE=off`; the cached load reads a `.weights.h5` saved by kvmm "
        f"(`model.save_weights`), the file kvmm's converted-weights cache holds.")
    add(f"- Total wall time of the run: {cfg['total_s']:.0f} s.")
    add("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 2, 1 repetition, 1 load process per row")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"Markdown output (default {DEFAULT_OUT.relative_to(HERE.parent)}; "
                             f"with --quick {QUICK_OUT.relative_to(HERE.parent)}); raw numbers "
                             f"go next to it as .json")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="folder for the random-weight HF checkpoint; built there if "
                             "missing, reused otherwise (default: a temporary folder)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated Keras backends (default: all three)")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 8,32)")
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
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        _worker_main(args.worker)
        return 0

    t_total = time.perf_counter()
    quick = args.quick
    batch_sizes = [int(b) for b in (args.batch_sizes or ("2" if quick else "8,32")).split(",")]
    repeats = args.repeats or (1 if quick else 3)
    load_repeats = args.load_repeats or (1 if quick else 2)
    extra_warmup = max(args.warmup - 1, 0)
    timeout = args.timeout or (300 if quick else 900)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}")
    allowed = sorted(os.sched_getaffinity(0))
    threads = min(args.threads or len(allowed), len(allowed))
    out_md = args.out or (QUICK_OUT if quick else DEFAULT_OUT)

    # The .weights.h5 of the cached-load rows is written by this run's kvmm (so it always
    # fits the code under test) into a temporary folder, with the checkpoint unless
    # --checkpoint names one to keep.
    tmp_root = Path(tempfile.mkdtemp(prefix="siglip_speed_"))
    if args.checkpoint is None:
        folder = tmp_root / "siglip-base-patch16-224-random"
    else:
        folder = args.checkpoint.expanduser().resolve()

    loadavg_start = _loadavg()
    base = dict(threads=threads, folder=str(folder), h5=str(tmp_root / H5_NAME))
    try:
        if not _checkpoint_complete(folder):
            _run_worker({**base, "task": "prepare"}, "torch", timeout,
                        f"building the checkpoint in {folder}")

        common = dict(base, task="run", batch_sizes=batch_sizes, repeats=repeats,
                      batches_per_call=args.batches_per_call, extra_warmup=extra_warmup)
        runs, loads = [], []
        # 1. One process per engine: timed load from the HF folder (in a fresh process),
        #    warm-up, then timed calls on request. Interleaved (default): all engines stay
        #    loaded and the parent asks them in turn, one computing at a time, rotating
        #    the order every round. --sequential: one engine after the other.
        engines = [("hf", None)] + [("kvmm", b) for b in backends]

        def start(engine, backend):
            spec = dict(common, engine=engine, backend=backend, source="folder")
            if engine == "kvmm" and not Path(base["h5"]).exists():
                spec["save_h5"] = base["h5"]
            name = f"{engine}{'/' + backend if backend else ''}"
            worker = _Worker(spec, backend, timeout, f"load + warm-up + throughput {name}")
            ready = worker.receive()
            ready["throughput"] = {
                str(b): {"images": b * args.batches_per_call,
                         "first_call_s": ready["warmup"][str(b)]["first_call_s"],
                         "times_s": [], "images_per_s": [], "loadavg": []}
                for b in batch_sizes
            }
            runs.append(ready)
            loads.append(ready)
            return worker, ready

        def timed_rounds(pairs):
            for rep in range(repeats):
                order = pairs[rep % len(pairs):] + pairs[: rep % len(pairs)]
                for b in batch_sizes:
                    for worker, record in order:
                        answer = worker.request({"batch": b})
                        entry = record["throughput"][str(b)]
                        entry["times_s"].append(answer["seconds"])
                        entry["images_per_s"].append(answer["images"] / answer["seconds"])
                        entry["loadavg"].append(answer["loadavg"])

        def stop(worker, record):
            final = worker.finish(quit_message=True)
            record["peak_rss_end"] = final["peak_rss_end"]
            record["loadavg_end"] = final["loadavg_end"]
            for entry in record["throughput"].values():
                entry["peak_rss"] = final["peak_rss_end"]

        if args.sequential:
            for engine, backend in engines:
                pair = start(engine, backend)
                timed_rounds([pair])
                stop(*pair)
        else:
            pairs = []
            try:
                for engine, backend in engines:
                    pairs.append(start(engine, backend))
                print(f"[siglip_speed] timing {len(pairs)} engines, interleaved, "
                      f"{repeats} round(s)", file=sys.stderr, flush=True)
                timed_rounds(pairs)
            except BaseException:
                for worker, _ in pairs:  # the workers this run started
                    with contextlib.suppress(OSError):
                        worker.proc.kill()
                raise
            for pair in pairs:
                stop(*pair)
        # 2. More fresh processes for the load rows (folder), and the cached (.h5) loads.
        load_only = dict(common, batch_sizes=[])
        for i in range(load_repeats):
            for engine, backend in engines:
                for source in (("folder",) if engine == "hf" else ("folder", "h5")):
                    if source == "folder" and i == 0:
                        continue  # measured in step 1
                    spec = dict(load_only, engine=engine, backend=backend, source=source)
                    loads.append(_run_worker(
                        spec, backend, timeout,
                        f"load {engine}{'/' + backend if backend else ''} from {source} "
                        f"({i + 1}/{load_repeats})"))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    env_info = dict(
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
    command = "python benchmarks/siglip_speed.py" + (" " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:])) if (
        argv if argv is not None else sys.argv[1:]) else "")
    cfg = dict(
        command=command, quick=quick, interleaved=not args.sequential, threads=threads, cores_used=allowed[:threads],
        batch_sizes=batch_sizes, repeats=repeats, load_repeats=load_repeats,
        batches_per_call=args.batches_per_call, extra_warmup=extra_warmup,
        total_s=time.perf_counter() - t_total,
    )
    hf_parity = next(r for r in runs if r["engine"] == "hf")["parity"]
    for r in runs:
        r["parity_max_abs_diff"] = _cosine_gap(r.pop("parity"), hf_parity)
    markdown = _render(cfg, env_info, runs, loads)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(markdown)
    out_md.with_suffix(".json").write_text(
        json.dumps(dict(config=cfg, machine=env_info, throughput_runs=runs,
                        load_only_runs=[l for l in loads if "throughput" not in l]), indent=1)
    )
    print(markdown)
    print(f"[siglip_speed] wrote {out_md} and {out_md.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
