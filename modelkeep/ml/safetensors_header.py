"""Safe parsing of safetensors headers: every lie is refused before any allocation.

A safetensors file is ``<u64 little-endian header length N><N bytes of JSON><data>``.
The JSON maps tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets relative to the start of the data area) plus an optional
``"__metadata__"`` mapping of strings.

:func:`parse_header` checks, using only the header bytes and the file size:

* the header length is at least 2, at most :data:`MAX_HEADER`, and fits in the file;
* the JSON is an object; every tensor entry has a known dtype, a shape of
  non-negative integers (at most :data:`MAX_DIMS` of them) and two integer offsets;
* the element count times the dtype size equals ``end - begin`` exactly
  (checked in arbitrary-precision integers, so absurd shapes cannot overflow);
* every tensor lies inside the file and no two tensors overlap.

Nothing proportional to a claimed size is allocated before these checks pass.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from modelkeep.errors import InvalidInput

__all__ = [
    "DTYPES",
    "MAX_HEADER",
    "MAX_DIMS",
    "TensorInfo",
    "SafetensorsHeader",
    "parse_header",
    "read_header",
    "numpy_dtype",
]

MAX_HEADER = 100 * 1024 * 1024  # same bound as the safetensors library
MAX_DIMS = 64

# safetensors dtype -> (item size in bytes, numpy dtype string or None when numpy has none)
DTYPES: Mapping[str, tuple[int, str | None]] = {
    "BOOL": (1, "|b1"),
    "U8": (1, "|u1"),
    "I8": (1, "|i1"),
    "F8_E4M3": (1, None),
    "F8_E5M2": (1, None),
    "U16": (2, "<u2"),
    "I16": (2, "<i2"),
    "F16": (2, "<f2"),
    "BF16": (2, None),
    "U32": (4, "<u4"),
    "I32": (4, "<i4"),
    "F32": (4, "<f4"),
    "U64": (8, "<u8"),
    "I64": (8, "<i8"),
    "F64": (8, "<f8"),
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute byte offset in the file
    end: int  # absolute, exclusive

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    tensors: tuple[TensorInfo, ...]  # sorted by offset
    metadata: Mapping[str, str]
    data_start: int  # 8 + header length
    file_size: int

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors)

    def by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}


def _bad(where: str, why: str) -> InvalidInput:
    return InvalidInput(f"{where}: refusing a safetensors header that lies: {why}")


def header_length(prefix: bytes, file_size: int, *, where: str = "safetensors file") -> int:
    """The header length from the first 8 bytes, checked against ``file_size``."""
    if file_size < 8 or len(prefix) < 8:
        raise _bad(where, f"{file_size} bytes is shorter than the 8-byte length prefix")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n < 2:
        raise _bad(where, f"header length {n} is too small for a JSON object")
    if n > MAX_HEADER:
        raise _bad(where, f"header length {n} exceeds the {MAX_HEADER}-byte limit")
    if 8 + n > file_size:
        raise _bad(where, f"header length {n} runs past the end of the {file_size}-byte file")
    return n


def parse_header(header: bytes, file_size: int, *, where: str = "safetensors file") -> SafetensorsHeader:
    """Validate the JSON header bytes (without the 8-byte prefix) of a ``file_size``-byte file."""
    data_start = 8 + len(header)
    if data_start > file_size:
        raise _bad(where, f"header of {len(header)} bytes runs past the end of the {file_size}-byte file")
    try:
        doc = json.loads(header)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(where, f"header is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _bad(where, "header is not a JSON object")
    metadata: dict[str, str] = {}
    tensors: list[TensorInfo] = []
    data_size = file_size - data_start
    for name, info in doc.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise _bad(where, "__metadata__ must map strings to strings")
            metadata = dict(info)
            continue
        tensors.append(_tensor(name, info, data_start, data_size, where))
    tensors.sort(key=lambda t: (t.begin, t.end))
    prev: TensorInfo | None = None
    for t in tensors:
        if prev is not None and t.begin < prev.end and t.nbytes and prev.nbytes:
            raise _bad(where, f"tensors {prev.name!r} and {t.name!r} overlap")
        if t.nbytes:
            prev = t
    return SafetensorsHeader(tuple(tensors), metadata, data_start, file_size)


def _tensor(name: str, info: object, data_start: int, data_size: int, where: str) -> TensorInfo:
    if not isinstance(info, dict):
        raise _bad(where, f"tensor {name!r} is not an object")
    dtype = info.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _bad(where, f"tensor {name!r} has unknown dtype {dtype!r}")
    shape = info.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise _bad(where, f"tensor {name!r} has an invalid shape {shape!r}")
    offsets = info.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise _bad(where, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise _bad(where, f"tensor {name!r} has data_offsets {offsets} out of order")
    if end > data_size:
        raise _bad(where, f"tensor {name!r} ends at {end}, past the {data_size} bytes of data in the file")
    # Python integers: an absurd shape makes a huge number, never an overflow.
    expected = math.prod(shape) * DTYPES[dtype][0]
    if expected != end - begin:
        raise _bad(where, f"tensor {name!r}: shape {shape} of {dtype} needs {expected} bytes, offsets give {end - begin}")
    return TensorInfo(name, dtype, tuple(shape), data_start + begin, data_start + end)


def read_header(f: BinaryIO, file_size: int, *, where: str = "safetensors file") -> SafetensorsHeader:
    """Read and validate the header of an open file (reads only the header bytes)."""
    f.seek(0)
    n = header_length(f.read(8), file_size, where=where)
    header = f.read(n)
    if len(header) != n:
        raise _bad(where, f"header length {n} runs past the end of the file")
    return parse_header(header, file_size, where=where)


def numpy_dtype(dtype: str) -> str | None:
    """The numpy dtype string for a safetensors dtype (None for BF16 and F8, which numpy lacks)."""
    return DTYPES[dtype][1]
