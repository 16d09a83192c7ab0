"""Read PyTorch ``torch.save`` files into numpy arrays without importing torch.

Supports the zip format (torch ≥ 1.6) and the legacy format (CompressAI's 2020 zoo files), with a
restricted unpickler that only builds tensors, ordered dicts and plain Python values (like
``torch.load(weights_only=True)``). Any other object in the file is refused.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import struct
import tarfile
import zipfile
from typing import Any

import numpy as np

__all__ = ["load_torch_file", "TorchFileError"]


class TorchFileError(ValueError):
    """The file is not a readable PyTorch checkpoint."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # handled specially
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.name = name


def _dtype(storage_type):
    name = storage_type.name if isinstance(storage_type, _StorageType) else str(storage_type)
    if name not in _STORAGE_DTYPES:
        raise TorchFileError(f"unsupported tensor storage type {name}")
    return name


def _as_array(raw: bytes, type_name: str):
    if type_name == "BFloat16Storage":
        u16 = np.frombuffer(raw, np.uint16)
        return (u16.astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, _STORAGE_DTYPES[type_name])


def _rebuild_tensor(storage, storage_offset, size, stride, *_args, **_kw):
    flat = storage
    itemsize = flat.itemsize
    if len(size) == 0:
        return np.array(flat[storage_offset])
    arr = np.lib.stride_tricks.as_strided(
        flat[storage_offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(arr)  # copy: contiguous, writable


def _rebuild_parameter(data, *_args, **_kw):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, load_storage):
        super().__init__(f)
        self._load_storage = load_storage

    def find_class(self, module, name):
        # torch.save pickles with protocol 2: map Python 2 names (``__builtin__.set``) as pickle would
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "torch" and name in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool"):
            return name
        if (module, name) in (("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                              ("numpy", "dtype")):
            return super().find_class(module, name)
        raise TorchFileError(f"refusing to load object {module}.{name} from a checkpoint (only tensors and plain data)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchFileError(f"unexpected persistent id {pid!r}")
        return self._load_storage(pid)


def _load_zip(zf: zipfile.ZipFile) -> Any:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pkl:
        raise TorchFileError("zip archive without data.pkl: not a torch.save file")
    prefix = pkl[0][: -len("data.pkl")]
    cache: dict[str, np.ndarray] = {}

    def load_storage(pid):
        _, storage_type, key, _location, _numel = pid[:5]
        type_name = _dtype(storage_type)
        if key not in cache:
            cache[key] = _as_array(zf.read(f"{prefix}data/{key}"), type_name)
        return cache[key]

    return _Unpickler(io.BytesIO(zf.read(pkl[0])), load_storage).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(f) -> Any:
    magic = pickle.load(f)
    if magic != _LEGACY_MAGIC:
        raise TorchFileError("not a torch.save file (bad magic number)")
    pickle.load(f)  # protocol version
    pickle.load(f)  # sys info
    storages: dict[str, tuple[str, int]] = {}
    views: list = []

    def load_storage(pid):
        _, storage_type, key, _location, size, view_metadata = pid
        type_name = _dtype(storage_type)
        storages.setdefault(key, (type_name, size))
        holder = _LazyStorage(key)
        if view_metadata is not None:
            views.append((holder, view_metadata))
        return holder

    result = _LegacyUnpickler(f, load_storage).load()
    keys = pickle.load(f)
    data = {}
    for key in keys:
        type_name, size = storages[key]
        (n,) = struct.unpack("<q", f.read(8))
        itemsize = 2 if type_name == "BFloat16Storage" else np.dtype(_STORAGE_DTYPES[type_name]).itemsize
        raw = f.read(n * itemsize)
        if len(raw) != n * itemsize:
            raise TorchFileError("truncated checkpoint")
        data[key] = _as_array(raw, type_name)
    return _resolve(result, data)


class _LazyStorage:
    def __init__(self, key):
        self.key = key


class _LazyTensor:
    def __init__(self, storage, args):
        self.storage, self.args = storage, args


class _LegacyUnpickler(_Unpickler):
    def find_class(self, module, name):
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return lambda storage, *args, **kw: _LazyTensor(storage, args)
        return super().find_class(module, name)


def _resolve(obj, data):
    if isinstance(obj, _LazyTensor):
        return _rebuild_tensor(data[obj.storage.key], *obj.args)
    if isinstance(obj, dict):
        out = obj.__class__()
        for k, v in obj.items():
            out[k] = _resolve(v, data)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, data) for v in obj)
    return obj


def load_torch_file(path) -> Any:
    """Load a ``torch.save`` file (zip or legacy format) with tensors as numpy arrays."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return _load_zip(zf)
        if tarfile.is_tarfile(path):
            raise TorchFileError("tar-format torch checkpoints (torch < 0.4) are not supported")
        with open(path, "rb") as f:
            return _load_legacy(f)
    except TorchFileError:
        raise
    except FileNotFoundError:
        raise
    except Exception as e:  # any failure of a corrupt or truncated file: one clear line
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise TorchFileError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
