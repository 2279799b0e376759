"""Datasets: a directory, a CSV or a Parquet file pushed as a ``dataset`` version.

What a dataset version records beyond its files (in ``params["dataset"]``)::

    format    "csv", "parquet" or "directory"
    rows      number of rows of every table file together
    columns   column name -> dtype (int64, float64, bool, string, ...)
    keys      key column -> {"index": path of its key index, "distinct": n,
              "unique": bool, "scheme": "int" | "str"}

**Key index.** With a declared key column, the version holds one extra file,
``.modelkeep/keys/<column>.keys``, stored and deduplicated like every other
file: the set of the column's values as a sorted array of distinct 64-bit
hashes. A customer may appear in many rows of transactions, so the index is a
*set*; uniqueness is checked only when asked (``unique_key=True``), and then
duplicates are named. Keeping the index inside the version (rather than in a
sidecar artifact) means it is immutable with the data, travels with pull and
transfer, is covered by the version digest and is collected with it.

Index file layout (little-endian)::

    8 bytes   magic b"MKKEYS\\x00\\x01"
    u32       n = length of the JSON header
    n bytes   {"column", "scheme": "int"|"str", "count": k, "rows", "unique", "fence_every": 4096}
    padding   zero bytes up to a multiple of 8
    f x u64   fence keys: every 4096th hash (f = ceil(k / 4096))
    k x u64   sorted distinct hashes

A lookup binary-searches the fences (kept in memory) and then reads one block
of at most 4096 hashes (32 KiB), so a key index of any size costs one or two
chunk reads per lookup, never a read of the whole file.

Hashes: integer keys (every value a canonical decimal int64, like ``123``,
not ``0123``) are mixed with splitmix64, vectorized; any other key is hashed as
UTF-8 text with BLAKE3 (first 8 bytes). A lookup hashes the queried value the
same way the index says it was built. A miss is certain; a hit is a false
positive with probability about k / 2**64 for an index of k keys (5e-14 for a
million keys).

CSV is read with the standard library (types inferred per column: int64,
float64, bool, else string); Parquet needs pyarrow (extra ``datasets``).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from modelkeep.errors import CorruptData, InvalidInput, InvalidPath
from modelkeep.registry.api import Registry
from modelkeep.registry.types import Kind, Version

__all__ = [
    "KEY_DIR",
    "Table",
    "read_table",
    "table_files",
    "hash_keys",
    "hash_key",
    "KeyIndex",
    "sorted_distinct",
    "encode_key_index",
    "decode_key_index",
    "open_key_index",
    "FENCE_EVERY",
    "key_index_path",
    "dataset_info",
    "push_dataset",
]

KEY_DIR = ".modelkeep/keys"
_MAGIC = b"MKKEYS\x00\x01"
FENCE_EVERY = 4096  # hashes per block; one fence key per block is kept in memory
_TABLE_SUFFIXES = (".csv", ".parquet")
_CANON_INT = re.compile(r"-?(0|[1-9][0-9]{0,18})")
_SEED = np.uint64(0x6D6B6B6579733031)  # "mkkeys01"


# -- tables ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Table:
    """Columns of one table, in file order. String columns are numpy object arrays of str."""

    columns: dict[str, np.ndarray]
    raw: dict[str, list[str]] = field(default_factory=dict)  # CSV text of each column, for key hashing

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def dtypes(self) -> dict[str, str]:
        return {name: _dtype_name(col) for name, col in self.columns.items()}


def _dtype_name(col: np.ndarray) -> str:
    return "string" if col.dtype == object else str(col.dtype)


def read_table(path: str | Path) -> Table:
    """Read a CSV (standard library) or Parquet (pyarrow) file. Raises InvalidInput on malformed files."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _read_csv(p)
    if suffix == ".parquet":
        return _read_parquet(p)
    raise InvalidInput(f"{p.name}: not a table (expected .csv or .parquet)")


def _read_csv(p: Path) -> Table:
    try:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise InvalidInput(f"{p.name}: empty CSV file (no header row)") from None
            if len(set(header)) != len(header):
                dup = sorted({h for h in header if header.count(h) > 1})
                raise InvalidInput(f"{p.name}: duplicate column names: {', '.join(dup)}")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{p.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise InvalidInput(f"{p.name}: malformed CSV: {exc}") from None
    width = len(header)
    for i, r in enumerate(rows):
        if len(r) != width:
            raise InvalidInput(f"{p.name}: row {i + 2} has {len(r)} fields, the header has {width}")
    raw = {name: [r[j] for r in rows] for j, name in enumerate(header)}
    return Table({name: _infer(values) for name, values in raw.items()}, raw)


def _infer(values: list[str]) -> np.ndarray:
    if not values:
        return np.array([], dtype=object)
    text = np.array(values, dtype=str)
    if all(re.fullmatch(r"[+-]?\d+", v) for v in values):
        try:
            return text.astype(np.int64)
        except (ValueError, OverflowError):
            pass
    low = {v.lower() for v in values}
    if low <= {"true", "false"}:
        return np.array([v.lower() == "true" for v in values], dtype=bool)
    try:
        return np.array([float(v) if v.strip() else np.nan for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=object)


def _read_parquet(p: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInput("reading Parquet needs pyarrow: pip install 'modelkeep[datasets]'") from None
    try:
        t = pq.read_table(p)
    except Exception as exc:  # pyarrow raises its own error types for malformed files
        raise InvalidInput(f"{p.name}: cannot read Parquet: {exc}") from None
    cols: dict[str, np.ndarray] = {}
    for name in t.column_names:
        arr = t.column(name).to_numpy(zero_copy_only=False)
        if arr.dtype.kind in "USO":
            arr = np.array([None if v is None else str(v) for v in arr], dtype=object)
        cols[name] = arr
    return Table(cols)


def table_files(path: str | Path) -> list[Path]:
    """The table files a dataset path holds: the file itself, or every .csv/.parquet under a directory."""
    p = Path(path)
    if p.is_file():
        return [p] if p.suffix.lower() in _TABLE_SUFFIXES else []
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in _TABLE_SUFFIXES
                      and KEY_DIR not in q.relative_to(p).as_posix())
    raise InvalidPath(f"{p}: no such file or directory")


# -- key hashing -------------------------------------------------------------------------


def _splitmix(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64) ^ _SEED
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_keys(values: np.ndarray | Sequence[Any], scheme: str) -> np.ndarray:
    """64-bit hashes of key values: ``scheme`` "int" (int64 values) or "str" (text)."""
    if scheme == "int":
        arr = np.asarray(values, dtype=np.int64)
        with np.errstate(over="ignore"):
            return _splitmix(arr.view(np.uint64))
    if scheme == "str":
        out = np.empty(len(values), dtype=np.uint64)
        for i, v in enumerate(values):
            out[i] = int.from_bytes(blake3.blake3(str(v).encode("utf-8")).digest(8), "little")
        return out
    raise InvalidInput(f"unknown key hashing scheme {scheme!r} (int, str)")


def hash_key(value: str, scheme: str) -> int | None:
    """Hash of one queried key value (given as text); None when it cannot occur under ``scheme``."""
    if scheme == "int":
        if not _CANON_INT.fullmatch(value):
            return None
        try:
            return int(hash_keys(np.array([int(value)], dtype=np.int64), "int")[0])
        except OverflowError:
            return None
    return int(hash_keys([value], "str")[0])


def _key_scheme(table: Table, column: str) -> tuple[str, np.ndarray]:
    col = table.columns[column]
    if col.dtype.kind in "iu":
        if table.raw and not all(_CANON_INT.fullmatch(v) for v in table.raw[column]):
            return "str", np.array(table.raw[column], dtype=object)  # "0123" and "123" are different keys
        return "int", col.astype(np.int64)
    if col.dtype == object:
        if any(v is None for v in col):
            raise InvalidInput(f"key column {column!r} has missing values")
        return "str", col
    if table.raw:
        return "str", np.array(table.raw[column], dtype=object)
    raise InvalidInput(f"key column {column!r} has dtype {col.dtype}; keys must be integers or text")


# -- key index files ----------------------------------------------------------------------


Reader = Callable[[int, int], "bytes | bytearray | memoryview"]
"""``read(offset, length)``: bytes of a key index file (from memory, a memory map or the chunk store)."""


@dataclass(frozen=True, slots=True)
class KeyIndex:
    """An opened key index: header and fence keys in memory, blocks of hashes read on demand.

    A lookup reads one block of at most ``fence_every`` hashes (32 KiB): from the chunk
    store that is one or two chunks, whatever the size of the index.
    """

    column: str
    scheme: str
    rows: int
    unique: bool
    count: int  # distinct keys
    fence_every: int
    fences: np.ndarray  # hashes[0], hashes[fence_every], ... (sorted)
    hashes_offset: int
    read: Reader = field(repr=False, compare=False)
    where: str = "key index"

    def block(self, b: int) -> np.ndarray:
        lo = b * self.fence_every
        hi = min(lo + self.fence_every, self.count)
        data = self.read(self.hashes_offset + 8 * lo, 8 * (hi - lo))
        block = np.frombuffer(data, dtype="<u8")
        if len(block) != hi - lo or block[0] != self.fences[b]:
            raise CorruptData(f"{self.where}: block {b} does not start with its fence key")
        return block

    def contains(self, value: str) -> bool:
        h = hash_key(value, self.scheme)
        if h is None or not self.count:
            return False
        target = np.array([h], dtype=np.uint64)
        b = int(np.searchsorted(self.fences, target, side="right")[0]) - 1
        if b < 0:
            return False
        block = self.block(b)
        i = int(np.searchsorted(block, target)[0])
        return i < len(block) and int(block[i]) == h

    @property
    def hashes(self) -> np.ndarray:
        """Every hash, sorted (reads the whole array)."""
        return np.frombuffer(self.read(self.hashes_offset, 8 * self.count), dtype="<u8")


def key_index_path(column: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", column) or "_"
    return f"{KEY_DIR}/{safe}-{blake3.blake3(column.encode()).hexdigest(4)}.keys"


def sorted_distinct(hashes: np.ndarray) -> np.ndarray:
    """Sorted distinct uint64 values (sort + neighbour compare: much faster than np.unique here)."""
    s = np.sort(np.asarray(hashes, dtype=np.uint64))
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def encode_key_index(column: str, scheme: str, hashes: np.ndarray, *, rows: int, unique: bool) -> bytes:
    """Bytes of a key index file; ``hashes`` need not be sorted or distinct."""
    uniq = sorted_distinct(hashes)
    fences = uniq[::FENCE_EVERY]
    head = json.dumps(
        {"column": column, "scheme": scheme, "count": int(len(uniq)), "rows": int(rows), "unique": bool(unique),
         "fence_every": FENCE_EVERY},
        sort_keys=True,
    ).encode()
    prefix = _MAGIC + struct.pack("<I", len(head)) + head
    prefix += b"\x00" * (-len(prefix) % 8)
    return prefix + fences.astype("<u8").tobytes() + uniq.astype("<u8").tobytes()


def open_key_index(read: Reader, size: int, *, where: str = "key index") -> KeyIndex:
    """Open a key index of ``size`` bytes through ``read``: reads the header and fences only.

    Raises InvalidInput when the header is malformed or does not match ``size``.
    """
    first = bytes(read(0, min(size, 4096)))
    if len(first) < 12 or first[:8] != _MAGIC:
        raise InvalidInput(f"{where}: not a modelkeep key index")
    (n,) = struct.unpack("<I", first[8:12])
    if 12 + n > size:
        raise InvalidInput(f"{where}: header runs past the end of the file")
    raw = first[12 : 12 + n] if 12 + n <= len(first) else bytes(read(12, n))
    try:
        head = json.loads(raw)
        column, scheme, count = str(head["column"]), str(head["scheme"]), int(head["count"])
        rows, unique, every = int(head["rows"]), bool(head["unique"]), int(head["fence_every"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{where}: malformed header ({exc})") from None
    start = 12 + n + (-(12 + n) % 8)
    n_fences = -(-count // every) if every > 0 else -1
    if scheme not in ("int", "str") or count < 0 or every <= 0 or start + 8 * (n_fences + count) != size:
        raise InvalidInput(f"{where}: {count} keys do not match the file size {size}")
    fence_bytes = (first[start : start + 8 * n_fences] if start + 8 * n_fences <= len(first)
                   else bytes(read(start, 8 * n_fences)))
    fences = np.frombuffer(fence_bytes, dtype="<u8")
    if n_fences > 1 and not bool(np.all(fences[1:] > fences[:-1])):
        raise InvalidInput(f"{where}: fence keys are not sorted")
    return KeyIndex(column, scheme, rows, unique, count, every, fences, start + 8 * n_fences, read, where)


def decode_key_index(data: bytes | memoryview | np.ndarray, *, where: str = "key index") -> KeyIndex:
    """Open a key index held in memory (or memory-mapped), zero-copy."""
    buf = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else memoryview(data.view(np.uint8))
    return open_key_index(lambda off, n: buf[off : off + n], len(buf), where=where)


# -- dataset push ------------------------------------------------------------------------------


def dataset_info(path: str | Path, *, key: str | None = None, unique_key: bool = False) -> tuple[dict[str, Any], bytes | None]:
    """(``params["dataset"]`` metadata, key index bytes or None) of the dataset at ``path``.

    Raises InvalidInput when a declared key column is missing from a table, or is not
    unique while ``unique_key`` is set (naming some duplicated values).
    """
    p = Path(path)
    files = table_files(p)
    if p.is_file() and not files:
        if key is not None:
            raise InvalidInput(f"{p.name}: a key column needs a .csv or .parquet file (or a directory of them)")
        return {"format": p.suffix.lower().lstrip(".") or "file"}, None
    fmt = "directory" if p.is_dir() else p.suffix.lower().lstrip(".")
    columns: dict[str, str] = {}
    rows = 0
    per_file: dict[str, Any] = {}
    hashes: list[np.ndarray] = []
    schemes: set[str] = set()
    for f in files:
        t = read_table(f)
        rel = f.name if p.is_file() else f.relative_to(p).as_posix()
        per_file[rel] = {"rows": t.rows}
        rows += t.rows
        for name, dt in t.dtypes().items():
            columns.setdefault(name, dt)
        if key is not None:
            if key not in t.columns:
                raise InvalidInput(
                    f"key column {key!r} is not in {rel} (columns: {', '.join(t.columns) or 'none'})"
                )
            scheme, values = _key_scheme(t, key)
            schemes.add(scheme)
            hashes.append((scheme, values))  # type: ignore[arg-type]
    info: dict[str, Any] = {"format": fmt, "rows": rows, "columns": columns}
    if p.is_dir():
        info["tables"] = per_file
    if key is None:
        return info, None
    if not files:
        raise InvalidInput(f"{p}: no .csv or .parquet file to index key {key!r} in")
    # Mixed schemes across files (ints in one, text in another): hash everything as text.
    scheme = "int" if schemes == {"int"} else "str"
    parts = [hash_keys(v if scheme == s else np.array([str(x) for x in v], dtype=object), scheme)
             for s, v in hashes]  # type: ignore[misc]
    all_hashes = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
    distinct = int(len(sorted_distinct(all_hashes)))
    unique = distinct == len(all_hashes)
    if unique_key and not unique:
        values = np.concatenate([np.asarray(v, dtype=object) for _, v in hashes])  # type: ignore[misc]
        raise InvalidInput(f"key column {key!r} is not unique: {_duplicates(values)}")
    index = encode_key_index(key, scheme, all_hashes, rows=rows, unique=unique)
    info["keys"] = {key: {"index": key_index_path(key), "distinct": distinct, "unique": unique, "scheme": scheme}}
    return info, index


def _duplicates(values: np.ndarray, shown: int = 5) -> str:
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    dups = [(k, c) for k, c in counts.items() if c > 1]
    head = ", ".join(f"{k!r} x{c}" for k, c in dups[:shown])
    more = f" and {len(dups) - shown} more" if len(dups) > shown else ""
    return f"{len(dups)} values appear more than once ({head}{more})"


def push_dataset(
    registry: Registry,
    path: str | Path,
    name: str,
    *,
    key: str | None = None,
    unique_key: bool = False,
    params: Mapping[str, Any] | None = None,
    **push: Any,
) -> Version:
    """Push ``path`` as a ``dataset`` version with row count, columns, dtypes and (with ``key``) a key index.

    ``params["dataset"]`` is filled in (see the module docstring); every other
    keyword (``message``, ``metrics``, ``tags``, lineage refs, ``version``,
    ``major``, ``progress``) goes to :meth:`Registry.push`. The key index is
    added as an extra file; the data files keep their names. Raises InvalidInput
    (see :func:`dataset_info`; ``kind`` other than dataset) and whatever
    :meth:`Registry.push` raises.
    """
    p = Path(path)
    if unique_key and key is None:
        raise InvalidInput("unique_key needs a key column")
    kind = push.pop("kind", None)
    if kind is not None and Kind(kind) is not Kind.DATASET:
        raise InvalidInput(f"a dataset push makes dataset versions, not {Kind(kind).value}")
    info, index = dataset_info(p, key=key, unique_key=unique_key)
    all_params = dict(params or {})
    all_params["dataset"] = info
    if index is None:
        return registry.push(p, name, kind=Kind.DATASET, params=all_params, **push)
    assert key is not None
    with _staged(p) as root:
        target = root / key_index_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(index)
        return registry.push(root, name, kind=Kind.DATASET, params=all_params, **push)


class _staged:
    """A temporary tree holding the dataset's files (hard links when possible, else copies)."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.tmp: str | None = None

    def __enter__(self) -> Path:
        self.tmp = tempfile.mkdtemp(prefix="mk-dataset-")
        root = Path(self.tmp)
        try:
            if self.src.is_file():
                _link_or_copy(self.src.resolve(), root / self.src.name)
            else:
                top = self.src.resolve()
                for dirpath, _dirs, names in os.walk(self.src):
                    rel = Path(dirpath).relative_to(self.src)
                    if rel.as_posix().startswith(KEY_DIR):
                        continue  # a stale index from an earlier pull is rebuilt, never reused
                    (root / rel).mkdir(parents=True, exist_ok=True)
                    for n in names:
                        src = Path(dirpath, n)
                        real = src.resolve()
                        if src.is_symlink() and top not in real.parents:
                            # the same rule as Registry.push: a symlink may not lead out of the tree
                            raise InvalidPath(f"symlinks pointing outside {self.src} refused: {(rel / n).as_posix()}")
                        _link_or_copy(real, root / rel / n)
        except BaseException:
            self.__exit__()
            raise
        return root

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)
