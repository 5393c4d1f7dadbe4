"""Reading PyTorch ``.bin`` / ``.pt`` checkpoints without running code from them and
without torch.

``torch.save`` writes a zip archive: ``<name>/data.pkl`` (a pickle describing the state
dict) and one member ``<name>/data/<key>`` with the raw bytes of every storage. A pickle
may name any importable callable and have it called on load, which is how a malicious
checkpoint runs code. :class:`TorchCheckpoint` unpickles ``data.pkl`` with an allow-list of
exactly the globals a state dict needs (``collections.OrderedDict``, torch's tensor
rebuild functions and storage types), each replaced by a harmless stand-in; any other
global makes it refuse the file with :class:`UnsafeCheckpointError` before anything runs.

Tensors are then read lazily, one storage at a time, straight from the archive, so
converting holds the model plus one tensor in memory (as with safetensors).

Pre-1.6 PyTorch files (not a zip archive) are read with ``torch.load(weights_only=True)``
when torch is installed, and refused with a clear message otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from kvmm.errors import WeightsError


class UnsafeCheckpointError(WeightsError):
    """A pickle checkpoint asks to import or call something a state dict never needs."""


#: torch storage types -> NumPy dtype names ("bfloat16" through ml_dtypes).
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: str


@dataclasses.dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    numel: int


@dataclasses.dataclass(frozen=True)
class _LazyTensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpointError("A tensor in the checkpoint does not refer to a storage.")
    return _LazyTensor(storage, int(storage_offset), tuple(int(s) for s in size),
                       tuple(int(s) for s in stride))


def _rebuild_parameter(data, *_unused):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"Refusing to load {self._source}: its pickle asks for {module}.{name}, which "
                f"a plain state dict never needs (loading it could run code from the file). "
                f"Only tensors, storages and dicts are accepted; convert trusted files to "
                f".safetensors instead."
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"{self._source}: unexpected persistent id {pid!r:.80}.")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"{self._source}: storage of unknown type {storage_type!r:.80}.")
        return _Storage(str(key), storage_type.dtype, int(numel))


def _flatten(obj, source: str) -> dict[str, _LazyTensor]:
    """The ``{name: tensor}`` mapping of a loaded pickle: a state dict, or a training
    checkpoint ``{"state_dict": ...}`` whose keys may carry DistributedDataParallel's
    ``module.`` prefix (both as open_clip writes them)."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{source} holds a {type(obj).__name__}, not a state dict.")
    tensors = {k: v for k, v in obj.items() if isinstance(v, _LazyTensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    if not tensors:
        raise WeightsError(f"{source} holds no tensors.")
    return tensors


class TorchCheckpoint:
    """Lazy, code-free reader of a ``torch.save`` zip archive (a state dict).

    The same interface as :class:`kvmm.loading.SafetensorsCheckpoint`: ``keys()``,
    ``shape(key)`` and ``read(key)`` (a NumPy array).

    Raises:
        UnsafeCheckpointError: the pickle asks for anything but tensors, storages and dicts.
        WeightsError: the file is missing, truncated, or not a PyTorch checkpoint.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise WeightsError(f"No such checkpoint file: {self.path}") from None
        except zipfile.BadZipFile:
            self._zip = None
            self._tensors = self._legacy()
            return
        names = self._zip.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise WeightsError(f"{self.path} is a zip file but not a PyTorch checkpoint (no data.pkl).")
        self._prefix = pickles[0][: -len("data.pkl")]
        order = self._prefix + "byteorder"
        self._big_endian = order in names and self._zip.read(order).strip() == b"big"
        try:
            with self._zip.open(pickles[0]) as f:
                loaded = _RestrictedUnpickler(f, self.path).load()
        except UnsafeCheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, zipfile.BadZipFile,
                OSError) as exc:
            raise WeightsError(f"Cannot read {self.path}: damaged pickle ({exc}).") from exc
        self._tensors = _flatten(loaded, self.path)
        self._arrays: dict[str, np.ndarray] = {}

    def _legacy(self) -> dict:
        """Pre-1.6 (non-zip) files: through ``torch.load(weights_only=True)`` if available."""
        with open(self.path, "rb") as f:
            head = f.read(2)
        if not head or head[0] != 0x80:
            raise WeightsError(
                f"{self.path} is neither a PyTorch checkpoint nor a zip archive (truncated or "
                f"another format?). Delete it and download it again."
            )
        try:
            import torch
        except ImportError:
            raise WeightsError(
                f"{self.path} uses PyTorch's legacy (pre-1.6) format, which kvmm reads only "
                f"through torch: pip install torch (it is then read with "
                f"torch.load(weights_only=True), which runs no code from the file)."
            ) from None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise UnsafeCheckpointError(f"Refusing to load {self.path}: {exc}") from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise WeightsError(f"{self.path} holds a {type(state).__name__}, not a state dict.")
        tensors = {k.removeprefix("module."): v for k, v in state.items()
                   if isinstance(v, torch.Tensor)}
        if not tensors:
            raise WeightsError(f"{self.path} holds no tensors.")
        return tensors

    def keys(self) -> list[str]:
        return list(self._tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        tensor = self._tensors[key]
        return tuple(tensor.shape)

    def read(self, key: str) -> np.ndarray:
        """The tensor ``key`` as a (C-contiguous) NumPy array."""
        tensor = self._tensors[key]
        if self._zip is None:  # legacy file, already loaded by torch
            import torch

            value = tensor.detach().cpu()
            if value.dtype == torch.bfloat16:
                import ml_dtypes

                return value.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
            return value.numpy().copy()
        storage = self._read_storage(tensor.storage)
        itemsize = storage.dtype.itemsize
        if tensor.offset == 0 and storage.size == int(np.prod(tensor.shape)) and (
            tensor.stride == _contiguous_strides(tensor.shape)
        ):
            return storage.reshape(tensor.shape)  # the whole storage: no copy
        needed = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride)) + 1
        if 0 not in tensor.shape and needed > storage.size:
            raise WeightsError(f"{self.path}: tensor {key!r} lies outside its storage; the file is damaged.")
        view = np.lib.stride_tricks.as_strided(
            storage[tensor.offset:],
            shape=tensor.shape,
            strides=tuple(s * itemsize for s in tensor.stride),
            writeable=False,
        )
        return np.array(view, order="C")

    def _read_storage(self, storage: _Storage) -> np.ndarray:
        from kvmm.loading import aligned_empty

        name = f"{self._prefix}data/{storage.key}"
        dtype = _dtype(storage.dtype)
        out = aligned_empty((storage.numel,), dtype)
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise WeightsError(f"{self.path} lacks {name}: the file is truncated or damaged.") from None
        if info.file_size != out.nbytes:
            raise WeightsError(
                f"{self.path}: storage {storage.key} has {info.file_size} bytes, expected "
                f"{out.nbytes}; the file is damaged."
            )
        buffer = out.view(np.uint8)
        if info.compress_type == zipfile.ZIP_STORED:
            # Read the stored bytes straight into the array (no intermediate copy).
            with open(self.path, "rb", buffering=0) as f:
                f.seek(info.header_offset)
                header = f.read(30)
                if len(header) < 30 or header[:4] != b"PK\x03\x04":
                    raise WeightsError(f"{self.path} is damaged (bad zip entry {name}).")
                name_length, extra_length = struct.unpack("<HH", header[26:30])
                f.seek(info.header_offset + 30 + name_length + extra_length)
                done = 0
                while done < out.nbytes:
                    n = f.readinto(buffer[done:])
                    if not n:
                        raise WeightsError(f"{self.path} is truncated (storage {storage.key}).")
                    done += n
        else:
            try:
                buffer[:] = np.frombuffer(self._zip.read(name), np.uint8)
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise WeightsError(f"{self.path} is damaged ({exc}).") from exc
        if self._big_endian:
            out = out.byteswap()
        return out


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a PyTorch checkpoint as NumPy arrays, without running code from it."""
    checkpoint = TorchCheckpoint(Path(path))
    return {key: checkpoint.read(key) for key in checkpoint.keys()}
