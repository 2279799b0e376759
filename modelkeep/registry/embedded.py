"""EmbeddedRegistry: the Registry in process, over a database URL and a chunk store.

Opening one upgrades the database schema to the newest migration first (under
a database lock, so concurrent openers are safe). Each method is one database
transaction (``modelkeep.db.uow``). Deviations from ``registry/api.py``:

* ``push`` of content and metadata equal to the latest version's with ``tags``
  sets those tags on the latest version (recorded in its tag history);
  ``major=True`` or a higher explicit ``version`` always makes a new version.
* ``set_tag(..., None)`` on an absent tag raises TagNotFound.
"""

from __future__ import annotations

import copy
import getpass
import stat
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from modelkeep._gc import collector_paused
from modelkeep.config import Settings
from modelkeep.db import schema
from modelkeep.db.engine import make_engine, make_sessionmaker, revision_source
from modelkeep.db.models import ManifestRow, VersionRow, utcnow
from modelkeep.db.uow import UnitOfWork
from modelkeep.errors import ChunkNotFound, InvalidInput, InvalidRef, StorageError
from modelkeep.registry import aliases as _aliases
from modelkeep.registry import audit as _audit
from modelkeep.registry import artifacts as _artifacts
from modelkeep.registry import diff as _diff
from modelkeep.registry import lineage as _lineage
from modelkeep.registry import storage, tree
from modelkeep.registry import stages as _stages
from modelkeep.registry import tags as _tags
from modelkeep.registry import versions as _versions
from modelkeep.registry.api import Progress, RefLike, RefsLike, Registry
from modelkeep.registry.governance import Governance
from modelkeep.registry.names import VersionRef, check_alias, check_name
from modelkeep.registry.provenance import capture as capture_provenance
from modelkeep.registry.records import version_record, version_records
from modelkeep.registry.semver import SemVer
from modelkeep.registry.types import (
    Alias,
    AliasMove,
    Artifact,
    AuditReport,
    Direction,
    DiskUsage,
    EdgeType,
    Event,
    FsckReport,
    GcReport,
    Kind,
    LineageNode,
    TagChange,
    Version,
    VersionDiff,
    VersionKey,
)
from modelkeep.store.chunkstore import ChunkStore, open_store
from modelkeep.store.manifest import FORMAT as MANIFEST_FORMAT
from modelkeep.store.manifest import Destination, Manifest

# retention and signatures
from modelkeep.registry import retention as _retention
from modelkeep.registry import retention_plan as _retention_plan
from modelkeep.registry import signatures as _signatures
from modelkeep.registry import tombstones as _tombstones
from modelkeep.registry.types import (
    RetentionHold,
    RetentionPlan,
    RetentionRule,
    SignatureCheck,
    SignatureRecord,
    Tombstone,
)

__all__ = ["EmbeddedRegistry"]


class EmbeddedRegistry(Governance, Registry):
    """``EmbeddedRegistry(settings)`` or ``EmbeddedRegistry(db_url, store, user)``.

    ``store`` is a ChunkStore or a store URL; a store opened here from a URL is
    closed by :meth:`close`, one passed in belongs to the caller.
    """

    _is_view = False

    def __init__(
        self, settings_or_url: Settings | str, store: ChunkStore | str | None = None, user: str | None = None
    ) -> None:
        if isinstance(settings_or_url, Settings):
            db_url = settings_or_url.db_url
            store = store if store is not None else settings_or_url.store_url
            user = user or settings_or_url.user
        else:
            db_url = settings_or_url
            if store is None:
                raise InvalidInput("EmbeddedRegistry(db_url, store, user) needs a store (a ChunkStore or a store URL)")
        self._user = user or _os_user()
        self.db_url = db_url
        self._owns_store = isinstance(store, str)
        self._store = open_store(store) if isinstance(store, str) else store
        try:
            self._engine = make_engine(db_url)
            try:
                schema.upgrade(self._engine)
            except OperationalError as exc:
                self._engine.dispose()
                raise StorageError(f"cannot open the registry database: {exc.orig}") from exc
        except BaseException:
            if self._owns_store:
                self._store.close()
            raise
        self._uow = UnitOfWork(make_sessionmaker(self._engine))
        self._revision = revision_source(self._engine)

    @property
    def store(self) -> ChunkStore:
        return self._store

    @property
    def user(self) -> str:
        return self._user

    def as_actor(self, actor: str) -> EmbeddedRegistry:
        """A view that records ``actor`` on every change; it shares this registry's
        connections and store, and its ``close`` does nothing (the server makes one
        per request for the token's user)."""
        view = copy.copy(self)
        view._user = actor
        view._is_view = True
        return view

    def revision(self) -> int | None:
        """A number that changes whenever anything is committed to this registry's database, by
        any process or replica; None where it cannot be told (SQLite in memory, a database
        that does not answer).

        Two equal numbers mean every read between them answered the same: the server
        keeps the encoded answers of ref resolutions until the number changes. SQLite:
        its data version (~2 us, no I/O). PostgreSQL: one query (``db/engine.PgRevision``).
        """
        return None if self._revision is None else self._revision()

    # -- versions --------------------------------------------------------------

    def push(
        self,
        path: str | Path,
        name: str,
        *,
        kind: Kind | str | None = None,
        message: str = "",
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        derived_from: RefsLike = None,
        trained_on: RefsLike = None,
        evaluated_on: RefsLike = None,
        contains: RefsLike = None,
        variant_of: RefsLike = None,
        version: str | None = None,
        major: bool = False,
        progress: Progress | None = None,
        signature: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> Version:
        fields = self._version_fields(
            name, kind=kind, message=message, params=params, metrics=metrics, tags=tags,
            derived_from=derived_from, trained_on=trained_on, evaluated_on=evaluated_on, contains=contains,
            variant_of=variant_of, version=version, major=major, signature=signature,
        )
        sources = tree.collect(path)
        prov = {**capture_provenance(path), **_versions.json_value(provenance, "provenance")}
        # a record per chunk (~16k per GiB), no cycles: the collector would run ~80 times
        with collector_paused(), self._store.session() as upload:
            entries = [upload.put_file(f.path, f.rel, progress=progress) for f in sources]
            upload.commit()
            # Still inside the session: gc cannot run until the version row is committed.
            new = _versions.NewVersion(
                manifest=Manifest.of(entries),
                new_bytes=upload.new_bytes,
                provenance=_versions.json_value(prov, "provenance"),
                now=utcnow(),
                **fields,
            )
            return self._uow.write(lambda db: _versions.create(db, new))

    def _version_fields(
        self,
        name: str,
        *,
        kind: Kind | str | None,
        message: str,
        params: Mapping[str, Any] | None,
        metrics: Mapping[str, Any] | None,
        tags: Mapping[str, str] | None,
        derived_from: RefsLike,
        trained_on: RefsLike,
        evaluated_on: RefsLike,
        contains: RefsLike,
        variant_of: RefsLike,
        version: str | None,
        major: bool,
        signature: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """Checked metadata of a new version, shared by push and commit_manifest."""
        check_name(name)
        if not isinstance(message, str):
            raise InvalidInput(f"message must be a string, got {type(message).__name__}")
        explicit = SemVer.parse(version) if version is not None else None
        if explicit is not None and major:
            raise InvalidInput("give either an explicit version or major=True, not both")
        lineage = [
            (etype, VersionRef.parse(ref))
            for etype, refs in (
                (EdgeType.DERIVED_FROM, derived_from),
                (EdgeType.TRAINED_ON, trained_on),
                (EdgeType.EVALUATED_ON, evaluated_on),
                (EdgeType.CONTAINS, contains),
                (EdgeType.VARIANT_OF, variant_of),
            )
            for ref in _ref_list(refs, etype)
        ]
        fields = dict(
            name=name,
            kind=_kind(kind),
            author=self._user,
            message=message,
            params=_versions.json_value(params, "params"),
            metrics=_versions.json_value(metrics, "metrics"),
            edges=lineage,
            tags=_tags.check_tags(tags),
            version=explicit,
            major=major,
            signature=_versions.json_value(signature, "signature") if signature is not None else None,
        )
        return fields

    def commit_manifest(
        self,
        name: str,
        manifest: Manifest,
        *,
        kind: Kind | str | None = None,
        message: str = "",
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        derived_from: RefsLike = None,
        trained_on: RefsLike = None,
        evaluated_on: RefsLike = None,
        contains: RefsLike = None,
        variant_of: RefsLike = None,
        version: str | None = None,
        major: bool = False,
        signature: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
        new_bytes: int = 0,
    ) -> Version:
        fields = self._version_fields(
            name, kind=kind, message=message, params=params, metrics=metrics, tags=tags,
            derived_from=derived_from, trained_on=trained_on, evaluated_on=evaluated_on, contains=contains,
            variant_of=variant_of, version=version, major=major, signature=signature,
        )
        if not isinstance(manifest, Manifest):
            raise InvalidInput(f"manifest must be a Manifest, got {type(manifest).__name__}")
        if manifest.format != MANIFEST_FORMAT:  # older formats' file digests cannot be checked without the bytes
            raise InvalidInput(
                f"manifest format {manifest.format} is read, not written: new versions need format {MANIFEST_FORMAT}",
                hint="upgrade the client that sent it",
            )
        if not isinstance(new_bytes, int) or new_bytes < 0:
            raise InvalidInput("new_bytes must be a non-negative integer")
        # The shared lock keeps gc away from the chunks between the check and the commit.
        with self._store.session():
            absent = self._store.missing(manifest.chunk_digests())
            if absent:
                shown = ", ".join(sorted(str(d) for d in absent)[:5])
                more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
                raise ChunkNotFound(
                    f"cannot commit {name}: {len(absent)} chunk(s) of the manifest are not in the store: {shown}{more}",
                    hint="upload the missing chunks, then commit again",
                )
            new = _versions.NewVersion(
                manifest=manifest,
                new_bytes=min(new_bytes, manifest.size),
                provenance=_versions.json_value(provenance, "provenance"),
                now=utcnow(),
                **fields,
            )
            return self._uow.write(lambda db: _versions.create(db, new))

    def manifest(self, ref: RefLike) -> tuple[Version, Manifest]:
        return self._uow.read(lambda db: self._with_manifest(db, _parse(ref)))

    def pull(self, ref: RefLike, dest: str | Path, *, progress: Progress | None = None) -> Version:
        with collector_paused():  # a record per chunk and per run: no cycles, many objects
            version, manifest = self._uow.read(lambda db: self._with_manifest(db, _parse(ref)))
            into = Destination(dest)
            for entry in manifest:
                target = into.target(entry.path)
                self._store.read_file(entry, target, progress=progress)
                if entry.executable:
                    mode = target.stat().st_mode
                    target.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return version

    def get(self, ref: RefLike) -> Version:
        parsed = _parse(ref)

        def run(conn):  # type: ignore[no-untyped-def]
            name, row = _versions.find_row(conn, parsed)
            return version_record(conn, row, name)

        return self._uow.read_rows(run)

    def files(self, ref: RefLike) -> list[tuple[str, int]]:
        _, manifest = self._uow.read(lambda db: self._with_manifest(db, _parse(ref)))
        return [(f.path, f.size) for f in manifest]

    def versions(self, name: str, *, limit: int | None = None, offset: int = 0) -> list[Version]:
        check_name(name)
        if (limit is not None and limit < 0) or offset < 0:
            raise InvalidInput("limit and offset must not be negative")

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, name)
            rows = _versions.page(db, art.id, limit=limit, offset=offset)
            return version_records(db, rows, {art.id: art.name})

        return self._uow.read(run)

    def artifacts(self, *, namespace: str | None = None, kind: Kind | str | None = None) -> list[Artifact]:
        k = _kind(kind)
        return self._uow.read(lambda db: _artifacts.summaries(db, namespace=namespace, kind=k))

    def artifact(self, name: str) -> Artifact:
        check_name(name)
        return self._uow.read(lambda db: _artifacts.summaries(db, name=name))[0]

    # -- aliases and tags ------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: RefLike, *, reason: str = "", expected: str | None = None
    ) -> AliasMove:
        check_name(name)
        check_alias(alias)
        ref = _ref_in(name, version)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, name, lock=True)
            _stages.guard_alias(db, art, alias)
            _, row = _versions.find(db, ref, art)
            return _aliases.move(db, art, alias, row, expected=expected, actor=self._user, at=now, reason=reason)

        return self._uow.write(run)

    def remove_alias(self, name: str, alias: str, *, reason: str = "") -> AliasMove:
        check_name(name)
        check_alias(alias)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, name, lock=True)
            _stages.guard_alias(db, art, alias)
            return _aliases.remove(db, art, alias, actor=self._user, at=now, reason=reason)

        return self._uow.write(run)

    def aliases(self, name: str) -> list[Alias]:
        check_name(name)
        return self._uow.read(lambda db: _aliases.current(db, _versions.artifact_row(db, name)))

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        check_name(name)
        return self._uow.read(lambda db: _aliases.history(db, _versions.artifact_row(db, name), alias))

    def alias_at(self, name: str, alias: str, at: datetime) -> str | None:
        check_name(name)
        return self._uow.read(lambda db: _aliases.at_instant(db, name, alias, at))

    def set_tag(self, ref: RefLike, key: str, value: str | None, *, reason: str = "") -> TagChange:
        parsed = _parse(ref)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            name, row = _versions.find(db, parsed)
            return _tags.set_tag(db, row, _key(name, row), key, value, actor=self._user, at=now, reason=reason)

        return self._uow.write(run)

    def tag_history(self, ref: RefLike, key: str | None = None) -> list[TagChange]:
        parsed = _parse(ref)

        def run(db):  # type: ignore[no-untyped-def]
            name, row = _versions.find(db, parsed)
            return _tags.history(db, row.id, _key(name, row), key)

        return self._uow.read(run)

    # -- audit trail -----------------------------------------------------------------

    def history(self, name: str) -> list[Event]:
        check_name(name)

        def run(db):  # type: ignore[no-untyped-def]
            found = _audit.events(db, artifact=name)
            if not found:
                _versions.artifact_row(db, name)  # raises ArtifactNotFound
            return found

        return self._uow.read(run)

    def audit_log(
        self,
        *,
        artifact: str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        if artifact is not None:
            check_name(artifact)
        return self._uow.read(lambda db: _audit.events(db, artifact=artifact, since=since, after=after, limit=limit))

    def audit_verify(self) -> AuditReport:
        return self._uow.read(_audit.verify)

    def record_run(
        self,
        name: str,
        *,
        status: str,
        started_at: datetime,
        ended_at: datetime,
        version: str | None = None,
        error: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        check_name(name)
        if status not in ("succeeded", "failed"):
            raise InvalidInput(f"run status must be 'succeeded' or 'failed', got {status!r}")
        if started_at.tzinfo is None or ended_at.tzinfo is None:
            raise InvalidInput("run times must be timezone-aware")
        body = {
            **_versions.json_value(data, "run data"),
            "status": status,
            "started_at": started_at.isoformat(),
            "ended_at": ended_at.isoformat(),
            "duration_s": (ended_at - started_at).total_seconds(),
        }
        subject = version if version is not None else name
        now = utcnow()
        return self._uow.write(
            lambda db: _audit.record(
                db,
                action=f"run.{status}",
                actor=self._user,
                artifact=name,
                subject=subject,
                reason=error,
                data=body,
                at=now,
            )
        )

    # -- lineage and comparison -------------------------------------------------------

    def lineage(
        self, ref: RefLike, *, direction: Direction | str = Direction.UPSTREAM, depth: int | None = None
    ) -> list[LineageNode]:
        parsed = _parse(ref)
        return self._uow.read(
            lambda db: _lineage.walk(db, _versions.find(db, parsed)[1].id, direction=direction, depth=depth)
        )

    def diff(self, a: RefLike, b: RefLike) -> VersionDiff:
        ra, rb = _parse(a), _parse(b)

        def run(db):  # type: ignore[no-untyped-def]
            return self._with_manifest(db, ra), self._with_manifest(db, rb)

        (va, ma), (vb, mb) = self._uow.read(run)
        return _diff.compare(va, ma, vb, mb)

    # -- storage --------------------------------------------------------------------

    def du(self) -> DiskUsage:
        stats = self._store.stats()
        return self._uow.read(lambda db: storage.disk_usage(db, stats))

    def fsck(self, *, progress: Progress | None = None) -> FsckReport:
        bad: list[tuple[str, str]] = []
        found, refs = self._uow.read(lambda db: (list(storage.manifests(db, bad)), storage.version_refs(db)))
        result = self._store.fsck([m for _, m in found], progress=progress)
        return storage.fsck_report(result, found, refs, bad)

    def gc(self, *, dry_run: bool = False, grace_seconds: float = 3600.0) -> GcReport:
        # The live set is computed by the store while it holds its exclusive lock:
        # computed before, a push finishing in between could reuse a chunk gc then drops.
        r = self._store.gc(lambda: self._uow.read(storage.live_chunks), dry_run=dry_run, grace_seconds=grace_seconds)
        report = GcReport(r.packs_deleted, r.packs_repacked, r.chunks_deleted, r.bytes_freed, r.packs_kept_young, r.dry_run)
        if not dry_run:
            self._uow.write(lambda db: _audit.record_gc(db, report, actor=self._user))
        return report

    # -- retention and signatures (issue 3: retention, signatures) ------------------------

    def add_signature(
        self, ref: RefLike, public_key_pem: bytes, signature: bytes, *, reason: str = ""
    ) -> SignatureRecord:
        parsed = _parse(ref)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            name, row = _versions.find(db, parsed)
            return _signatures.add(db, name, row, public_key_pem, signature, actor=self._user, at=now, reason=reason)

        return self._uow.write(run)

    def signatures(self, ref: RefLike) -> list[SignatureRecord]:
        parsed = _parse(ref)
        return self._uow.read(lambda db: _signatures.records(db, *_versions.find(db, parsed)))

    def verify(self, ref: RefLike, public_keys: Sequence[bytes] | None = None) -> list[SignatureCheck]:
        parsed = _parse(ref)
        keys = list(public_keys) if public_keys is not None else None
        return self._uow.read(lambda db: _signatures.verify(db, *_versions.find(db, parsed), keys))

    def set_retention(
        self,
        name: str,
        *,
        keep_last: int | None = None,
        keep_days: int | None = None,
        keep_production: bool = False,
        min_days: int | None = None,
        reason: str = "",
    ) -> RetentionRule:
        check_name(name)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, name, lock=True)
            return _retention.set_rule(
                db,
                art,
                keep_last=keep_last,
                keep_days=keep_days,
                keep_production=keep_production,
                min_days=min_days,
                actor=self._user,
                at=now,
                reason=reason,
            )

        return self._uow.write(run)

    def retention(self, name: str) -> RetentionRule | None:
        check_name(name)
        return self._uow.read(lambda db: _retention.rule(db, _versions.artifact_row(db, name)))

    def retention_history(self, name: str) -> list[RetentionRule]:
        check_name(name)
        return self._uow.read(lambda db: _retention.rule_history(db, _versions.artifact_row(db, name)))

    def hold(self, ref: RefLike, *, reason: str) -> RetentionHold:
        parsed = _parse(ref)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, parsed.artifact, lock=True)  # serializes with retention apply
            name, row = _versions.find(db, parsed, art)
            return _retention.hold(db, name, row, actor=self._user, at=now, reason=reason)

        return self._uow.write(run)

    def release(self, ref: RefLike, *, reason: str) -> list[RetentionHold]:
        parsed = _parse(ref)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, parsed.artifact, lock=True)
            name, row = _versions.find(db, parsed, art)
            return _retention.release(db, name, row, actor=self._user, at=now, reason=reason)

        return self._uow.write(run)

    def holds(self, name: str | None = None, *, include_released: bool = False) -> list[RetentionHold]:
        if name is not None:
            check_name(name)

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, name) if name is not None else None
            return _retention.holds(db, art, include_released=include_released)

        return self._uow.read(run)

    def plan_retention(self, name: str | None = None) -> RetentionPlan:
        if name is not None:
            check_name(name)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            if name is not None:
                _versions.artifact_row(db, name)  # raises ArtifactNotFound
            return _retention_plan.plan(db, _retention_plan.scope(db, name, lock=False), now)[0]

        return self._uow.read(run)

    def apply_retention(self, name: str | None = None, *, reason: str) -> RetentionPlan:
        if name is not None:
            check_name(name)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            if name is not None:
                _versions.artifact_row(db, name)  # raises ArtifactNotFound
            arts = _retention_plan.scope(db, name, lock=True)
            return _retention_plan.apply(db, arts, now, actor=self._user, reason=reason)

        return self._uow.write(run)

    def tombstones(self, name: str) -> list[Tombstone]:
        check_name(name)
        return self._uow.read(lambda db: _tombstones.listing(db, _versions.artifact_row(db, name)))

    def close(self) -> None:
        if self._is_view:
            return
        if self._revision is not None:
            self._revision.close()
        self._engine.dispose()
        if self._owns_store:
            self._store.close()

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _with_manifest(db, ref: VersionRef) -> tuple[Version, Manifest]:  # type: ignore[no-untyped-def]
        name, row = _versions.find(db, ref)
        body = db.get(ManifestRow, row.files_digest).body
        return version_record(db, row, name), Manifest.from_bytes(body)


def _key(name: str, row: VersionRow) -> VersionKey:
    return VersionKey(name, row.semver)


def _parse(ref: RefLike) -> VersionRef:
    if isinstance(ref, VersionRef):
        return ref
    return VersionRef.parse(ref)


def _ref_in(name: str, version: RefLike) -> VersionRef:
    """A ref to a version of ``name``: a full ref of that artifact, or a bare selector."""
    if isinstance(version, str) and "@" not in version:
        return VersionRef.of(name, version)
    ref = _parse(version)
    if ref.artifact != name:
        raise InvalidRef(f"{ref} is not a version of {name!r}: an alias points within its own artifact")
    return ref


def _ref_list(refs: RefsLike, etype: EdgeType) -> Sequence[str]:
    if refs is None:
        return ()
    if isinstance(refs, str):
        return (refs,)
    if not all(isinstance(r, str) for r in refs):
        raise InvalidRef(f"{etype.value} must be refs like 'name@1.0.0'")
    return tuple(refs)


def _kind(kind: Kind | str | None) -> Kind | None:
    if kind is None:
        return None
    try:
        return Kind(kind)
    except ValueError:
        raise InvalidInput(f"unknown kind {kind!r} ({', '.join(k.value for k in Kind)})") from None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
