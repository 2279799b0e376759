"""The Registry interface: the one contract every implementation satisfies.

Docstrings live here and only here; implementations document deviations only.
Implementations: ``EmbeddedRegistry`` (database URL + store, in process).
A remote implementation over HTTP will satisfy the same interface.

Refs accepted wherever a version is named (``ref`` arguments)::

    fraud@1.4.0                 exact semantic version
    fraud@blake3:ab12cd         digest prefix (at least 6 hex digits) of the version
    fraud@production            alias
    fraud@latest  or  fraud     newest version
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from modelkeep.registry.types import (
    Alias,
    AliasMove,
    Artifact,
    Approval,
    AuditReport,
    Direction,
    DiskUsage,
    Event,
    FsckReport,
    GcReport,
    Kind,
    LineageNode,
    PendingApproval,
    Policy,
    PolicyReport,
    Stage,
    TagChange,
    Transition,
    Version,
    VersionDiff,
)
from modelkeep.registry.types import (  # retention and signatures
    RetentionHold,
    RetentionPlan,
    RetentionRule,
    SignatureCheck,
    SignatureRecord,
    Tombstone,
)
from modelkeep.store.manifest import Manifest

__all__ = ["Registry", "Progress", "RefLike", "RefsLike"]

Progress = Callable[[int], None]
"""Called with a number of bytes just processed (push and pull progress)."""

RefLike = str
RefsLike = str | Sequence[str] | None


class Registry(abc.ABC):
    """Artifacts, immutable versions, aliases, tags and lineage over a chunk store."""

    # -- versions --------------------------------------------------------------

    @abc.abstractmethod
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
        """Store the file or directory at ``path`` as a new version of artifact ``name``.

        Creates the artifact on first push (``kind`` defaults to ``generic``; a later
        push with a different kind raises KindMismatch). Chunks are written and made
        durable before the version row is committed, in one transaction, so a push
        killed at any moment leaves no visible version. Provenance (git, python,
        packages, OS, hardware, host) is captured automatically.

        Semantic version: 1.0.0 first; changed files bump minor; metadata only
        (params, metrics, kind, lineage) bumps patch; ``major=True`` bumps major;
        ``version="2.0.0"`` is taken when higher than every existing version.
        When files and metadata equal the latest version's, no version is made and
        the latest version is returned unchanged.

        Lineage refs (``derived_from`` etc.) must resolve to existing versions.

        ``signature`` is a model's input/output schema (JSON, ``ml/signature.py``),
        stored with the version; when it differs from the latest version's
        signature the new version is a major bump. ``provenance`` (JSON) is added
        to the captured provenance, its keys replacing captured ones (training
        runs add ``run``, ``seeds``, ``git``; ``log_model`` adds ``model``).

        Raises: InvalidName, InvalidPath (absolute/escaping symlink, unreadable path),
        InvalidVersion, VersionExists, KindMismatch, VersionNotFound (lineage ref).
        """

    @abc.abstractmethod
    def pull(self, ref: RefLike, dest: str | Path, *, progress: Progress | None = None) -> Version:
        """Write the files of ``ref`` under directory ``dest`` (created if absent).

        Every chunk is verified before it is written; each file appears under its final
        name only once complete and verified (temp name + rename). Existing files with
        the same names are replaced. Raises CorruptData naming the file on a bad chunk.
        """

    @abc.abstractmethod
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
        """Make a version of ``name`` from ``manifest``, whose chunks are already in the store.

        The commit step of a chunk-level (remote) push: the client cut and uploaded
        the chunks, this records the version exactly as ``push`` would (same
        arguments, same version rules), except that ``provenance`` is taken as given
        (the client captured it; nothing is captured here) and ``new_bytes`` (the
        bytes the client had to send) is recorded as the version's new bytes.
        Every chunk of ``manifest`` must be present in the store: otherwise raises
        ChunkNotFound listing the missing ones, and nothing is committed.
        """

    @abc.abstractmethod
    def get(self, ref: RefLike) -> Version:
        """Resolve ``ref`` to a version. Raises ArtifactNotFound, VersionNotFound, AliasNotFound, AmbiguousRef."""

    @abc.abstractmethod
    def manifest(self, ref: RefLike) -> tuple[Version, Manifest]:
        """The version ``ref`` names and its manifest (files, and the chunks of each)."""

    @abc.abstractmethod
    def files(self, ref: RefLike) -> list[tuple[str, int]]:
        """(path, size) of each file of the version, sorted by path."""

    @abc.abstractmethod
    def versions(self, name: str, *, limit: int | None = None, offset: int = 0) -> list[Version]:
        """Versions of artifact ``name``, newest (highest semver) first."""

    @abc.abstractmethod
    def artifacts(self, *, namespace: str | None = None, kind: Kind | str | None = None) -> list[Artifact]:
        """Every artifact, sorted by name, optionally only one namespace or kind."""

    @abc.abstractmethod
    def artifact(self, name: str) -> Artifact:
        """One artifact. Raises ArtifactNotFound."""

    # -- aliases and tags ------------------------------------------------------------

    @abc.abstractmethod
    def set_alias(
        self, name: str, alias: str, version: RefLike, *, reason: str = "", expected: str | None = None
    ) -> AliasMove:
        """Point ``alias`` of artifact ``name`` at ``version`` (a ref or bare semver).

        Every move is recorded with actor, time, previous target and reason. With
        ``expected`` (a semver, or "" for "alias must not exist") the move is a
        compare-and-set and raises ConflictError when the alias points elsewhere.
        Reserved names (``latest``, semvers, digests) raise InvalidName.
        """

    @abc.abstractmethod
    def remove_alias(self, name: str, alias: str, *, reason: str = "") -> AliasMove:
        """Remove ``alias``; the removal is recorded in its history. Raises AliasNotFound."""

    @abc.abstractmethod
    def aliases(self, name: str) -> list[Alias]:
        """Current aliases of artifact ``name``, sorted by alias name."""

    @abc.abstractmethod
    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of ``alias`` (or of all aliases of ``name``), oldest first."""

    @abc.abstractmethod
    def alias_at(self, name: str, alias: str, at: datetime) -> str | None:
        """The semver ``alias`` pointed to at instant ``at`` (None: it pointed nowhere)."""

    @abc.abstractmethod
    def set_tag(self, ref: RefLike, key: str, value: str | None, *, reason: str = "") -> TagChange:
        """Set (or with ``value=None`` remove) a mutable tag on a version; recorded in history."""

    @abc.abstractmethod
    def tag_history(self, ref: RefLike, key: str | None = None) -> list[TagChange]:
        """Every change of the version's tags (or of one key), oldest first."""

    # -- audit trail -----------------------------------------------------------------

    @abc.abstractmethod
    def history(self, name: str) -> list[Event]:
        """Every audit event of artifact ``name``, oldest first (also after its versions were deleted).

        Raises ArtifactNotFound when the artifact neither exists nor ever had an event.
        """

    @abc.abstractmethod
    def audit_log(
        self,
        *,
        artifact: str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Audit events in chain order: of one artifact, at or after ``since``, with seq > ``after``.

        ``limit`` keeps the newest ``limit`` matching events (still oldest first); with
        ``after`` it keeps the first ``limit`` after it instead, to page through the log.
        """

    @abc.abstractmethod
    def audit_verify(self) -> AuditReport:
        """Re-hash the whole audit chain; the report names the first event that was edited,
        deleted, inserted or reordered (``report.problem``), or none (``report.ok``)."""

    @abc.abstractmethod
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
        """Record the end of a training run of artifact ``name`` in the audit trail.

        ``status`` is ``succeeded`` (``version``: the ref it made, if any) or
        ``failed`` (``error`` says why; a failed run makes no version). The event's
        action is ``run.succeeded`` or ``run.failed``, its subject ``version`` or
        ``name``, its reason ``error``, its data the start and end times, duration
        and ``data`` (JSON: params, metrics, environment). The artifact need not
        exist yet: ``history(name)`` lists the run either way.
        Raises InvalidName, InvalidInput (unknown status, naive times, non-JSON data).
        """

    # -- governance: stages, promotion policies, approvals, rollback --------------------

    @abc.abstractmethod
    def transition(
        self,
        ref: RefLike,
        stage: Stage | str,
        *,
        reason: str = "",
        force: bool = False,
        expected_production: str | None = None,
    ) -> Transition:
        """Move version ``ref`` to lifecycle ``stage`` (none, staging, validation, production, archived).

        Only transitions the artifact's policy allows (default: none → staging →
        validation → production → archived). A promotion to production evaluates the
        policy against the current production version; when it passes, the version's
        stage, the ``production`` alias and the previous production version's stage
        (archived, or kept with ``previous_production: keep``) change in one
        transaction. ``expected_production`` (a semver, "" for none; default: what it
        is when the call begins) makes the promotion a compare-and-set: a concurrent
        promotion that won makes this one raise ConflictError. ``force`` with a
        ``reason`` overrides a refused policy or transition, recorded as an override.
        Raises PromotionRefused (``.report`` holds every rule), TransitionNotAllowed,
        ConflictError; a refused call changes nothing.
        """

    def promote(
        self, ref: RefLike, *, reason: str = "", force: bool = False, expected_production: str | None = None
    ) -> Transition:
        """``transition(ref, "production", ...)``."""
        return self.transition(ref, "production", reason=reason, force=force, expected_production=expected_production)

    @abc.abstractmethod
    def rollback(self, name: str, *, to: str | None = None, reason: str = "") -> Transition:
        """Return ``production`` of ``name`` to the previous production version, or to ``to``.

        The previous one comes from the alias history (versions already rolled back
        from are skipped); ``to`` must have served in production before. Not gated by
        the policy; recorded as a rollback event with the stage changes and alias move.
        Raises ConflictError (no production), TransitionNotAllowed, VersionNotFound.
        """

    @abc.abstractmethod
    def stages(self, name: str) -> dict[str, Stage]:
        """Stage of each version of ``name`` that left ``none``, by semver."""

    @abc.abstractmethod
    def set_policy(self, name: str, document: str, *, reason: str = "") -> Policy:
        """Save a promotion policy (YAML or JSON text) as the artifact's next revision.

        Refused with InvalidPolicy (naming the line) when it does not parse, holds an
        unknown key, or names a metric no version has and ``metrics:`` does not
        declare. Saving the current text again changes nothing.
        """

    @abc.abstractmethod
    def policy(self, name: str) -> Policy | None:
        """The current policy of ``name`` (None: no policy, every promotion passes)."""

    @abc.abstractmethod
    def policy_history(self, name: str) -> list[Policy]:
        """Every revision of the policy of ``name``, oldest first."""

    @abc.abstractmethod
    def check_policy(self, ref: RefLike) -> PolicyReport:
        """What the policy would decide now about promoting ``ref`` (changes nothing)."""

    @abc.abstractmethod
    def request_approval(self, ref: RefLike, *, comment: str = "") -> Approval:
        """Ask for approvals of ``ref``; starts a new round (earlier decisions stop counting)."""

    @abc.abstractmethod
    def approve(self, ref: RefLike, *, comment: str = "") -> Approval:
        """Approve ``ref`` as the current actor. Raises ApprovalNotAllowed (the author, or not
        a listed approver), ConflictError (already approved in this round)."""

    @abc.abstractmethod
    def reject(self, ref: RefLike, *, comment: str) -> Approval:
        """Reject ``ref`` with a comment; blocks its promotion until a new request."""

    @abc.abstractmethod
    def approvals(self, ref: RefLike) -> list[Approval]:
        """Every request, approval and rejection of ``ref``, oldest first."""

    @abc.abstractmethod
    def pending_approvals(self, name: str | None = None) -> list[PendingApproval]:
        """Open requests (of one artifact or all) still short of the approvals their policy needs."""

    # -- lineage and comparison -------------------------------------------------------

    @abc.abstractmethod
    def lineage(
        self, ref: RefLike, *, direction: Direction | str = Direction.UPSTREAM, depth: int | None = None
    ) -> list[LineageNode]:
        """Versions reachable from ``ref`` through lineage edges, transitively, breadth first.

        Upstream follows edges from dependent to dependency (what made this version);
        downstream the reverse. ``depth`` bounds the walk; each version appears once,
        at its smallest depth.
        """

    @abc.abstractmethod
    def diff(self, a: RefLike, b: RefLike) -> VersionDiff:
        """Files added / removed / changed (with sizes), and params, metrics and metadata changes from a to b."""

    # -- storage --------------------------------------------------------------------

    @abc.abstractmethod
    def du(self) -> DiskUsage:
        """Logical bytes of all versions, unique and stored bytes, dedup ratio, per artifact."""

    @abc.abstractmethod
    def fsck(self, *, progress: Progress | None = None) -> FsckReport:
        """Re-hash every pack, chunk and file; report each problem with the versions and files it affects."""

    @abc.abstractmethod
    def gc(self, *, dry_run: bool = False, grace_seconds: float = 3600.0) -> GcReport:
        """Delete packs and chunks no version references; repack mostly-dead packs.

        Never deletes what a push in progress may reference: packs younger than
        ``grace_seconds`` are kept and gc refuses to run while a push holds the store
        (StoreLocked).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release database connections and store handles."""

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- retention and signatures (issue 3: retention, signatures) ------------------------

    def sign(self, ref: RefLike, private_key_pem: bytes, *, reason: str = "") -> SignatureRecord:
        """Sign version ``ref`` with an Ed25519 private key (unencrypted PKCS#8 PEM) and store the signature.

        The signed payload is the version's identity and manifest digest (artifact,
        semver, version digest, files digest) in the documented format 1, with a
        domain-separation prefix. The signature is made in this process and stored
        with :meth:`add_signature`: the private key never travels (not to a server
        either). A version may carry several signatures, one per key. Recorded in
        the audit trail. Raises InvalidKey, SignatureExists (this key already signed
        it), VersionNotFound.
        """
        from modelkeep.registry.signatures import sign_version  # cryptography: loaded only when signing

        version = self.get(ref)
        public_pem, signature = sign_version(private_key_pem, version)
        return self.add_signature(version.ref, public_pem, signature, reason=reason)

    @abc.abstractmethod
    def add_signature(
        self, ref: RefLike, public_key_pem: bytes, signature: bytes, *, reason: str = ""
    ) -> SignatureRecord:
        """Store a signature of ``ref`` made elsewhere (by :meth:`sign`, another tool, an HSM).

        ``signature`` must be a valid Ed25519 signature by ``public_key_pem`` of the
        version's format-1 payload as stored, else InvalidInput and nothing is stored.
        Recorded in the audit trail. Raises InvalidKey, InvalidInput, SignatureExists,
        VersionNotFound.
        """

    @abc.abstractmethod
    def signatures(self, ref: RefLike) -> list[SignatureRecord]:
        """Signatures stored for version ``ref``, oldest first."""

    @abc.abstractmethod
    def verify(self, ref: RefLike, public_keys: Sequence[bytes] | None = None) -> list[SignatureCheck]:
        """Check the signatures of ``ref`` against the version as it is now.

        Without ``public_keys``: one check per stored signature, against the key that
        made it. With them (public key PEMs): one check per given key, invalid with
        "no signature by this key" when that key never signed. A signature made over
        another version's payload, or over this version before its row changed, is
        invalid. Raises InvalidKey.
        """

    @abc.abstractmethod
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
        """Save a new revision of the retention rule of artifact ``name`` (the whole rule; history is kept).

        A version is deleted by :meth:`apply_retention` only when no rule keeps it:
        not among the newest ``keep_last``, not younger than ``keep_days`` days, never
        pointed at by ``production`` (with ``keep_production``), not younger than
        ``min_days`` days; and nothing references it: an alias, an active hold, or a
        lineage edge (``contains`` included) from a kept version. Recorded in the
        audit trail. Raises InvalidInput (negative numbers, a rule that keeps nothing).
        """

    @abc.abstractmethod
    def retention(self, name: str) -> RetentionRule | None:
        """The retention rule in force for ``name`` (None: no rule, retention never deletes its versions)."""

    @abc.abstractmethod
    def retention_history(self, name: str) -> list[RetentionRule]:
        """Every revision of the retention rule of ``name``, oldest first."""

    @abc.abstractmethod
    def hold(self, ref: RefLike, *, reason: str) -> RetentionHold:
        """Place a legal hold on version ``ref``: it cannot be deleted until every hold is released.

        ``reason`` is required. Recorded in the audit trail. Raises InvalidInput, VersionNotFound.
        """

    @abc.abstractmethod
    def release(self, ref: RefLike, *, reason: str) -> list[RetentionHold]:
        """Release every active hold on version ``ref``; returns them as released. Raises HoldNotFound."""

    @abc.abstractmethod
    def holds(self, name: str | None = None, *, include_released: bool = False) -> list[RetentionHold]:
        """Holds on versions of ``name`` (or of every artifact), oldest first; active ones only by default."""

    @abc.abstractmethod
    def plan_retention(self, name: str | None = None) -> RetentionPlan:
        """What :meth:`apply_retention` would do now for ``name`` (or every artifact with a rule), and why.

        One decision per live version of the artifacts in scope, each with every
        reason it is kept, or the reasons it may go. Changes nothing.
        """

    @abc.abstractmethod
    def apply_retention(self, name: str | None = None, *, reason: str) -> RetentionPlan:
        """Compute the plan and delete its versions as tombstones, in one transaction.

        A tombstoned version keeps its row, metadata, signatures and audit events; it
        no longer resolves (VersionDeleted, a VersionNotFound, says when and by whom),
        is hidden from :meth:`versions`, and its bytes are freed by the next :meth:`gc`
        unless another version shares them. Returns the plan it carried out, with
        ``applied`` True. Each deletion is recorded in the audit trail.
        """

    @abc.abstractmethod
    def tombstones(self, name: str) -> list[Tombstone]:
        """Deleted versions of ``name``, newest deletion first."""

    # -- conveniences built on the abstract methods -------------------------------------

    def alias_target(self, name: str, alias: str) -> Version:
        """The version ``alias`` points at now."""
        return self.get(f"{name}@{alias}")

    def resolve_many(self, refs: Iterable[RefLike]) -> list[Version]:
        return [self.get(r) for r in refs]
