"""Differences between two versions: files by path, params, metrics and metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelkeep.registry.types import FileChange, ValueChange, Version, VersionDiff
from modelkeep.store.manifest import Manifest

__all__ = ["compare", "file_changes"]

_MISSING = object()


def file_changes(
    files_a: Manifest, files_b: Manifest
) -> tuple[tuple[FileChange, ...], tuple[FileChange, ...], tuple[FileChange, ...], int]:
    """Files added, removed and changed from ``files_a`` to ``files_b``, and how many are unchanged.

    A file is unchanged when its digest and executable bit are. Between manifests
    of different formats (their file digests are defined differently) the chunk
    lists decide instead: chunk digests are the same in every format.
    """
    old = {f.path: f for f in files_a}
    new = {f.path: f for f in files_b}
    added = tuple(FileChange(p, None, new[p].size, None, new[p].digest) for p in sorted(new.keys() - old.keys()))
    removed = tuple(FileChange(p, old[p].size, None, old[p].digest, None) for p in sorted(old.keys() - new.keys()))
    same_format = files_a.format == files_b.format
    changed = []
    unchanged = 0
    for p in sorted(old.keys() & new.keys()):
        o, n = old[p], new[p]
        same = o.digest == n.digest if same_format else o.chunks == n.chunks
        if same and o.executable == n.executable:
            unchanged += 1
        else:
            changed.append(FileChange(p, o.size, n.size, o.digest, n.digest))
    return added, removed, tuple(changed), unchanged


def compare(a: Version, files_a: Manifest, b: Version, files_b: Manifest) -> VersionDiff:
    """What changed from ``a`` to ``b`` (files as ``file_changes`` tells)."""
    added, removed, changed, unchanged = file_changes(files_a, files_b)
    metadata = _values(
        {
            "kind": a.kind.value,
            "message": a.message,
            "author": a.author,
            "lineage": sorted(f"{e.type.value} {e.target}" for e in a.edges),
            "tags": dict(a.tags),
        },
        {
            "kind": b.kind.value,
            "message": b.message,
            "author": b.author,
            "lineage": sorted(f"{e.type.value} {e.target}" for e in b.edges),
            "tags": dict(b.tags),
        },
    )
    return VersionDiff(
        a=a.key,
        b=b.key,
        added=added,
        removed=removed,
        changed=tuple(changed),
        unchanged=unchanged,
        params=_values(a.params, b.params),
        metrics=_values(a.metrics, b.metrics),
        metadata=metadata,
    )


def _values(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[ValueChange, ...]:
    out = []
    for key in sorted(old.keys() | new.keys()):
        o, n = old.get(key, _MISSING), new.get(key, _MISSING)
        if o != n:
            out.append(ValueChange(key, None if o is _MISSING else o, None if n is _MISSING else n))
    return tuple(out)
