"""Bundles (exact member versions pinned together) and variants (other builds of one version).

A **bundle** is a ``bundle`` version whose only file, ``bundle.json``, lists
its members (artifact, semver, digest, kind) and which has one ``contains``
edge per member: an ensemble, or a whole AI system (model + prompt + config).
Members are resolved once, when the bundle version is made, so
``fraud-system@1.0.0`` names exactly the same members forever. A new member
version changes nothing until :func:`update_bundle` is asked to take it
(``mk bundle update fraud-system --member fraud@2.0.0``), which makes the next
bundle version.

A **variant** (``fp16``, ``int8-edge``) is a version with a ``variant_of``
edge to the logical version it was built from and a ``variant`` tag or param
naming it. :func:`find_variant` picks, among the versions linked
``variant_of`` to a ref, the newest one carrying that name.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelkeep.errors import CorruptData, InvalidInput, VersionNotFound
from modelkeep.registry.api import Registry
from modelkeep.registry.names import VersionRef
from modelkeep.registry.types import Direction, EdgeType, Kind, Version

__all__ = ["BUNDLE_FILE", "Bundle", "bundle", "create_bundle", "update_bundle", "resolve_bundle", "find_variant"]

BUNDLE_FILE = "bundle.json"
VARIANT_KEY = "variant"


@dataclass(frozen=True, slots=True)
class Bundle:
    version: Version
    members: tuple[Version, ...]  # in the order the bundle lists them


def create_bundle(
    registry: Registry,
    name: str,
    members: Sequence[str],
    *,
    message: str = "",
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Version:
    """Make a bundle version of ``name`` pinning the versions ``members`` resolve to now.

    Each member ref may be an alias or ``latest``; the exact version is pinned.
    Two members of the same artifact raise InvalidInput. Pushing the same members
    again returns the existing version (no new version).
    """
    if isinstance(members, str) or not members:
        raise InvalidInput("a bundle needs a list of one or more member refs")
    pinned = [registry.get(m) for m in members]
    seen: dict[str, str] = {}
    for v in pinned:
        if v.artifact in seen:
            raise InvalidInput(f"two members of artifact {v.artifact!r}: {seen[v.artifact]} and {v.version}")
        seen[v.artifact] = v.version
    doc = {
        "format": 1,
        "members": [
            {"artifact": v.artifact, "version": v.version, "digest": str(v.digest), "kind": v.kind.value}
            for v in pinned
        ],
    }
    with tempfile.TemporaryDirectory(prefix="modelkeep-bundle-") as tmp:
        (Path(tmp) / BUNDLE_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        return registry.push(
            tmp,
            name,
            kind=Kind.BUNDLE,
            message=message,
            tags=tags,
            params=params,
            contains=[v.ref for v in pinned],
        )


def update_bundle(
    registry: Registry,
    name: str,
    members: Sequence[str],
    *,
    remove: Sequence[str] = (),
    message: str = "",
) -> Version:
    """The next bundle version: the latest one's members, with ``members`` replacing those of the same
    artifact (or added), and the artifacts named in ``remove`` dropped."""
    current = bundle(registry, name)
    if isinstance(members, str) or isinstance(remove, str):
        raise InvalidInput("members and remove must be lists of refs / artifact names")
    new = {VersionRef.parse(m).artifact: m for m in members}
    unknown = [a for a in remove if a not in {m.artifact for m in current.members}]
    if unknown:
        raise InvalidInput(f"{name} has no member of {', '.join(unknown)}")
    refs = [new.pop(m.artifact, m.ref) for m in current.members if m.artifact not in remove]
    refs += list(new.values())
    return create_bundle(registry, name, refs, message=message)


def bundle(registry: Registry, ref: str) -> Bundle:
    """The bundle version ``ref`` and its pinned members. Raises InvalidInput when it is not a bundle."""
    v = registry.get(ref)
    if v.kind is not Kind.BUNDLE:
        raise InvalidInput(f"{v.ref} is a {v.kind.value}, not a bundle")
    order = _member_order(registry, v)
    contained = [e.target for e in v.edges if e.type is EdgeType.CONTAINS]
    contained.sort(key=lambda k: order.get(str(k), len(order)))
    return Bundle(v, tuple(registry.get(str(k)) for k in contained))


def resolve_bundle(registry: Registry, ref: str) -> list[Version]:
    """The exact member versions the bundle ``ref`` pins, in its order."""
    return list(bundle(registry, ref).members)


def find_variant(registry: Registry, ref: str, variant: str) -> Version:
    """The newest version linked ``variant_of`` to ``ref`` whose ``variant`` tag or param is ``variant``.

    Raises VersionNotFound naming the variants that do exist.
    """
    if not isinstance(variant, str) or not variant:
        raise InvalidInput("a variant name is a non-empty string like 'fp16'")
    base = registry.get(ref)
    nodes = registry.lineage(base.ref, direction=Direction.DOWNSTREAM, depth=1)
    candidates = [registry.get(str(n.version)) for n in nodes if n.edge.type is EdgeType.VARIANT_OF]
    named = {c.ref: _variant_name(c) for c in candidates}
    matching = [c for c in candidates if named[c.ref] == variant]
    if not matching:
        known = sorted({n for n in named.values() if n})
        raise VersionNotFound(
            f"{base.ref} has no variant {variant!r}" + (f" (variants: {', '.join(known)})" if known else " (no variants)")
        )
    return max(matching, key=lambda c: c.created_at)


def _variant_name(v: Version) -> str | None:
    name = v.tags.get(VARIANT_KEY, v.params.get(VARIANT_KEY))
    return str(name) if name is not None else None


def _member_order(registry: Registry, v: Version) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="modelkeep-bundle-") as tmp:
        registry.pull(v.ref, tmp)
        try:
            doc = json.loads((Path(tmp) / BUNDLE_FILE).read_text(encoding="utf-8"))
            return {f"{m['artifact']}@{m['version']}": i for i, m in enumerate(doc["members"])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptData(f"{v.ref}: {BUNDLE_FILE} is missing or malformed ({exc})") from None
