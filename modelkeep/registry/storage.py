"""Storage upkeep seen from the registry: disk usage, integrity checks, garbage collection.

The store knows chunks, packs and manifests; the registry knows which versions
reference which manifests. This module joins the two: ``fsck`` names the
"artifact@version:path" entries each store problem affects, and ``gc`` hands the
store the set of chunks still referenced by some version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelkeep.db.models import ArtifactRow, ManifestRow, VersionRow
from modelkeep.errors import InvalidInput
from modelkeep.registry.records import semver_of
from modelkeep.registry.types import ArtifactUsage, DiskUsage, FsckReport, Problem
from modelkeep.store.chunkstore import StoreFsck, StoreStats
from modelkeep.store.digest import Digest
from modelkeep.store.manifest import Manifest

__all__ = ["disk_usage", "fsck_report", "live_chunks", "manifests", "version_refs"]


def disk_usage(session: Session, stats: StoreStats) -> DiskUsage:
    stmt = (
        select(ArtifactRow.name, func.count(VersionRow.id), func.coalesce(func.sum(VersionRow.size), 0))
        .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
        .where(VersionRow.deleted_at.is_(None))
        .group_by(ArtifactRow.name)
        .order_by(ArtifactRow.name)
    )
    per = tuple(ArtifactUsage(name, int(n), int(size)) for name, n, size in session.execute(stmt))
    return DiskUsage(
        logical_bytes=sum(a.logical_bytes for a in per),
        unique_bytes=stats.unique_bytes,
        stored_bytes=stats.stored_bytes,
        chunks=stats.chunks,
        packs=stats.packs,
        artifacts=per,
    )


def manifests(session: Session, bad: list[tuple[str, str]] | None = None) -> Iterator[tuple[str, Manifest]]:
    """(digest, manifest) of every manifest some version references, streamed.

    A stored manifest that does not parse, or whose digest is not the one it is
    stored under, raises InvalidInput; with ``bad`` given, it is recorded there
    as (digest, reason) and skipped instead (fsck reports it; gc must stop).
    """
    # Tombstoned versions (deleted by retention) reference nothing: their bytes go at the next gc,
    # unless a live version shares the manifest.
    referenced = select(VersionRow.files_digest).where(VersionRow.deleted_at.is_(None)).distinct().scalar_subquery()
    stmt = select(ManifestRow.digest, ManifestRow.body).where(ManifestRow.digest.in_(referenced))
    for digest, body in session.execute(stmt.execution_options(yield_per=256)):
        try:
            manifest = Manifest.from_bytes(body)
            if str(manifest.digest) != digest:
                raise InvalidInput(f"manifest {digest} holds the listing of {manifest.digest}")
        except InvalidInput as exc:
            if bad is None:
                raise
            bad.append((digest, exc.message))
            continue
        yield digest, manifest


def live_chunks(session: Session) -> set[Digest]:
    live: set[Digest] = set()
    for _, manifest in manifests(session):
        live |= manifest.chunk_digests()
    return live


def version_refs(session: Session) -> dict[str, list[str]]:
    """Manifest digest -> "artifact@version" of every version holding it."""
    stmt = (
        select(VersionRow.files_digest, ArtifactRow.name, VersionRow.major, VersionRow.minor, VersionRow.patch)
        .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
        .where(VersionRow.deleted_at.is_(None))
        .order_by(ArtifactRow.name, VersionRow.major, VersionRow.minor, VersionRow.patch)
    )
    out: dict[str, list[str]] = defaultdict(list)
    for digest, name, a, b, c in session.execute(stmt):
        out[digest].append(f"{name}@{semver_of(a, b, c)}")
    return out


def fsck_report(
    result: StoreFsck,
    all_manifests: list[tuple[str, Manifest]],
    refs: dict[str, list[str]],
    bad_manifests: Sequence[tuple[str, str]] = (),
) -> FsckReport:
    """The store's problems, each with the "artifact@version:path" entries it affects, then the bad manifests'."""
    by_chunk = {p.chunk for p in result.problems if p.chunk is not None}
    by_file = {p.file for p in result.problems if p.file is not None}
    chunk_hits: dict[Digest, set[str]] = defaultdict(set)
    file_hits: dict[Digest, set[str]] = defaultdict(set)
    if by_chunk or by_file:
        for digest, manifest in all_manifests:
            for entry in manifest:
                places = [f"{ref}:{entry.path}" for ref in refs.get(digest, ())]
                if entry.digest in by_file:
                    file_hits[entry.digest].update(places)
                for chunk in entry.chunks:
                    if chunk.digest in by_chunk:
                        chunk_hits[chunk.digest].update(places)
    problems = []
    for p in result.problems:
        affects: set[str] = set()
        if p.chunk is not None:
            affects |= chunk_hits.get(p.chunk, set())
        if p.file is not None:
            affects |= file_hits.get(p.file, set())
        problems.append(Problem(p.kind, p.detail, p.pack, p.chunk, tuple(sorted(affects))))
    for digest, why in bad_manifests:
        problems.append(Problem("bad_manifest", why, affects=tuple(refs.get(digest, ()))))
    return FsckReport(result.packs_checked, result.chunks_checked, result.bytes_checked, tuple(problems))
