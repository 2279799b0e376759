"""Typed rows of the registry database. No business rules live here.

The schema is created and changed only by the Alembic migrations in
``modelkeep/db/migrations``; these classes must match the newest revision.
Artifacts are referenced by surrogate id everywhere, so a rename touches one row.
Timestamps are timezone-aware UTC on the way in and on the way out, also on
SQLite (which stores them as naive ISO strings; UTC strings sort correctly).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "UTCDateTime",
    "ArtifactRow",
    "VersionRow",
    "ManifestRow",
    "EdgeRow",
    "AliasRow",
    "AliasMoveRow",
    "TagRow",
    "TagChangeRow",
    "AuditEventRow",
    "AuditHeadRow",
    "VersionStageRow",
    "PolicyRow",
    "ApprovalRow",
    "utcnow",
    # retention and signatures
    "SignatureRow",
    "RetentionRuleRow",
    "RetentionHoldRow",
    # server
    "UserRow",
    "ApiTokenRow",
    "RoleGrantRow",
    "WebhookRow",
    "WebhookDeliveryRow",
    # retention and signatures
    "SignatureRow",
    "RetentionRuleRow",
    "RetentionHoldRow",
]

NAME_LEN = 129  # namespace/name, 64 + 1 + 64
SEGMENT_LEN = 64
DIGEST_LEN = 71  # "blake3:" + 64 hex

# Deterministic constraint names, so later migrations can refer to them (and
# SQLite batch migrations can recreate tables) on every database alike.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; naive datetimes are refused, not guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware UTC one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    namespace: Mapped[str | None] = mapped_column(String(SEGMENT_LEN), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(255))


class ManifestRow(Base):
    """A manifest body (``Manifest.to_bytes()``), stored once however many versions share it."""

    __tablename__ = "manifests"

    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (
        # Also the index behind "newest first": scanned backwards per artifact.
        UniqueConstraint("artifact_id", "major", "minor", "patch"),
        # Digest-prefix lookups are range scans within one artifact.
        Index("ix_versions_artifact_id_digest", "artifact_id", "digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    patch: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), unique=True)
    files_digest: Mapped[str] = mapped_column(ForeignKey("manifests.digest"), index=True)
    author: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    provenance: Mapped[dict[str, Any]]
    # Input/output schema of a model (ml/signature.py); SQL NULL when unknown.
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    size: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)
    new_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    # Tombstone (retention): set once when the version is deleted; the row stays.
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[str | None] = mapped_column(String(255))
    deleted_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def semver(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


class EdgeRow(Base):
    """A typed lineage edge from a dependent version (source) to what it used (target)."""

    __tablename__ = "edges"
    __table_args__ = (UniqueConstraint("source_id", "type", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)


class AliasRow(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("artifact_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    name: Mapped[str] = mapped_column(String(SEGMENT_LEN))
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(255))


class AliasMoveRow(Base):
    """One change of an alias; ``new_version_id`` None records a removal."""

    __tablename__ = "alias_moves"
    __table_args__ = (Index("ix_alias_moves_artifact_id_alias_at", "artifact_id", "alias", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    alias: Mapped[str] = mapped_column(String(SEGMENT_LEN))
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"))
    new_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"))
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)


class TagRow(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("version_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    key: Mapped[str] = mapped_column(String(SEGMENT_LEN))
    value: Mapped[str] = mapped_column(Text)


class TagChangeRow(Base):
    """One change of a version tag; ``value`` None records a removal."""

    __tablename__ = "tag_changes"
    __table_args__ = (Index("ix_tag_changes_version_id_key_at", "version_id", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    key: Mapped[str] = mapped_column(String(SEGMENT_LEN))
    value: Mapped[str | None] = mapped_column(Text)
    previous: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)


# -- retention and signatures ----------------------------------------------------------


class SignatureRow(Base):
    """An Ed25519 signature over a version's signed payload (``registry/signatures.py``)."""

    __tablename__ = "signatures"
    __table_args__ = (UniqueConstraint("version_id", "key_fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    format: Mapped[int] = mapped_column(Integer)  # signed payload format number
    key_fingerprint: Mapped[str] = mapped_column(String(DIGEST_LEN))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # raw 32-byte Ed25519 public key
    signature: Mapped[bytes] = mapped_column(LargeBinary)  # raw 64-byte signature
    signer: Mapped[str] = mapped_column(String(255))
    signed_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)


class RetentionRuleRow(Base):
    """One revision of an artifact's retention rule document; the highest revision is in force."""

    __tablename__ = "retention_rules"
    __table_args__ = (UniqueConstraint("artifact_id", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    revision: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]]
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)


class RetentionHoldRow(Base):
    """A legal hold on a version; active until ``released_at`` is set."""

    __tablename__ = "retention_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(255))
    placed_at: Mapped[datetime]
    released_by: Mapped[str | None] = mapped_column(String(255))
    released_at: Mapped[datetime | None]
    release_reason: Mapped[str | None] = mapped_column(Text)


class AuditEventRow(Base):
    """One event of the registry's hash-chained audit trail (``registry/audit.py``).

    No foreign keys on purpose: events outlive the versions and artifacts they
    name (``artifact`` and ``subject`` are names, not ids). ``seq`` is allocated
    under the lock of the single ``audit_head`` row and is the primary key, so a
    writer that somehow skipped the lock still cannot fork the chain.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_artifact_seq", "artifact", "seq"),
        Index("ix_audit_events_at", "at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    artifact: Mapped[str | None] = mapped_column(String(NAME_LEN))
    subject: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text)  # canonical JSON, hashed exactly as stored
    previous: Mapped[str] = mapped_column(String(DIGEST_LEN))
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))


class AuditHeadRow(Base):
    """The single row (id 1) naming the newest event; locked FOR UPDATE by every append."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))


class VersionStageRow(Base):
    """The lifecycle stage of a version; no row means ``none``. History lives in the audit trail."""

    __tablename__ = "version_stages"
    __table_args__ = (Index("ix_version_stages_artifact_id_stage", "artifact_id", "stage"),)

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True, autoincrement=False)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    stage: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(255))


class PolicyRow(Base):
    """One revision of an artifact's promotion policy: the document as the user wrote it."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("artifact_id", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    revision: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)


class ApprovalRow(Base):
    """An approval request, approval or rejection of a version (``decision``), oldest first by id."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_version_id_id", "version_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime]
    comment: Mapped[str] = mapped_column(Text)


# -- server: users, API tokens, roles, webhooks -------------------------------------------


class UserRow(Base):
    """A person or service that holds API tokens. There is no password: tokens only."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(SEGMENT_LEN), unique=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(255))


class ApiTokenRow(Base):
    """An API token, stored as the SHA-256 of its secret (the secret is shown once)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class RoleGrantRow(Base):
    """``role`` of a user on one namespace ("*": every namespace, "": names without one)."""

    __tablename__ = "role_grants"
    __table_args__ = (UniqueConstraint("user_id", "namespace"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    namespace: Mapped[str] = mapped_column(String(SEGMENT_LEN))
    role: Mapped[str] = mapped_column(String(16))
    granted_at: Mapped[datetime]
    granted_by: Mapped[str] = mapped_column(String(255))


class WebhookRow(Base):
    """A subscription: POST signed JSON to ``url`` on ``events`` (space-separated) of ``namespace``."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[str] = mapped_column(Text)
    namespace: Mapped[str] = mapped_column(String(SEGMENT_LEN))
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(255))
    deleted_at: Mapped[datetime | None]


class WebhookDeliveryRow(Base):
    """One delivery attempt of one event to one webhook (the delivery log)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]
