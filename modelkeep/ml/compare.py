"""Side-by-side comparison of versions: ``compare(registry, ["fraud@1.0.0", "fraud@2.0.0", ...])``.

The first version is the base; every other one is compared with it:

* metrics side by side with deltas against the base;
* params whose values differ between any of the versions;
* lineage: the targets of each edge type (datasets trained / evaluated on,
  parents, bundle members, variants) where they differ;
* environment from provenance: packages added / removed / changed, Python, OS,
  git commit;
* files added / removed / changed (``Registry.diff``);
* for every changed ``.safetensors`` file present in both, a tensor diff
  (:mod:`modelkeep.ml.tensordiff`) read straight from the chunk store of an
  embedded registry (only the chunks of changed tensors are read), or from
  pulled copies otherwise;
* for ``prompt`` and ``config`` versions, unified text diffs and (prompts) the
  template variables of each version.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelkeep.errors import InvalidInput
from modelkeep.ml import _versionfiles
from modelkeep.ml.tensordiff import ChunkSource, FileSource, TensorDiff, diff_sources
from modelkeep.ml.textdiff import TextDiff, text_diffs, version_variables
from modelkeep.registry.api import Registry
from modelkeep.registry.types import Kind, Version, VersionDiff

__all__ = ["MetricRow", "EnvDiff", "PairComparison", "Comparison", "compare", "package_changes"]


@dataclass(frozen=True, slots=True)
class MetricRow:
    name: str
    values: tuple[Any, ...]  # one per version, None when absent
    deltas: tuple[float | None, ...]  # value - base value, None when not both numbers


@dataclass(frozen=True, slots=True)
class EnvDiff:
    added: dict[str, str]
    removed: dict[str, str]
    changed: dict[str, tuple[str, str]]  # name -> (base version, other version)
    other: dict[str, tuple[Any, Any]]  # python, os, git commit... -> (base, other) when they differ

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.other)


@dataclass(frozen=True, slots=True)
class PairComparison:
    """The base version against one other version."""

    base: str
    other: str
    files: VersionDiff
    environment: EnvDiff
    tensors: dict[str, TensorDiff]  # path -> tensor diff of that safetensors file
    texts: tuple[TextDiff, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    versions: tuple[Version, ...]
    metrics: tuple[MetricRow, ...]
    params: dict[str, tuple[Any, ...]]  # only params that differ
    lineage: dict[str, tuple[tuple[str, ...], ...]]  # edge type -> targets per version, only where they differ
    pairs: tuple[PairComparison, ...]
    variables: dict[str, dict[str, list[str]]]  # prompt ref -> path -> variables

    def to_json(self) -> dict[str, Any]:
        return {
            "versions": [v.ref for v in self.versions],
            "metrics": [{"name": m.name, "values": list(m.values), "deltas": list(m.deltas)} for m in self.metrics],
            "params": {k: list(v) for k, v in self.params.items()},
            "lineage": {k: [list(t) for t in v] for k, v in self.lineage.items()},
            "variables": self.variables,
            "pairs": [
                {
                    "base": p.base,
                    "other": p.other,
                    "files": {
                        "added": [c.path for c in p.files.added],
                        "removed": [c.path for c in p.files.removed],
                        "changed": [{"path": c.path, "old_size": c.old_size, "new_size": c.new_size}
                                    for c in p.files.changed],
                        "unchanged": p.files.unchanged,
                    },
                    "environment": {
                        "added": p.environment.added,
                        "removed": p.environment.removed,
                        "changed": {k: list(v) for k, v in p.environment.changed.items()},
                        "other": {k: list(v) for k, v in p.environment.other.items()},
                    },
                    "tensors": {path: t.to_json() for path, t in p.tensors.items()},
                    "texts": [{"path": t.path, "status": t.status, "diff": t.diff} for t in p.texts],
                }
                for p in self.pairs
            ],
        }


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def compare(registry: Registry, refs: Sequence[str], *, tensors: bool = True) -> Comparison:
    """Compare two or more versions; the first is the base. Raises InvalidInput for fewer than two refs."""
    if len(refs) < 2:
        raise InvalidInput("compare needs at least two versions")
    versions = tuple(registry.get(r) for r in refs)
    base = versions[0]
    metric_names = sorted({k for v in versions for k in v.metrics})
    metrics = []
    for name in metric_names:
        values = tuple(v.metrics.get(name) for v in versions)
        b = values[0]
        deltas = tuple(x - b if _number(x) and _number(b) else None for x in values)
        metrics.append(MetricRow(name, values, deltas))
    params = {}
    for key in sorted({k for v in versions for k in v.params}):
        values = tuple(v.params.get(key) for v in versions)
        if any(x != values[0] for x in values[1:]):
            params[key] = values
    lineage = {}
    for etype in sorted({e.type.value for v in versions for e in v.edges}):
        targets = tuple(tuple(sorted(str(e.target) for e in v.edges if e.type.value == etype)) for v in versions)
        if any(t != targets[0] for t in targets[1:]):
            lineage[etype] = targets
    pairs = tuple(_pair(registry, base, other, tensors=tensors) for other in versions[1:])
    variables = {v.ref: version_variables(registry, v.ref) for v in versions if v.kind is Kind.PROMPT}
    return Comparison(versions, tuple(metrics), params, lineage, pairs, variables)


def package_changes(base: Mapping[str, Any], other: Mapping[str, Any]) -> EnvDiff:
    """Environment differences between two provenance records."""
    pa = base.get("packages") if isinstance(base.get("packages"), Mapping) else {}
    pb = other.get("packages") if isinstance(other.get("packages"), Mapping) else {}
    assert isinstance(pa, Mapping) and isinstance(pb, Mapping)
    added = {k: str(pb[k]) for k in sorted(pb.keys() - pa.keys())}
    removed = {k: str(pa[k]) for k in sorted(pa.keys() - pb.keys())}
    changed = {k: (str(pa[k]), str(pb[k])) for k in sorted(pa.keys() & pb.keys()) if pa[k] != pb[k]}
    flat_a, flat_b = _env_facts(base), _env_facts(other)
    facts = {k: (flat_a.get(k), flat_b.get(k)) for k in sorted(flat_a.keys() | flat_b.keys())
             if flat_a.get(k) != flat_b.get(k)}
    return EnvDiff(added, removed, changed, facts)


def _env_facts(prov: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section in ("python", "os", "git", "cuda", "cpu"):
        value = prov.get(section)
        if isinstance(value, Mapping):
            for k, v in value.items():
                if not isinstance(v, Mapping | list):
                    out[f"{section}.{k}"] = v
        elif value is not None and not isinstance(value, list):
            out[section] = value
    return out


def _pair(registry: Registry, base: Version, other: Version, *, tensors: bool) -> PairComparison:
    files = registry.diff(base.ref, other.ref)
    env = package_changes(base.provenance, other.provenance)
    tdiffs: dict[str, TensorDiff] = {}
    weights = [c.path for c in files.changed if c.path.endswith(".safetensors")]
    if tensors and weights:
        tdiffs = _tensor_diffs(registry, base.ref, other.ref, weights)
    texts: tuple[TextDiff, ...] = ()
    if base.kind in (Kind.PROMPT, Kind.CONFIG) or other.kind in (Kind.PROMPT, Kind.CONFIG):
        texts = tuple(text_diffs(registry, base.ref, other.ref))
    return PairComparison(base.ref, other.ref, files, env, tdiffs, texts)


def _tensor_diffs(registry: Registry, a: str, b: str, paths: list[str]) -> dict[str, TensorDiff]:
    ma, mb = _versionfiles.manifest_of(registry, a), _versionfiles.manifest_of(registry, b)
    out: dict[str, TensorDiff] = {}
    if ma is not None and mb is not None:
        store = registry.store  # type: ignore[attr-defined]  # manifest_of answers only for embedded registries
        for p in paths:
            ea, eb = _versionfiles.entry_of(ma[1], p), _versionfiles.entry_of(mb[1], p)
            assert ea is not None and eb is not None
            sa, sb = ChunkSource(store, ea), ChunkSource(store, eb)
            sa.name, sb.name = f"{a}:{p}", f"{b}:{p}"
            out[p] = diff_sources(sa, sb)
        return out
    with _versionfiles.local_copy(registry, a) as (_, da), _versionfiles.local_copy(registry, b) as (_, db):
        for p in paths:
            with contextlib.ExitStack() as stack:
                sa = stack.enter_context(FileSource(da / p, f"{a}:{p}"))
                sb = stack.enter_context(FileSource(db / p, f"{b}:{p}"))
                out[p] = diff_sources(sa, sb)
    return out
