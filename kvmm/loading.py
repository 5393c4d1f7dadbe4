"""Building models with pretrained weights: resolve, fetch, convert, cache.

Every family (SigLIP, CLIP, ...) describes itself with a :class:`ModelFamily` (variants,
named weights, key map); :func:`create_model` does the rest the same way for all:

* ``weights=None``: random initialisation.
* a named weight (``"google_224"``): fetched from its Hugging Face repo with
  ``huggingface_hub`` (its cache, ``HF_HOME``, ``HF_HUB_OFFLINE`` and tokens apply),
  converted tensor by tensor straight into kvmm's cache (the variables in Keras layout,
  as a safetensors file), which the model then maps, as every later load does, skipping
  the conversion. On PyTorch a float32 checkpoint in the Hugging Face cache needs no
  conversion (Dense kernels stay views of the ``(out, in)`` matrices), so the model uses
  the downloaded file's pages as they are, as transformers does, and nothing is cached.
* ``"hf:<repo_id>"`` (optionally ``"hf:<repo_id>@<revision>"``): any compatible Hub checkpoint.
* a local Hugging Face checkpoint folder (``config.json`` + ``model.safetensors``):
  converted in memory, into variables of the model's own (the folder's files may be
  rewritten later; Hugging Face cache blobs never are).
* a ``.weights.h5`` file written by ``model.save_weights``.

A checkpoint that does not fit (missing, left-over or mis-shaped tensors, another
variant's config) raises :class:`kvmm.errors.WeightsError` before any variable is touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import mmap
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from kvmm.errors import HubUnavailableError, WeightsError
from kvmm.layers.initialization import no_init
from kvmm.utils.hub import hub_file, hub_file_if_exists

#: Bump when the layout of converted cache files changes (2: Keras-layout safetensors,
#: read without Keras' h5 machinery; 1 was ``.weights.h5``).
CACHE_FORMAT_VERSION = 2
CACHE_SUFFIX = ".kvmm.safetensors"

#: Where the small weight files the repository ships live (the demo model): ``weights/``
#: next to the ``kvmm`` package in a source checkout / editable install.
SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


# ---------------------------------------------------------------------------------------
# Catalog types
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NamedWeights:
    """A named pretrained weight: its Hugging Face repo and what it sets in the model.

    ``local`` names a ``.weights.h5`` file shipped with kvmm instead (relative to
    :data:`SHIPPED_WEIGHTS_DIR`); its folder also holds the model's vocabulary.
    """

    repo_id: str
    image_size: int | None = None
    vocabulary_size: int | None = None
    max_text_length: int | None = None
    multilingual: bool = False
    revision: str | None = None
    #: other model arguments this checkpoint sets (e.g. ``{"activation": "gelu"}``)
    config: dict = dataclasses.field(default_factory=dict)
    #: a shipped ``.weights.h5`` (relative to SHIPPED_WEIGHTS_DIR) instead of a Hub checkpoint
    local: str | None = None

    def overrides(self) -> dict:
        fields = ("image_size", "vocabulary_size", "max_text_length")
        values = {f: getattr(self, f) for f in fields if getattr(self, f) is not None}
        return {**values, **self.config}


@dataclasses.dataclass
class Rule:
    """One checkpoint tensor and the Keras variable(s) it fills.

    ``targets`` pairs each variable with ``convert(array, target_shape) -> array``
    (transpose, split of a fused tensor, resize of a position grid, ...).
    """

    key: str
    targets: list[tuple[object, Callable[[np.ndarray, tuple], np.ndarray]]]


@dataclasses.dataclass
class ModelFamily:
    """What :func:`create_model` needs to know about one model family."""

    name: str
    model_class: type
    variants: dict[str, dict]
    weights: dict[str, dict[str, NamedWeights]]
    #: ``model -> [Rule]``, the full key map of the family.
    key_map: Callable[[object], list[Rule]]
    #: checkpoint config (``config.json``) -> model keyword arguments.
    config_from_checkpoint: Callable[[dict], dict]
    #: model arguments that must equal the variant's (others may come from the checkpoint).
    architecture_keys: tuple[str, ...]
    #: checkpoint tensors that are not weights (buffers) and are skipped.
    ignored_keys: tuple[str, ...] = ()
    config_file: str = "config.json"
    checkpoint_files: tuple[str, ...] = ("model.safetensors", "model.safetensors.index.json")
    vocabulary_files: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------
# Checkpoint reading
# ---------------------------------------------------------------------------------------
class SafetensorsCheckpoint:
    """Lazy reader over one or several (sharded) ``.safetensors`` files.

    Tensors are read one at a time, so converting never holds more than the model and
    one tensor in memory. bfloat16 tensors are read through ``ml_dtypes``.
    """

    def __init__(self, paths: Iterable[str | os.PathLike], immutable: bool | None = None):
        from safetensors import SafetensorError, safe_open

        self._files = {}
        self._where: dict[str, str] = {}
        self._headers: dict[str, tuple[int, dict]] = {}  # path -> (data start, header)
        self._maps: dict[str, mmap.mmap] = {}  # path -> private map of the whole file
        for path in paths:
            path = str(path)
            try:
                handle = safe_open(path, framework="numpy")
            except (SafetensorError, OSError) as exc:
                raise WeightsError(
                    f"Cannot read {path}: it is truncated or not a safetensors file ({exc}). "
                    f"Delete it and download it again."
                ) from exc
            self._files[path] = handle
            for key in handle.keys():
                self._where[key] = path
        #: The files are never rewritten in place (default: all are Hugging Face cache
        #: blobs, :func:`is_hub_blob`): a model may keep the tensors :meth:`read` returns
        #: as its variables (PyTorch does).
        self.immutable = all(map(is_hub_blob, self._files)) if immutable is None else immutable

    @classmethod
    def from_file(cls, path: str | os.PathLike, immutable: bool | None = None) -> SafetensorsCheckpoint:
        """Open ``model.safetensors`` or the shards listed by a ``*.safetensors.index.json``."""
        path = Path(path)
        if path.name.endswith(".index.json"):
            try:
                index = json.loads(path.read_text())
                shards = sorted(set(index["weight_map"].values()))
            except (OSError, ValueError, KeyError) as exc:
                raise WeightsError(f"Cannot read the shard index {path}: {exc}") from exc
            return cls([path.parent / shard for shard in shards], immutable)
        return cls([path], immutable)

    def keys(self) -> list[str]:
        return list(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._files[self._where[key]].get_slice(key).get_shape())

    def dtype(self, key: str) -> np.dtype:
        return _numpy_dtype(self._files[self._where[key]].get_slice(key).get_dtype())

    #: ``read`` returns views of a file mapping: a loader must not hand them to a model as
    #: they are (a later change of the file would show through), unless the files are
    #: :attr:`immutable` (kvmm's converted cache, Hugging Face cache blobs).
    borrowed = True

    def read(self, key: str) -> np.ndarray:
        """The tensor ``key`` as a NumPy array (bfloat16 through ``ml_dtypes``): a view of
        a private (copy-on-write) memory map of its file, one map per file.

        Nothing is copied and no fresh memory is touched: the pages come from the page
        cache when the array is first read. A loader that copies the tensor calls
        :meth:`release` after it, so converting holds the model plus the tensor at hand,
        never a second copy of the checkpoint. One map per file rather than one per tensor:
        making and unmapping hundreds of maps while other threads (transposes, the
        prefaulter) fault pages in cost a SigLIP Base folder load about 0.15 s of 0.7 s on
        a 2-core VM (address-space locks and TLB shootdowns).
        """
        return _read_tensor(self._where[key], key, self._headers, self._maps)

    def release(self, key: str) -> None:
        """Take the pages of tensor ``key`` out of this process's memory (``MADV_DONTNEED``
        on the whole pages it spans), once a loader has converted or copied it into memory
        of its own and no array made by :meth:`read` is used any more. A later read maps
        them again from the page cache (the map is private and only ever read, so nothing
        is lost). Without this, a conversion would end up holding the whole checkpoint in
        its resident memory besides the model."""
        path = self._where[key]
        mapped = self._maps.get(path)
        if mapped is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        data_start, header = self._headers[path]
        start, end = header[key]["data_offsets"]
        page = mmap.PAGESIZE
        first = -(-(data_start + start) // page) * page  # pages the tensor has to itself
        last = (data_start + end) // page * page
        if last > first:
            with contextlib.suppress(OSError, ValueError):
                mapped.madvise(mmap.MADV_DONTNEED, first, last - first)


#: safetensors dtype codes -> NumPy dtypes (BF16 through ml_dtypes, see _numpy_dtype).
_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}


_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
_PREFAULT = threading.local()


def _anonymous_memory(nbytes: int) -> mmap.mmap:
    """``nbytes`` of fresh, page-aligned memory of this process alone.

    Private (``MAP_PRIVATE | MAP_ANONYMOUS``) where the platform has the flags: the
    default of ``mmap.mmap(-1, n)`` is a *shared* anonymous map, which Linux backs with
    shmem pages; on a 2-core VM those took 0.39-0.51 s to make 703 MB resident against
    0.23-0.30 s for private pages, and 0.14-0.17 s to unmap against 0.04-0.05 s."""
    if hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS"):
        return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return mmap.mmap(-1, nbytes)  # Windows: the pagefile-backed map is private already


class _Prefaulter:
    """Fresh memory for an in-memory conversion, made ready by another thread while this
    one builds the Keras model.

    Making 4 KiB pages resident costs about 2 us each on a VM (0.35 s for SigLIP Base's
    0.7 GB of kernels); the model build is Python work on one core. ``madvise`` called
    through ctypes releases the GIL (``mmap.madvise`` does not), so the two overlap.
    :func:`aligned_empty` takes the buffers by size; once it finds none ready it says so
    and the thread stops, so no more memory is prepared than the conversion can use.
    """

    def __init__(self, sizes: list[int]):
        self._pool: dict[int, list[mmap.mmap]] = {}
        self._expected = set(sizes)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(sizes,), daemon=True,
                                        name="kvmm-prefault")
        self._thread.start()

    def _run(self, sizes: list[int]) -> None:
        try:
            import ctypes

            madvise = ctypes.CDLL(None, use_errno=True).madvise
            madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            for nbytes in sizes:
                if self._stopped:
                    return
                buffer = _anonymous_memory(nbytes)
                address = np.frombuffer(buffer, np.uint8).ctypes.data
                if madvise(address, nbytes, _MADV_POPULATE_WRITE) != 0:
                    return  # not supported (Linux < 5.14): pages come on first use
                self._pool.setdefault(nbytes, []).append(buffer)
        except Exception:  # only an optimisation
            return

    def take(self, nbytes: int) -> mmap.mmap | None:
        pool = self._pool.get(nbytes)
        if pool:
            return pool.pop()  # only this thread takes; the other one only appends
        if nbytes in self._expected:
            self._stopped = True  # the conversion caught up: it allocates from here on
        return None

    def close(self) -> None:
        self._stopped = True
        self._thread.join()
        self._pool.clear()


@contextlib.contextmanager
def _prefaulting(sizes: list[int]):
    """Inside, :func:`aligned_empty` of this thread takes memory a :class:`_Prefaulter`
    made ready for ``sizes`` (bytes) where it can."""
    if not sizes:
        yield
        return
    prefaulter = _Prefaulter(sizes)
    _PREFAULT.current = prefaulter
    try:
        yield
    finally:
        _PREFAULT.current = None
        prefaulter.close()


def aligned_empty(shape, dtype, alignment: int = 64) -> np.ndarray:
    """``np.empty`` whose data starts on an ``alignment``-byte boundary. JAX's CPU client
    then takes the array without copying it (``device_put`` aliases 64-byte aligned
    host memory), so a loaded variable costs one copy of its weights, not two.

    Arrays of 1 MiB and more get a page-aligned anonymous memory map of their own, in
    ordinary 4 KiB pages: NumPy asks for transparent huge pages for large arrays
    (``madvise(MADV_HUGEPAGE)``), and where the kernel then compacts memory to find them
    (``defrag=madvise``, a common default) first-touching the weights of a model costs
    several times what small pages do (677 MB of SigLIP Base kernels: 1.1-3.5 s against
    0.4-0.5 s on a 2-core VM)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes >= 1 << 20 and alignment <= mmap.PAGESIZE:
        prefaulter = getattr(_PREFAULT, "current", None)
        buffer = prefaulter.take(nbytes) if prefaulter is not None else None
        if buffer is not None:
            return np.frombuffer(buffer, dtype).reshape(shape)
        buffer = _anonymous_memory(nbytes)
        with contextlib.suppress(OSError, ValueError):  # Linux >= 5.14 only
            # All pages in one call instead of one fault each: the array is about to be
            # written in full (about a quarter faster).
            buffer.madvise(_MADV_POPULATE_WRITE)
        return np.frombuffer(buffer, dtype).reshape(shape)
    buffer = np.empty(nbytes + alignment, np.uint8)
    start = -buffer.ctypes.data % alignment
    return buffer[start : start + nbytes].view(dtype).reshape(shape)


def _numpy_dtype(code: str) -> np.dtype:
    if code == "BF16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if code not in _SAFETENSORS_DTYPES:
        raise WeightsError(f"Unsupported safetensors dtype {code!r}.")
    return np.dtype(_SAFETENSORS_DTYPES[code])


def _read_tensor(path: str, key: str, headers: dict, maps: dict) -> np.ndarray:
    """Tensor ``key`` of the safetensors file ``path``: a view of the file's private memory
    map (``maps[path]``, made on the first read, with the parsed header in ``headers``)."""
    if path not in maps:
        with open(path, "rb", buffering=0) as f:
            header_size = int.from_bytes(f.read(8), "little")
            headers[path] = (8 + header_size, json.loads(f.read(header_size)))
            maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    data_start, header = headers[path]
    info = header[key]
    start, end = info["data_offsets"]
    dtype, shape = _numpy_dtype(info["dtype"]), tuple(info["shape"])
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes != end - start:
        raise WeightsError(f"{path}: tensor {key!r} has {end - start} bytes for shape "
                           f"{info['shape']} ({info['dtype']}); the file is damaged.")
    mapped = maps[path]
    if data_start + end > len(mapped):
        raise WeightsError(f"{path} is truncated (tensor {key!r}). Delete it and "
                           f"download it again.")
    if nbytes == 0:
        return np.empty(shape, dtype)
    return np.frombuffer(mapped, dtype, count=nbytes // dtype.itemsize,
                         offset=data_start + start).reshape(shape)


# ---------------------------------------------------------------------------------------
# Applying a key map
# ---------------------------------------------------------------------------------------
def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_key_map(
    rules: list[Rule], checkpoint, *, source: str, ignored_keys: tuple[str, ...] = ()
) -> None:
    """Check every rule against ``checkpoint`` without reading any tensor: raises
    :class:`WeightsError` listing missing, left-over and mis-shaped tensors."""
    available = set(checkpoint.keys())
    needed = {rule.key for rule in rules}
    missing = sorted(needed - available)
    leftover = sorted(
        k for k in available - needed if not any(re.search(p, k) for p in ignored_keys)
    )
    problems = []
    if missing:
        problems.append(f"missing tensors: {_describe(missing)}")
    if leftover:
        problems.append(f"unexpected tensors: {_describe(leftover)}")
    if problems:
        raise WeightsError(f"Checkpoint {source} does not fit this model; " + "; ".join(problems))
    # Shapes are checked on converted *metadata*, so a wrong variant fails before anything
    # is read or assigned.
    for rule in rules:
        shape = checkpoint.shape(rule.key)
        for variable, convert in rule.targets:
            expected = tuple(variable.shape)
            # A zero-strided stand-in: costs no memory whatever the tensor's size.
            probe = convert(np.broadcast_to(np.zeros((), np.float32), shape), expected)
            if tuple(probe.shape) != expected:
                raise WeightsError(
                    f"Checkpoint {source}: tensor {rule.key!r} has shape {shape}, which "
                    f"does not fit {variable.path} of shape {expected}. The checkpoint is "
                    f"probably of another variant or configuration."
                )


def _progress_bar(total: int, source: str, progress: bool | None):
    from huggingface_hub.utils import tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS

    disable = None if progress is None else not progress
    return tqdm(total=total, desc=f"Converting {source}", unit="tensor", disable=disable)


def apply_key_map(rules: list[Rule], checkpoint, *, source: str, progress: bool | None = None):
    """Assign tensor by tensor, converting in memory; ``rules`` were checked against
    ``checkpoint`` by :func:`check_key_map`.

    Tensors kept as they are (biases, LayerNorms, embeddings; on PyTorch also the
    ``(out, in)`` matrices behind Dense kernels) are used in place when the checkpoint's
    files are immutable, and copied otherwise (the model must not change when a local
    checkpoint file is overwritten). JAX and TensorFlow transpose a Dense kernel into new
    memory in any case (:func:`backend_tensor`).
    """
    import keras

    private = getattr(checkpoint, "borrowed", False) and not getattr(checkpoint, "immutable", False)
    views_kept = keras.backend.backend() == "torch"
    release = getattr(checkpoint, "release", None)
    with _progress_bar(len(rules), source, progress) as bar:
        for rule in rules:
            array = checkpoint.read(rule.key)
            copied = True  # whether no variable keeps the checkpoint's memory
            for variable, convert in rule.targets:
                value = convert(array, tuple(variable.shape))
                if private and np.may_share_memory(value, array):
                    if not _is_transposed(value):
                        value = _owned_copy(value)
                    elif views_kept:  # PyTorch keeps the kernel a view: copy the matrix
                        value = _owned_copy(value.T).T
                # JAX and TensorFlow transpose a kernel into memory of its own.
                copied = copied and (not np.may_share_memory(value, array)
                                     or (_is_transposed(value) and not views_kept))
                set_variable(variable, value)
            del array, value
            if copied and release is not None:
                release(rule.key)
            bar.update(1)


def _kept_as_is(rules: list[Rule], checkpoint) -> bool:
    """Whether loading ``checkpoint`` in memory uses its tensors as the variables without
    converting anything: PyTorch (which keeps Dense kernels as views of the ``(out, in)``
    matrices), immutable files, every tensor already of its variable's dtype. Then a
    converted cache would only duplicate the checkpoint."""
    import keras

    if not (keras.backend.backend() == "torch" and getattr(checkpoint, "borrowed", False)
            and getattr(checkpoint, "immutable", False)):
        return False
    return all(checkpoint.dtype(rule.key) == _numpy_dtype_of(variable)
               for rule in rules for variable, _ in rule.targets)


def _is_transposed(value) -> bool:
    """Whether ``value`` is the transposed view of a C-contiguous matrix (a Dense kernel of
    a key map, ``checkpoint_tensor.T``)."""
    return (isinstance(value, np.ndarray) and value.ndim == 2 and not value.flags.c_contiguous
            and value.T.flags.c_contiguous)


def _owned_copy(value: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``value`` in fresh, 64-byte aligned memory."""
    out = aligned_empty(value.shape, value.dtype)
    out[...] = value
    return out


#: Bytes of each destination row written per step by :func:`transposed_copy`: one cache
#: line, so a step reads that many *elements* from each of as many source rows.
_TRANSPOSE_LINE = 64
_transpose_pool = None


def _copy_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def transposed_copy(value: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A C-contiguous copy of ``value``, the transposed view of a C-contiguous matrix (a
    Dense kernel taken from an ``(out, in)`` checkpoint tensor), into ``out`` or fresh
    64-byte aligned memory.

    Copied in blocks of rows of the matrix: each block is read contiguously and written
    as a band of columns one cache line wide (16 float32 or 32 bfloat16 values per
    destination row), which stays in the CPU caches; large matrices are split between up
    to 4 threads (NumPy copies without the GIL). On a 2-core AMD EPYC VM, SigLIP Base's
    kernel shapes (768 x 768, 3072 x 768, 768 x 3072) transposed at 5.2-5.6 GB/s in
    float32 this way (bands of 64 rows: 3.6 GB/s; 32 rows: 3.1) and 2.4 GB/s in bfloat16
    (bands of 32 rows, against 2.1 for 64), far above NumPy's copy of the whole strided
    view; JAX's eager transpose would compile once per shape."""
    global _transpose_pool
    matrix = value.T
    if out is None:
        out = aligned_empty(value.shape, value.dtype)
    rows = matrix.shape[0]
    block = max(1, _TRANSPOSE_LINE // value.itemsize)

    def copy(start: int, stop: int) -> None:
        for i in range(start, stop, block):
            j = min(i + block, stop)
            out[:, i:j] = matrix[i:j].T

    threads = _copy_threads() if value.nbytes >= 1 << 20 else 1
    if threads == 1:
        copy(0, rows)
        return out
    if _transpose_pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _transpose_pool = ThreadPoolExecutor(threads, thread_name_prefix="kvmm-transpose")
    step = -(-rows // threads)
    step += -step % block
    for future in [_transpose_pool.submit(copy, lo, min(lo + step, rows))
                   for lo in range(0, rows, step)]:
        future.result()
    return out


def backend_tensor(value):
    """``value`` (a NumPy array) as a tensor of the current Keras backend, without a copy
    where the backend can share the array's memory (JAX: 64-byte aligned arrays; PyTorch:
    writeable ones; TensorFlow: writeable, 64-byte aligned ones, see _tensorflow_alias).

    The transposed view of a matrix (a Dense kernel taken from an ``(out, in)`` checkpoint
    tensor) stays that view on PyTorch, the layout ``F.linear`` takes
    (:class:`kvmm.layers.Dense`), so nothing is transposed at all; JAX and TensorFlow get
    a contiguous copy (:func:`transposed_copy`). Other non-contiguous arrays are copied by
    NumPy."""
    import keras

    if not isinstance(value, np.ndarray):
        return value
    backend = keras.backend.backend()
    transposed = backend == "torch" and _is_transposed(value)
    if _is_transposed(value) and not transposed:
        value = transposed_copy(value)
    source = value.T if transposed else value
    if not source.flags.c_contiguous:
        source = _owned_copy(source)
    if backend == "jax":
        import jax

        return jax.device_put(source)  # aliases aligned host memory on the CPU
    if backend == "torch":
        import torch

        if not source.flags.writeable:
            source = _owned_copy(source)
        if source.dtype.name == "bfloat16":
            tensor = torch.from_numpy(source.view(np.int16)).view(torch.bfloat16)
        else:
            tensor = torch.from_numpy(source)
        # The kernel stays the transposed view of the (out, in) matrix: Dense hands
        # kernel.t(), the contiguous matrix itself, to F.linear, as torch.nn.Linear does.
        return tensor.t() if transposed else tensor
    if backend == "tensorflow":
        tensor = _tensorflow_alias(source)
        return source if tensor is None else tensor
    return source


#: NumPy dtypes TensorFlow takes through DLPack (bfloat16 goes as uint16, then bitcast).
_DLPACK_DTYPES = frozenset(("float16", "float32", "float64", "int8", "int16", "int32",
                            "int64", "uint8", "bool", "bfloat16"))


def _tensorflow_alias(array: np.ndarray):
    """A TensorFlow tensor using ``array``'s memory, or None where that is not safe.

    ``tf.constant`` always copies, so a TensorFlow variable would otherwise cost a fresh
    copy of every weight (from the cache's memory map: all of them). Through DLPack the
    tensor keeps ``array`` (and the map under it) alive and reads its memory as it is; a
    ``tf.Variable`` made from the tensor shares it, and writing to the variable later gives
    it memory of its own. TensorFlow's kernels require 64-byte aligned data (anything else
    aborts the process), hence the strict check; kvmm's cache lays every large tensor out
    that way, and so do recent ``safetensors`` writers."""
    import tensorflow as tf

    if (array.dtype.name not in _DLPACK_DTYPES or not array.flags.c_contiguous
            or not array.flags.writeable or array.size == 0 or array.ctypes.data % 64):
        return None
    bfloat16 = array.dtype.name == "bfloat16"
    try:
        tensor = tf.experimental.dlpack.from_dlpack(
            (array.view(np.uint16) if bfloat16 else array).__dlpack__())
    except (BufferError, TypeError, ValueError, tf.errors.OpError):
        return None
    return tf.bitcast(tensor, tf.bfloat16) if bfloat16 else tensor


def set_variable(variable, value) -> None:
    """Give ``variable`` its value: ``assign`` for an ordinary variable; one that
    :func:`create_model` left uninitialised (built in a ``keras.StatelessScope``, holding no
    memory yet) is initialised with ``value`` directly, as Keras' deferred initialisation
    would (so a distribution's layout applies as for any initializer)."""
    if tuple(value.shape) != tuple(variable.shape):
        raise WeightsError(
            f"Value of shape {tuple(value.shape)} does not fit {variable.path} of shape "
            f"{tuple(variable.shape)}."
        )
    if getattr(variable, "_value", True) is None and getattr(variable, "_initializer", None):
        value = backend_tensor(value)
        # What Keras' deferred initialisation does with an initializer's result, given the
        # value itself: on JAX the variable's layout (keras.distribution) is applied by
        # placing the array's shards directly on their devices.
        variable._initialize(variable._convert_to_tensor(value, dtype=variable.dtype))
        variable._initializer = None
    else:
        variable.assign(backend_tensor(value))


def _finish_deferred(variables, initialize: bool = True) -> None:
    """After loading into a model built under ``keras.StatelessScope(initialize_variables=
    False)``: initialise what the loader did not set (with the variable's own initializer;
    not when the load failed and the model is dropped) and take the model's variables off
    Keras' global list of variables awaiting initialisation."""
    from keras.src.backend.common import global_state

    variables = list(variables)
    for variable in variables if initialize else ():
        if getattr(variable, "_value", True) is None and getattr(variable, "_initializer", None):
            variable._deferred_initialize()
    pending = global_state.get_global_attribute("uninitialized_variables")
    if pending:
        ids = {id(v) for v in variables}
        global_state.set_global_attribute(
            "uninitialized_variables", [v for v in pending if id(v) not in ids]
        )


# ---------------------------------------------------------------------------------------
# Converted-weights cache
# ---------------------------------------------------------------------------------------
def cache_dir() -> Path | None:
    """Folder of converted weights: ``$KVMM_CACHE``, else ``$XDG_CACHE_HOME/kvmm``, else
    ``~/.cache/kvmm``. ``KVMM_CACHE=off`` disables the cache."""
    value = os.environ.get("KVMM_CACHE")
    if value is not None and value.strip().lower() in {"", "0", "off", "false", "none"}:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kvmm"


def _cache_path(model, variant: str, repo_id: str, revision: str) -> Path | None:
    root = cache_dir()
    if root is None:
        return None
    identity = json.dumps(
        {
            "format": CACHE_FORMAT_VERSION,
            "repo": repo_id,
            "revision": revision,
            # The constructor arguments (not get_config(), which makes Keras import
            # TensorFlow, ~1.5 s, whatever the backend, when it is installed).
            "config": getattr(model, "_recorded_arguments", None) or model.get_config(),
            "dtype_policy": model.dtype_policy.name,
            "variable_dtype": model.dtype_policy.variable_dtype,
        },
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    stem = f"{variant}--{repo_id.replace('/', '--')}--{revision[:10]}--{digest}"
    return root / "converted" / f"{stem}{CACHE_SUFFIX}"


def _write_atomic(path: str | os.PathLike, write: Callable[[str], None], suffix: str) -> None:
    """``write(temporary path)``, then an atomic rename to ``path``: an interrupted write
    never leaves a file under ``path`` (and its temporary file is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name[: -len(suffix)]}.{uuid.uuid4().hex}.partial{suffix}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    now = time.time()
    for stale in path.parent.glob(f".*.partial{suffix}"):  # left by killed processes
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > 24 * 3600:
                stale.unlink()


def save_weights_atomic(model, path: str | os.PathLike) -> None:
    """``model.save_weights(path)`` (a ``.weights.h5`` file) written atomically."""
    _write_atomic(path, model.save_weights, ".weights.h5")


def _variable_keys(model) -> list[str]:
    """One key per variable: its position in ``model.weights`` and its path (paths alone
    repeat across the towers; the order is fixed by the model's config, which the cache
    file name encodes)."""
    return [f"{i:04d}:{v.path}" for i, v in enumerate(model.weights)]


_NUMPY_TO_SAFETENSORS = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items()}


def write_safetensors(tensors: dict, path: str, on_tensor: Callable[[], None] | None = None) -> None:
    """A safetensors file (header JSON, then each tensor's bytes); bfloat16 (ml_dtypes)
    included. ``tensors`` maps each key to a NumPy array, or to ``(dtype, shape, fetch)``
    where ``fetch()`` returns the array when its bytes are written: then only one tensor
    at a time is held in memory. ``on_tensor()`` is called after each tensor is written.

    The data are laid out for zero-copy reading: the header is padded so that the data
    start on a 64-byte boundary, and the tensors whose size is a multiple of 64 bytes (every
    large one) come first, so each of them starts on a 64-byte boundary too (what JAX's CPU
    client needs to use the memory as it is); the few others follow, widest dtype first.
    """
    entries = {
        key: (value.dtype, value.shape, lambda value=value: value)
        if isinstance(value, np.ndarray) else value
        for key, value in tensors.items()
    }
    sizes = {key: int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
             for key, (dtype, shape, _) in entries.items()}
    order = sorted(entries, key=lambda k: (sizes[k] % 64 != 0, -np.dtype(entries[k][0]).itemsize))
    header, offset = {}, 0
    for key in order:
        dtype, shape, _ = entries[key]
        dtype = np.dtype(dtype)
        code = "BF16" if dtype.name == "bfloat16" else _NUMPY_TO_SAFETENSORS.get(dtype)
        if code is None:
            raise WeightsError(f"Cannot store {key!r} of dtype {dtype} in safetensors.")
        header[key] = {"dtype": code, "shape": list(shape),
                       "data_offsets": [offset, offset + sizes[key]]}
        offset += sizes[key]
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-(8 + len(blob)) % 64)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for key in order:
            dtype, shape, fetch = entries[key]
            array = np.asarray(fetch(), dtype=dtype)
            array = array if array.flags.c_contiguous else array.copy(order="C")
            if array.shape != tuple(shape):
                raise WeightsError(f"{key!r} has shape {array.shape}, expected {tuple(shape)}.")
            f.write(array.reshape(-1).view(np.uint8).data)
            del array
            if on_tensor is not None:
                on_tensor()


def _numpy_dtype_of(variable) -> np.dtype:
    """NumPy dtype of a Keras variable (or of a dtype policy's variables)."""
    dtype = getattr(variable, "variable_dtype", None) or variable.dtype
    return _numpy_dtype("BF16") if dtype == "bfloat16" else np.dtype(dtype)


def write_converted(model, rules: list[Rule], checkpoint, path: str | os.PathLike, *,
                    source: str, progress: bool | None = None) -> None:
    """Convert ``checkpoint`` by ``rules`` straight into a cache file for ``model`` (its
    variables in Keras layout, keyed by :func:`_variable_keys`), atomically, one tensor
    at a time; ``model``'s variables are not touched (:func:`load_converted` then maps
    the file).

    Nothing of the model's size is allocated: each kernel is transposed into one reused
    buffer and written out, so the converted weights exist only as the file's pages.
    Converting into variables and writing those out would allocate them twice, and fresh
    memory is what a first load mostly waits for.
    """
    keys = dict(zip(map(id, model.weights), _variable_keys(model)))
    scratch = np.empty(0, np.uint8)
    done = []  # the checkpoint tensor written last: its pages go once the next one is read
    release = getattr(checkpoint, "release", lambda key: None)

    def fetch(key: str, variable, convert):
        def converted():
            nonlocal scratch
            if done and done[0] != key:
                release(done.pop())
            if not done:
                done.append(key)
            value = convert(checkpoint.read(key), tuple(variable.shape))
            if _is_transposed(value):
                if scratch.nbytes < value.nbytes:
                    scratch = aligned_empty(value.nbytes, np.uint8)
                out = scratch[: value.nbytes].view(value.dtype).reshape(value.shape)
                value = transposed_copy(value, out)
            return value

        return converted

    tensors = {
        keys[id(variable)]: (_numpy_dtype_of(variable), tuple(variable.shape),
                             fetch(rule.key, variable, convert))
        for rule in rules for variable, convert in rule.targets
    }
    with _progress_bar(len(tensors), source, progress) as bar:
        _write_atomic(path, lambda tmp: write_safetensors(tensors, tmp, lambda: bar.update(1)),
                      CACHE_SUFFIX)
    for key in done:
        release(key)


def load_converted(model, path: str | os.PathLike) -> None:
    """Fill ``model`` from a file written by :func:`write_converted`: each variable straight
    from its bytes (no transposes, no Keras h5 machinery).

    On every backend the variables use the file's (copy-on-write) memory map as it is, as
    transformers does with a safetensors checkpoint: the load itself reads nothing, and each
    weight is paged in from the page cache when first used (TensorFlow takes the memory
    through DLPack, see ``_tensorflow_alias``; the few tensors too small to be 64-byte
    aligned are copied). The cache file is only ever replaced (atomic rename), never
    rewritten in place, so the mapping stays valid."""
    checkpoint = SafetensorsCheckpoint([path])
    keys = _variable_keys(model)
    if sorted(keys) != sorted(checkpoint.keys()):
        raise WeightsError(f"{path} does not hold this model's variables.")
    for key, variable in zip(keys, model.weights):
        value = checkpoint.read(key)
        if value.dtype != _numpy_dtype_of(variable):
            raise WeightsError(f"{path}: {key} is {value.dtype}, the model wants {variable.dtype}.")
        set_variable(variable, value)


def load_weights_file(model, path: str | os.PathLike) -> None:
    """``model.load_weights`` with an error that names the file and the model.

    Keras' ``load_weights`` runs inside a ``keras.StatelessScope``, which records each
    value instead of writing it; :func:`set_variable` then gives every variable its value.
    Variables of a model built by :func:`create_model` hold no memory until then (no zero
    fill first); ordinary variables are assigned as usual.
    """
    import keras

    record = keras.backend.backend() != "tensorflow"
    if not record:
        # TensorFlow keeps the recorded tensors' memory after they are released, so
        # recording doubles the peak; zero-filled variables assigned in place cost less.
        _finish_deferred(model.variables)
    scope = keras.StatelessScope(initialize_variables=False)
    try:
        with scope if record else contextlib.nullcontext():
            model.load_weights(str(path))
    except Exception as exc:  # Keras raises ValueError / OSError / KeyError variants
        raise WeightsError(
            f"{path} does not fit {getattr(model, 'variant', None) or model.name}: {exc}"
        ) from exc
    if not record:
        return
    recorded = getattr(scope, "state_mapping", {})
    for variable in model.variables:
        value = scope.get_current_value(variable)
        if value is not None:
            recorded.pop(id(variable), None)  # hold each value only until it is used
            set_variable(variable, value)
            del value


# ---------------------------------------------------------------------------------------
# Resolving the ``weights=`` argument
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Source:
    kind: str  # "named" | "hub" | "folder" | "h5"
    label: str
    repo_id: str | None = None
    revision: str | None = None
    path: Path | None = None
    named: NamedWeights | None = None


def resolve_weights(family: ModelFamily, variant: str, weights) -> _Source:
    """Classify a ``weights=`` argument (named, ``hf:``, folder, ``.weights.h5``) or raise
    :class:`WeightsError` listing what is accepted. Reaches no network."""
    named = family.weights.get(variant, {})
    if isinstance(weights, str) and weights in named:
        spec = named[weights]
        if spec.local is not None:
            path = SHIPPED_WEIGHTS_DIR / spec.local
            if not path.is_file():
                raise WeightsError(
                    f"The shipped weights {variant}/{weights} are not installed ({path} is "
                    f"missing): they come with a source checkout of kvmm (pip install -e .)."
                )
            return _Source("h5", f"{variant}/{weights} ({path})", path=path, named=spec)
        return _Source("named", f"{variant}/{weights} ({spec.repo_id})", spec.repo_id,
                       spec.revision, named=spec)
    if isinstance(weights, str) and weights.startswith("hf:"):
        repo_id, _, revision = weights[3:].partition("@")
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
            raise WeightsError(f"{weights!r} is not of the form 'hf:<owner>/<repo>[@revision]'.")
        return _Source("hub", repo_id, repo_id, revision or None)
    path = Path(os.path.expanduser(str(weights)))
    if path.is_dir():
        return _Source("folder", str(path), path=path)
    if path.is_file() and path.name.endswith(".weights.h5"):
        return _Source("h5", str(path), path=path)
    if path.is_file():
        raise WeightsError(
            f"{path} is a file but not a Keras '.weights.h5' file. Pass the checkpoint's "
            f"folder (with {family.config_file}) instead of a single file."
        )
    others = [v for v, names in family.weights.items() if v != variant and weights in names]
    hint = f" {weights!r} is a weight of {', '.join(others)}." if others else ""
    looks_like_path = os.sep in str(weights) or str(weights).endswith((".h5", ".safetensors"))
    if looks_like_path:
        raise WeightsError(f"No such file or folder: {weights}")
    raise WeightsError(
        f"Unknown weights {weights!r} for {variant}. Named weights: "
        f"{', '.join(named) or 'none'}.{hint} Or pass a '.weights.h5' file, a local Hugging "
        f"Face checkpoint folder, or 'hf:<repo_id>'."
    )


def _revision_of(local_path: str) -> str:
    """Commit hash of a file in the Hugging Face cache (``.../snapshots/<hash>/file``)."""
    parts = Path(local_path).parts
    if "snapshots" in parts:
        return parts[parts.index("snapshots") + 1]
    return "unknown"


def _find_in_folder(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _fetch_checkpoint(family: ModelFamily, source: _Source) -> Path:
    """The local checkpoint file (downloading it for Hub sources)."""
    if source.kind == "folder":
        found = _find_in_folder(source.path, family.checkpoint_files)
        if found is None:
            present = sorted(p.name for p in source.path.iterdir())[:8]
            raise WeightsError(
                f"{source.path} has none of {', '.join(family.checkpoint_files)} (a "
                f"{family.name} checkpoint folder holds them; this one has: "
                f"{', '.join(present) or 'nothing'})."
            )
        return found
    unavailable = None
    for name in family.checkpoint_files:
        try:
            local = hub_file_if_exists(source.repo_id, name, revision=source.revision)
        except HubUnavailableError as exc:  # offline: a later candidate may be cached
            unavailable = unavailable or exc
            continue
        if local is None:
            continue
        if name.endswith(".index.json"):
            index = json.loads(Path(local).read_text())
            for shard in sorted(set(index["weight_map"].values())):
                hub_file(source.repo_id, shard, revision=source.revision)
        return Path(local)
    if unavailable is not None:
        raise unavailable
    raise WeightsError(f"{source.repo_id} has none of {', '.join(family.checkpoint_files)}.")


def is_hub_blob(path: str | os.PathLike) -> bool:
    """Whether ``path`` is (a link to) a file of the Hugging Face cache itself:
    ``models--<owner>--<name>/blobs/<hash>``. huggingface_hub downloads into a temporary
    file and renames it there, and never rewrites a blob in place, so a memory map of one
    stays valid. (A snapshot link pointing anywhere else, e.g. a local folder, does not
    count.)"""
    resolved = Path(path).resolve()
    return resolved.parent.name == "blobs" and resolved.parent.parent.name.startswith("models--")


def open_checkpoint(path: str | os.PathLike):
    """A lazy tensor reader for ``path``: :class:`SafetensorsCheckpoint` for
    ``.safetensors`` (or a shard index), otherwise a PyTorch pickle read without running
    code from it (:class:`kvmm.utils.torch_pickle.TorchCheckpoint`)."""
    path = Path(path)
    if path.name.endswith((".safetensors", ".index.json")):
        return SafetensorsCheckpoint.from_file(path)
    from kvmm.utils.torch_pickle import TorchCheckpoint

    return TorchCheckpoint(path)


def _checkpoint_config(family: ModelFamily, source: _Source) -> tuple[dict | None, str | None]:
    """(config dict, revision) of the checkpoint; config is None if it has no config file."""
    if source.kind == "folder":
        config_path = source.path / family.config_file
        if not config_path.is_file():
            return None, None
        local = str(config_path)
    else:
        local = hub_file_if_exists(source.repo_id, family.config_file, revision=source.revision)
        if local is None:
            return None, source.revision
    try:
        config = json.loads(Path(local).read_text())
    except ValueError as exc:
        raise WeightsError(f"{local} is not valid JSON: {exc}") from exc
    return config, _revision_of(local)


def _matching_variants(family: ModelFamily, arch: dict) -> list[str]:
    return [
        name
        for name, spec in family.variants.items()
        if all(spec.get(k) == arch.get(k) for k in family.architecture_keys)
    ]


def _check_architecture(family: ModelFamily, variant: str, arch: dict, source: _Source):
    expected = family.variants[variant]
    diffs = [
        f"{k}={arch[k]} (expected {expected[k]})"
        for k in family.architecture_keys
        if k in arch and arch[k] != expected[k]
    ]
    if diffs:
        fits = _matching_variants(family, {**expected, **arch})
        hint = f" It is a {' / '.join(fits)} checkpoint." if fits else ""
        raise WeightsError(
            f"Checkpoint {source.label} does not fit {variant}: {', '.join(diffs)}.{hint}"
        )


@contextlib.contextmanager
def _no_garbage_collection():
    """Python's cyclic garbage collector paused: building a model creates tens of thousands
    of small objects, and the full collections they set off (scanning every object the
    backends imported) cost more than the build itself. Reference counting still frees
    everything as usual; the collector resumes afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_no_garbage_collection()
def create_model(
    family: ModelFamily,
    variant: str,
    weights=None,
    input_shape=None,
    name: str | None = None,
    dtype=None,
    progress: bool | None = None,
    **kwargs,
):
    """Build ``variant`` of ``family`` and load ``weights`` into it (see module docstring)."""
    if variant not in family.variants:
        raise WeightsError(
            f"Unknown {family.name} variant {variant!r}; choose one of {', '.join(family.variants)}."
        )
    if input_shape is not None and (len(input_shape) != 3 or input_shape[-1] != 3):
        raise ValueError(
            f"input_shape must be (height, width, 3) (channels-last RGB), got {input_shape}."
        )
    config = dict(family.variants[variant])
    source = resolve_weights(family, variant, weights) if weights is not None else None

    checkpoint_config = revision = None
    if source is not None and source.kind != "h5":
        checkpoint_config, revision = _checkpoint_config(family, source)
        if checkpoint_config is not None:
            arch = family.config_from_checkpoint(checkpoint_config)
            _check_architecture(family, variant, arch, source)
            config.update({k: v for k, v in arch.items() if k not in family.architecture_keys})
    if source is not None and source.named is not None:
        config.update(source.named.overrides())

    if input_shape is not None:
        config["image_size"] = (int(input_shape[0]), int(input_shape[1]))
    config.update(kwargs)
    if source is None:
        return family.model_class(
            **config, variant=variant, name=name or variant.lower(), dtype=dtype
        )
    # Weights follow: the variables are created without any memory or random numbers
    # (a StatelessScope that leaves them uninitialised, zeros as their initializer) and
    # the conversion initialises each one with its checkpoint value (set_variable).
    import keras

    with _prefaulting(_fresh_memory_needed(family, source, dtype)):
        with no_init(), keras.StatelessScope(initialize_variables=False):
            model = family.model_class(
                **config, variant=variant, name=name or variant.lower(), dtype=dtype
            )
        try:
            _load_source(family, model, variant, source, revision, progress)
        except BaseException:
            _finish_deferred(model.variables, initialize=False)  # the model is dropped
            raise
    _finish_deferred(model.variables)
    return model


def _fresh_memory_needed(family: ModelFamily, source: _Source, dtype) -> list[int]:
    """Sizes (bytes) of the buffers an in-memory conversion of ``source`` will fill, for
    :class:`_Prefaulter`: a local safetensors folder (copied, never used in place), every
    tensor of 1 MiB or more that keeps its dtype (a cast makes its memory elsewhere).
    Empty for anything else (cached and ``.weights.h5`` loads read no checkpoint)."""
    if source.kind != "folder":
        return []
    import keras

    try:
        path = _find_in_folder(source.path, family.checkpoint_files)
        if path is None or not path.name.endswith((".safetensors", ".index.json")):
            return []
        checkpoint = SafetensorsCheckpoint.from_file(path)
        policy = keras.dtype_policies.get(dtype) if dtype else keras.config.dtype_policy()
        wanted = _numpy_dtype_of(policy)
        sizes = [int(np.prod(checkpoint.shape(k), dtype=np.int64)) * wanted.itemsize
                 for k in checkpoint.keys() if checkpoint.dtype(k) == wanted]
    except Exception:  # the load itself reports a bad checkpoint
        return []
    return [n for n in sizes if n >= 1 << 20]


def _load_source(family, model, variant, source, revision, progress) -> None:
    if source.kind == "h5":
        load_weights_file(model, source.path)
        if source.named is not None:  # shipped weights: the vocabulary lies beside them
            model.weights_source = source.label
            model.vocabulary_path = str(source.path.parent)
        return

    cache_path = None
    if source.kind in ("named", "hub") and revision and revision != "unknown":
        cache_path = _cache_path(model, variant, source.repo_id, revision)
    if cache_path is not None and cache_path.is_file():
        try:
            load_converted(model, cache_path)
            _attach_vocabulary(family, model, source)
            return
        except Exception as exc:  # a damaged cache entry: convert again
            warnings.warn(f"Ignoring unreadable cached weights {cache_path} ({exc}); converting again.")
            with contextlib.suppress(OSError):
                cache_path.unlink()

    checkpoint = open_checkpoint(_fetch_checkpoint(family, source))
    rules = family.key_map(model)
    _check_coverage(family, model, rules)
    check_key_map(rules, checkpoint, source=source.label, ignored_keys=family.ignored_keys)
    if cache_path is not None and not _kept_as_is(rules, checkpoint):
        # Converted straight into the cache, then mapped from it as any later load is.
        try:
            write_converted(model, rules, checkpoint, cache_path, source=source.label,
                            progress=progress)
        except OSError as exc:  # cannot write there: convert in memory instead
            warnings.warn(f"Could not cache converted weights at {cache_path}: {exc}")
        else:
            del checkpoint
            load_converted(model, cache_path)
            _attach_vocabulary(family, model, source)
            return
    apply_key_map(rules, checkpoint, source=source.label, progress=progress)
    del checkpoint
    _attach_vocabulary(family, model, source)


def _check_coverage(family: ModelFamily, model, rules: list[Rule]) -> None:
    """Every variable of the model must be filled by the key map (they start as zeros)."""
    covered = {id(variable) for rule in rules for variable, _ in rule.targets}
    uncovered = [v.path for v in model.weights if id(v) not in covered]
    if uncovered:
        raise RuntimeError(
            f"The {family.name} key map leaves {len(uncovered)} variable(s) unfilled: "
            f"{_describe(uncovered)}. This is a bug in kvmm."
        )


def _attach_vocabulary(family: ModelFamily, model, source: _Source) -> None:
    """Remember where the checkpoint's own vocabulary is, for ``Processor.for_model(model)``:
    a local checkpoint folder that holds one of ``family.vocabulary_files``, or the Hub repo
    the weights came from (the processor fetches from it lazily)."""
    model.weights_source = source.label
    model.vocabulary_repo = source.repo_id
    model.vocabulary_path = None
    if source.kind == "folder" and _find_in_folder(source.path, family.vocabulary_files):
        model.vocabulary_path = str(source.path)


def variant_builder(family: ModelFamily, variant: str, doc: str):
    """The public constructor of ``variant`` (e.g. ``SigLIPBaseP16``): a function taking
    ``weights``, ``input_shape``, ``name``, ``dtype`` and ``progress``."""

    def build(weights=None, input_shape=None, name=None, dtype=None, progress=None, **kwargs):
        return create_model(
            family, variant, weights=weights, input_shape=input_shape, name=name,
            dtype=dtype, progress=progress, **kwargs,
        )

    build.__name__ = build.__qualname__ = variant
    build.__doc__ = doc
    return build
