"""Impact analysis: which dataset versions hold a key, and what was made from them.

``impact(registry, "transactions", "customer_id", "123")``:

1. reads the key index of every version of ``transactions`` (the
   ``.modelkeep/keys/...`` file written by :func:`modelkeep.ml.datasets.push_dataset`)
   and looks the key's hash up in each with numpy ``searchsorted``;
2. for each version holding the key, walks ``registry.lineage(...,
   direction="downstream")``: models trained on it (``trained_on``), datasets and
   fine-tunes made from those (``derived_from``), bundles pinning them
   (``contains``), their variants (``variant_of``), evaluations on them
   (``evaluated_on``) — transitively.

Indexes are immutable (they are files of immutable versions). From an embedded
registry a lookup reads the index's header and fence keys (cached per process
in :class:`KeyIndexCache`) and then one block of 4096 hashes, straight from the
chunk store: one or two chunks per dataset version, whatever its size. From a
remote registry the index files are fetched whole once and, with a
``cache_dir`` (the CLI uses ``<home>/cache/keys``), kept on disk and
memory-mapped by later runs.

**Flags.** ``flag_impact`` sets the tag ``impact-<h>`` on every affected version
(dataset versions holding the key included), where ``<h>`` is 16 hex digits of
BLAKE3 over the column and value, so the raw key never appears in the registry.
The tag value says which column, which dataset version and which edge. Tags show
in ``mk show`` and every ``--json`` listing, and have a history (who flagged,
when, why). Clearing a flag is removing the tag (``mk tag rm``).

**For promotion rules** (the governance policy engine): :func:`impact_flags`
returns the impact tags of a :class:`~modelkeep.registry.types.Version`, and
:func:`impact_violation` returns a one-line reason when a version is flagged
(None when it is not). Both read only the version record, no I/O.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from modelkeep.errors import InvalidInput
from modelkeep.ml import _versionfiles
from modelkeep.ml.datasets import KeyIndex, decode_key_index, open_key_index
from modelkeep.registry.evidence import IMPACT_TAG_PREFIX
from modelkeep.ml.tensordiff import ChunkSource
from modelkeep.registry.api import Registry
from modelkeep.registry.types import Direction, Edge, Kind, Version, VersionKey

__all__ = [
    "FLAG_PREFIX",
    "KeyIndexCache",
    "Affected",
    "ImpactReport",
    "impact",
    "flag_impact",
    "flag_key",
    "impact_flags",
    "impact_violation",
]

FLAG_PREFIX = IMPACT_TAG_PREFIX  # one name for the flag, shared with promotion policies


class KeyIndexCache:
    """Opened key indexes by (files digest, path), for the life of the process.

    From an embedded registry an index is opened straight from the chunk store:
    its header and fence keys are read once, and each lookup reads one block of
    hashes (one or two chunks). From any other registry the whole index file is
    fetched once and, with ``cache_dir``, kept on disk (named by the version's
    files digest and the path, so it can never be stale) and memory-mapped by
    later processes.
    """

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._mem: dict[tuple[str, str], KeyIndex] = {}

    def get(self, registry: Registry, version: Version, path: str) -> KeyIndex:
        key = (str(version.files_digest), path)
        hit = self._mem.get(key)
        if hit is not None:
            return hit
        where = f"{version.ref}:{path}"
        disk = self._disk_path(key)
        found = _versionfiles.manifest_of(registry, version.ref)
        if disk is not None and disk.is_file():
            data = np.memmap(disk, dtype=np.uint8, mode="r")
            idx = decode_key_index(data, where=f"{where} (cached in {disk})")
        elif found is not None:
            entry = _versionfiles.entry_of(found[1], path)
            if entry is None:
                raise InvalidInput(f"{version.ref} has no file {path!r}")
            src = ChunkSource(registry.store, entry)  # type: ignore[attr-defined]  # embedded registries only
            idx = open_key_index(src.read, src.size, where=where)
        else:
            raw = _versionfiles.read_bytes(registry, version.ref, path)
            if disk is not None:
                _write_atomic(disk, raw)
            idx = decode_key_index(raw, where=where)
        self._mem[key] = idx
        return idx

    def _disk_path(self, key: tuple[str, str]) -> Path | None:
        if self.cache_dir is None:
            return None
        name = blake3.blake3(f"{key[0]}\x00{key[1]}".encode()).hexdigest(16)
        return self.cache_dir / name[:2] / f"{name}.keys"


def _write_atomic(dest: Path, data: bytes) -> None:
    # Unique temp name then rename: concurrent processes filling the same cache never see half a file.
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_DEFAULT_CACHE = KeyIndexCache()


@dataclass(frozen=True, slots=True)
class Affected:
    """A version made (transitively) from a dataset version holding the key."""

    version: VersionKey
    kind: Kind
    source: VersionKey  # the dataset version holding the key it descends from
    depth: int
    edge: Edge  # the edge it was reached through


@dataclass(frozen=True, slots=True)
class ImpactReport:
    dataset: str
    column: str
    flag: str  # the tag key that marks affected versions
    containing: tuple[VersionKey, ...]  # dataset versions whose index holds the key, newest first
    unindexed: tuple[VersionKey, ...]  # versions with no index of this column: unknown
    affected: tuple[Affected, ...]  # downstream of the containing versions, each version once
    checked: int  # dataset versions looked at

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "column": self.column,
            "flag": self.flag,
            "checked": self.checked,
            "containing": [str(k) for k in self.containing],
            "unindexed": [str(k) for k in self.unindexed],
            "affected": [
                {"version": str(a.version), "kind": a.kind.value, "source": str(a.source), "depth": a.depth,
                 "edge": a.edge.type.value, "via": f"{a.edge.source} {a.edge.type.value} {a.edge.target}"}
                for a in self.affected
            ],
        }


def flag_key(column: str, value: str) -> str:
    """The tag key marking versions affected by ``column=value``: no trace of the raw value."""
    return FLAG_PREFIX + blake3.blake3(f"{column}\x00{value}".encode()).hexdigest(8)


def _index_path(version: Version, column: str) -> str | None:
    info = version.params.get("dataset")
    if not isinstance(info, Mapping):
        return None
    keys = info.get("keys")
    if not isinstance(keys, Mapping) or not isinstance(keys.get(column), Mapping):
        return None
    path = keys[column].get("index")
    return path if isinstance(path, str) else None


def impact(
    registry: Registry, dataset: str, column: str, value: str, *, cache: KeyIndexCache | None = None
) -> ImpactReport:
    """Dataset versions of ``dataset`` whose key index holds ``column=value``, and everything downstream of them.

    Raises ArtifactNotFound, and InvalidInput when ``dataset`` is not a dataset or
    none of its versions has an index of ``column``.
    """
    art = registry.artifact(dataset)
    if art.kind is not Kind.DATASET:
        raise InvalidInput(f"{dataset} is a {art.kind.value}, not a dataset")
    cache = cache or _DEFAULT_CACHE
    versions = registry.versions(dataset)
    containing: list[Version] = []
    unindexed: list[VersionKey] = []
    for v in versions:
        path = _index_path(v, column)
        if path is None:
            unindexed.append(v.key)
            continue
        idx = cache.get(registry, v, path)
        if idx.contains(value):
            containing.append(v)
    if versions and len(unindexed) == len(versions):
        raise InvalidInput(
            f"no version of {dataset} has a key index of column {column!r}",
            hint=f"push it with: mk push DATA {dataset} --kind dataset --key {column}",
        )
    affected: dict[VersionKey, Affected] = {}
    holders = {v.key for v in containing}
    for v in containing:
        for node in registry.lineage(v.ref, direction=Direction.DOWNSTREAM):
            if node.version in holders:
                continue
            prev = affected.get(node.version)
            if prev is None or node.depth < prev.depth:
                affected[node.version] = Affected(node.version, node.kind, v.key, node.depth, node.edge)
    ordered = sorted(affected.values(), key=lambda a: (a.depth, a.version))
    return ImpactReport(
        dataset, column, flag_key(column, value), tuple(v.key for v in containing), tuple(unindexed),
        tuple(ordered), len(versions),
    )


def flag_impact(registry: Registry, report: ImpactReport, *, reason: str = "") -> list[VersionKey]:
    """Tag every dataset version holding the key and every affected version with ``report.flag``.

    Returns the versions tagged (each tag change is recorded with actor, time and reason).
    """
    why = reason or f"impact analysis of {report.dataset} key {report.column}"
    done: list[VersionKey] = []
    for key in report.containing:
        registry.set_tag(str(key), report.flag, f"{report.column} key held by this dataset version", reason=why)
        done.append(key)
    for a in report.affected:
        value = f"{report.column} key in {a.source}; reached via {a.edge.source} {a.edge.type.value} {a.edge.target}"
        registry.set_tag(str(a.version), report.flag, value[:4096], reason=why)
        done.append(a.version)
    return done


# -- for promotion rules ---------------------------------------------------------------


def impact_flags(version: Version) -> dict[str, str]:
    """The impact tags of ``version`` (tag key -> explanation); empty when it is not flagged."""
    return {k: v for k, v in version.tags.items() if k.startswith(FLAG_PREFIX)}


def impact_violation(version: Version) -> str | None:
    """A one-line reason to block promotion of a flagged version, or None when it carries no impact flag."""
    flags = impact_flags(version)
    if not flags:
        return None
    first = sorted(flags)[0]
    more = f" (and {len(flags) - 1} more)" if len(flags) > 1 else ""
    return f"{version.ref} is flagged by impact analysis: {first}: {flags[first]}{more}"
