"""Frozen records the registry returns. Rows never leave the database layer; these do."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelkeep.store.digest import Digest

__all__ = [
    "Kind",
    "EdgeType",
    "Direction",
    "Artifact",
    "VersionKey",
    "Edge",
    "Version",
    "Alias",
    "AliasMove",
    "TagChange",
    "LineageNode",
    "FileChange",
    "ValueChange",
    "VersionDiff",
    "ArtifactUsage",
    "DiskUsage",
    "Problem",
    "FsckReport",
    "GcReport",
    # retention and signatures
    "SignatureRecord",
    "SignatureCheck",
    "RetentionRule",
    "RetentionHold",
    "RetentionDecision",
    "RetentionPlan",
    "Tombstone",
    "Event",
    "AuditProblem",
    "AuditReport",
    "Stage",
    "Policy",
    "RuleResult",
    "PolicyReport",
    "Transition",
    "Approval",
    "PendingApproval",
]


class Kind(enum.StrEnum):
    MODEL = "model"
    DATASET = "dataset"
    PROMPT = "prompt"
    CONFIG = "config"
    EVALUATION = "evaluation"
    BUNDLE = "bundle"
    GENERIC = "generic"


class Stage(enum.StrEnum):
    """Lifecycle stage of a version (``registry/stages.py``); a new version is in ``none``."""

    NONE = "none"
    STAGING = "staging"
    VALIDATION = "validation"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class EdgeType(enum.StrEnum):
    """Typed lineage edges; the source version is the newer / dependent one."""

    DERIVED_FROM = "derived_from"  # fine-tuned / continued from
    TRAINED_ON = "trained_on"  # dataset used for training
    EVALUATED_ON = "evaluated_on"  # dataset used for evaluation
    CONTAINS = "contains"  # bundle / ensemble member
    VARIANT_OF = "variant_of"  # fp16 / int8 build of the same logical model


class Direction(enum.StrEnum):
    UPSTREAM = "upstream"  # what this version was made from
    DOWNSTREAM = "downstream"  # what was made from this version
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str  # full name, "team/fraud-detector" or "fraud"
    kind: Kind
    created_at: datetime
    created_by: str
    version_count: int
    latest: str | None  # semver of the newest version, None when it has none


@dataclass(frozen=True, slots=True, order=True)
class VersionKey:
    """Names one version: artifact full name + semver string."""

    artifact: str
    version: str

    def __str__(self) -> str:
        return f"{self.artifact}@{self.version}"


@dataclass(frozen=True, slots=True)
class Edge:
    type: EdgeType
    source: VersionKey  # the dependent version (e.g. the fine-tune)
    target: VersionKey  # what it depends on (e.g. the base model, the dataset)


@dataclass(frozen=True, slots=True)
class Version:
    """An immutable version. ``digest`` covers every field but ``tags``, ``aliases``, ``stage``."""

    artifact: str
    version: str  # semver "1.4.0"
    kind: Kind
    digest: Digest  # digest of the version document (files + metadata + provenance)
    files_digest: Digest  # digest of the manifest (paths, file digests, sizes)
    created_at: datetime
    author: str
    message: str
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    provenance: Mapping[str, Any]
    size: int  # logical bytes of all files
    file_count: int
    new_bytes: int  # logical bytes this version added to the store when it was made
    edges: tuple[Edge, ...] = ()  # outgoing lineage edges (this version -> what it used)
    tags: Mapping[str, str] = field(default_factory=dict)  # mutable labels, as of reading
    aliases: tuple[str, ...] = ()  # aliases pointing here, as of reading
    signature: Mapping[str, Any] | None = None  # input/output schema of a model (ml/signature.py)
    stage: Stage = Stage.NONE  # lifecycle stage, as of reading (registry/stages.py)

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.artifact, self.version)

    @property
    def ref(self) -> str:
        return f"{self.artifact}@{self.version}"


@dataclass(frozen=True, slots=True)
class Alias:
    artifact: str
    name: str
    version: str
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One change of an alias. ``version`` None means the alias was removed."""

    artifact: str
    alias: str
    version: str | None
    previous: str | None
    actor: str
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class TagChange:
    """One change of a version tag. ``value`` None means the tag was removed."""

    version: VersionKey
    key: str
    value: str | None
    previous: str | None
    actor: str
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class LineageNode:
    """A version reached in a lineage walk, ``depth`` edges away, through ``edge``."""

    version: VersionKey
    kind: Kind
    depth: int
    edge: Edge


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    old_size: int | None  # None: added
    new_size: int | None  # None: removed
    old_digest: Digest | None
    new_digest: Digest | None


@dataclass(frozen=True, slots=True)
class ValueChange:
    key: str
    old: Any  # None when absent on the old side
    new: Any  # None when absent on the new side


@dataclass(frozen=True, slots=True)
class VersionDiff:
    a: VersionKey
    b: VersionKey
    added: tuple[FileChange, ...]
    removed: tuple[FileChange, ...]
    changed: tuple[FileChange, ...]
    unchanged: int  # number of identical files
    params: tuple[ValueChange, ...]
    metrics: tuple[ValueChange, ...]
    metadata: tuple[ValueChange, ...]  # kind, message, author, lineage, tags


@dataclass(frozen=True, slots=True)
class ArtifactUsage:
    artifact: str
    versions: int
    logical_bytes: int


@dataclass(frozen=True, slots=True)
class DiskUsage:
    logical_bytes: int  # sum of every version's file sizes
    unique_bytes: int  # bytes of distinct chunks, before compression
    stored_bytes: int  # bytes the packs occupy
    chunks: int
    packs: int
    artifacts: tuple[ArtifactUsage, ...]

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes per stored byte (dedup and compression together)."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0


@dataclass(frozen=True, slots=True)
class Problem:
    """One integrity problem, with what it affects."""

    kind: str  # "corrupt_chunk", "missing_chunk", "bad_pack", "bad_file_digest", ...
    detail: str
    pack: str | None = None
    chunk: Digest | None = None
    affects: tuple[str, ...] = ()  # "artifact@version:path" entries


@dataclass(frozen=True, slots=True)
class FsckReport:
    packs_checked: int
    chunks_checked: int
    bytes_checked: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class GcReport:
    packs_deleted: int
    packs_repacked: int
    chunks_deleted: int
    bytes_freed: int
    packs_kept_young: int  # unreferenced but inside the grace period
    dry_run: bool


# -- retention and signatures ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignatureRecord:
    """An Ed25519 signature stored beside a version (see docs/governance-retention-signing.md)."""

    version: VersionKey
    key_fingerprint: str  # "blake3:<hex>" of the raw 32-byte public key
    public_key: str  # the signer's public key, PEM (SubjectPublicKeyInfo)
    format: int  # signed payload format number
    signer: str  # actor who added it
    signed_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The verdict on one signature, or on a requested key that signed nothing (``signature`` None)."""

    key_fingerprint: str
    valid: bool
    detail: str  # "valid", "signature does not match the payload", "no signature by this key", ...
    signature: SignatureRecord | None


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """One revision of an artifact's retention rule document; None/False means the rule is off."""

    artifact: str
    revision: int
    keep_last: int | None  # keep the newest N versions
    keep_days: int | None  # keep versions younger than D days
    keep_production: bool  # keep every version the production alias ever pointed at
    min_days: int | None  # never delete a version younger than M days, whatever else says
    actor: str
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class RetentionHold:
    """A legal hold: while active (``released_at`` None) the version cannot be deleted."""

    id: int
    version: VersionKey
    reason: str
    placed_by: str
    placed_at: datetime
    released_by: str | None = None
    released_at: datetime | None = None
    release_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None


@dataclass(frozen=True, slots=True)
class RetentionDecision:
    """What retention does with one version, and every reason why."""

    version: VersionKey
    created_at: datetime
    delete: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """The decisions for every live version in scope, by artifact then newest first."""

    at: datetime  # the instant the rules were evaluated
    decisions: tuple[RetentionDecision, ...]
    applied: bool  # True: returned by apply, the deletions happened

    @property
    def to_delete(self) -> tuple[VersionKey, ...]:
        return tuple(d.version for d in self.decisions if d.delete)

    @property
    def to_keep(self) -> tuple[VersionKey, ...]:
        return tuple(d.version for d in self.decisions if not d.delete)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted version: its record remains, it no longer resolves, its bytes go at the next gc."""

    version: VersionKey
    digest: Digest
    created_at: datetime
    deleted_at: datetime
    deleted_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Event:
    """One event of the audit trail: who did what, to which artifact and subject, when and why.

    ``seq`` numbers the registry's events from 1 without gaps; ``digest`` is the
    BLAKE3 of the event's canonical form, which includes ``previous`` (the digest
    of event ``seq - 1``), so the events form one hash chain (``registry/audit.py``).
    """

    seq: int
    at: datetime
    actor: str
    action: str  # "version.create", "alias.move", "stage.change", … (docs/governance.md)
    artifact: str | None  # full artifact name; None for registry-wide events (gc)
    subject: str  # what changed: "team/fraud@1.2.0", "team/fraud@production", "team/fraud"
    reason: str
    data: Mapping[str, Any]
    previous: Digest
    digest: Digest


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """The first place where the stored events and the hash chain disagree."""

    seq: int  # sequence number of the first bad event (or where a missing one should be)
    kind: str  # "edited", "deleted", "inserted", "reordered", "truncated", "head"
    detail: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    events_checked: int
    head_seq: int  # the newest sequence number the head row names
    head_digest: Digest  # digest of that event: keep a copy elsewhere to detect rewrites
    problem: AuditProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True, slots=True)
class Policy:
    """One revision of an artifact's promotion policy: the document as written, and who saved it why."""

    artifact: str
    revision: int
    document: str  # YAML or JSON text (docs/governance.md)
    digest: Digest
    created_at: datetime
    created_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class RuleResult:
    """The verdict of one policy rule on a candidate.

    ``status`` is "pass", "fail" or "skip" (the rule needs a production version and
    there is none yet: it does not block). ``candidate`` / ``production`` hold the
    values the rule read on each side; ``left`` / ``right`` the two sides of a
    single comparison (``0.93 >= 0.915``), None otherwise.
    """

    rule: str
    status: str
    candidate: Mapping[str, Any]
    production: Mapping[str, Any]
    left: float | None = None
    right: float | None = None
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "fail"


@dataclass(frozen=True, slots=True)
class PolicyReport:
    """Every rule of the policy evaluated on ``candidate`` against ``production`` (None: there is none)."""

    artifact: str
    candidate: str  # semver
    production: str | None
    policy_revision: int | None  # None: the artifact has no policy (every promotion passes)
    results: tuple[RuleResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if not r.passed)


@dataclass(frozen=True, slots=True)
class Transition:
    """A stage change of one version, and what moved with it."""

    version: VersionKey
    previous_stage: Stage
    stage: Stage
    actor: str
    at: datetime
    reason: str
    forced: bool = False  # an admin override of a refused policy or transition
    report: PolicyReport | None = None  # the policy verdict, for promotions to production
    alias: AliasMove | None = None  # the move of the production alias, for promotions and rollbacks
    archived: tuple[str, ...] = ()  # previous production versions moved to archived (semvers)
    rollback: bool = False


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval request, an approval or a rejection of a version."""

    version: VersionKey
    decision: str  # "request", "approve", "reject"
    actor: str
    at: datetime
    comment: str


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A version with an open approval request: who asked, who approved so far, how many are needed."""

    version: VersionKey
    requested_by: str
    requested_at: datetime
    comment: str
    approved_by: tuple[str, ...]
    required: int
    approvers: tuple[str, ...]  # who may approve (empty: anyone but the author)
