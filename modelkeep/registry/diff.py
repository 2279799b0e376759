"""Differences between two versions: files by path, params, metrics and metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelkeep.registry.types import FileChange, ValueChange, Version, VersionDiff
from modelkeep.store.manifest import Manifest

__all__ = ["compare"]

_MISSING = object()


def compare(a: Version, files_a: Manifest, b: Version, files_b: Manifest) -> VersionDiff:
    """What changed from ``a`` to ``b``; a file counts as changed when its digest differs."""
    old = {f.path: f for f in files_a}
    new = {f.path: f for f in files_b}
    added = tuple(FileChange(p, None, new[p].size, None, new[p].digest) for p in sorted(new.keys() - old.keys()))
    removed = tuple(FileChange(p, old[p].size, None, old[p].digest, None) for p in sorted(old.keys() - new.keys()))
    changed = []
    unchanged = 0
    for p in sorted(old.keys() & new.keys()):
        o, n = old[p], new[p]
        if o.digest == n.digest and o.executable == n.executable:
            unchanged += 1
        else:
            changed.append(FileChange(p, o.size, n.size, o.digest, n.digest))
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
