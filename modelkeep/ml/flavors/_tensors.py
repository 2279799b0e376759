"""Write and read safetensors files with numpy only; headers are validated before any allocation.

Writing needs no framework: each tensor is (dtype name, shape, raw little-endian
bytes). Reading validates the whole header first (``ml/safetensors_header.py``:
length within the file, known dtypes, sizes that match shapes, offsets inside
the file, no overlaps), and only then allocates and reads each tensor.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelkeep.errors import InvalidInput
from modelkeep.ml.safetensors_header import SafetensorsHeader, TensorInfo, numpy_dtype, read_header

__all__ = ["RawTensor", "write", "read_raw", "read_numpy", "header", "NUMPY_TO_ST"]

NUMPY_TO_ST = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "uint16": "U16",
    "int16": "I16",
    "float16": "F16",
    "uint32": "U32",
    "int32": "I32",
    "float32": "F32",
    "uint64": "U64",
    "int64": "I64",
    "float64": "F64",
}


@dataclass(frozen=True, slots=True)
class RawTensor:
    dtype: str  # safetensors dtype name: F32, BF16, I64, ...
    shape: tuple[int, ...]
    data: bytes | memoryview  # little-endian, C order


def from_numpy(arr: np.ndarray) -> RawTensor:
    a = np.asarray(arr)
    st = NUMPY_TO_ST.get(a.dtype.name)
    if st is None:
        raise InvalidInput(f"numpy dtype {a.dtype} has no safetensors equivalent")
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return RawTensor(st, tuple(int(d) for d in a.shape), a.tobytes(order="C"))


def write(path: Path, tensors: Iterable[tuple[str, RawTensor]], metadata: Mapping[str, str] | None = None) -> None:
    """Write a safetensors file: u64 LE header length, JSON header (8-byte aligned), data."""
    items = sorted(tensors, key=lambda kv: kv[0])
    head: dict[str, object] = {}
    offset = 0
    for name, t in items:
        n = len(t.data)
        head[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        head["__metadata__"] = dict(metadata)
    raw = json.dumps(head, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, t in items:
            f.write(t.data)


def header(path: Path) -> SafetensorsHeader:
    """The validated header of the file at ``path``. Raises InvalidInput when it lies."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        return read_header(f, size, where=path.name)


def read_raw(path: Path) -> tuple[SafetensorsHeader, dict[str, bytearray]]:
    """Validated header, then each tensor's bytes (allocated only after validation)."""
    size = path.stat().st_size
    out: dict[str, bytearray] = {}
    with open(path, "rb") as f:
        h = read_header(f, size, where=path.name)
        for t in h.tensors:
            out[t.name] = _read(f, t, path)
    return h, out


def read_numpy(path: Path) -> dict[str, np.ndarray]:
    """Tensors as numpy arrays. BF16 and F8 (no numpy dtype) raise InvalidInput naming the tensor."""
    h, raw = read_raw(path)
    out = {}
    for t in h.tensors:
        dt = numpy_dtype(t.dtype)
        if dt is None:
            raise InvalidInput(f"{path.name}: tensor {t.name!r} is {t.dtype}, which numpy cannot hold")
        out[t.name] = np.frombuffer(raw[t.name], dtype=dt).reshape(t.shape)
    return out


def _read(f, t: TensorInfo, path: Path) -> bytearray:  # type: ignore[no-untyped-def]
    buf = bytearray(t.nbytes)
    f.seek(t.begin)
    got = f.readinto(buf)
    if got != t.nbytes:  # the file shrank since the header was checked
        raise InvalidInput(f"{path.name}: tensor {t.name!r} is truncated")
    return buf
