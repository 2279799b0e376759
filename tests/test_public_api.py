"""The public API is exactly what modelkeep.__all__ lists, and it is pinned here."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelkeep
from modelkeep.registry.api import Registry

PUBLIC = [
    "open",
    "digest",
    "Registry",
    "Settings",
    "Alias",
    "AliasMove",
    "Artifact",
    "ArtifactUsage",
    "Digest",
    "Direction",
    "FileEntry",
    "Manifest",
    "DiskUsage",
    "Edge",
    "EdgeType",
    "FileChange",
    "FsckReport",
    "GcReport",
    "Kind",
    "LineageNode",
    "Problem",
    "SemVer",
    "TagChange",
    "ValueChange",
    "Version",
    "VersionDiff",
    "VersionKey",
    "VersionRef",
    "ModelkeepError",
    "InvalidInput",
    "InvalidName",
    "InvalidRef",
    "InvalidPath",
    "InvalidURI",
    "InvalidVersion",
    "NotFoundError",
    "ArtifactNotFound",
    "VersionNotFound",
    "AliasNotFound",
    "TagNotFound",
    "ChunkNotFound",
    "ConflictError",
    "VersionExists",
    "KindMismatch",
    "AmbiguousRef",
    "StoreLocked",
    "IntegrityError",
    "CorruptData",
    "StorageError",
    # retention and signatures
    "RetentionDecision",
    "RetentionHold",
    "RetentionPlan",
    "RetentionRule",
    "SignatureCheck",
    "SignatureRecord",
    "Tombstone",
    "InvalidKey",
    "VersionDeleted",
    "HoldNotFound",
    "SignatureExists",
    # governance: stages, policies, approvals, audit
    "Stage",
    "Policy",
    "PolicyReport",
    "RuleResult",
    "Transition",
    "Approval",
    "PendingApproval",
    "Event",
    "AuditReport",
    "AuditProblem",
    "InvalidPolicy",
    "TransitionNotAllowed",
    "PromotionRefused",
    "ApprovalNotAllowed",
    "log_model",
    "load_model",
    "run",
    "autolog",
    "infer_signature",
    "create_bundle",
    "update_bundle",
    "resolve_bundle",
    "find_variant",
    "LoadedModel",
    "ModelSignature",
    "UnsafeModel",
    "SignatureMismatch",
    "MissingExtra",
    "AuthError",
    "Unauthorized",
    "Forbidden",
]


def test_all_is_pinned() -> None:
    assert modelkeep.__all__ == PUBLIC


def test_every_exported_name_exists() -> None:
    for name in modelkeep.__all__:
        assert hasattr(modelkeep, name), name


def test_every_error_class_is_exported_with_code_and_exit_code() -> None:
    for name in modelkeep.__all__:
        obj = getattr(modelkeep, name)
        if isinstance(obj, type) and issubclass(obj, modelkeep.ModelkeepError):
            assert obj.code and obj.exit_code >= 1


def test_open_a_home_folder(tmp_path: Path) -> None:
    with modelkeep.open(tmp_path / "home", user="alice") as reg:
        assert isinstance(reg, Registry)
        assert reg.artifacts() == []
    assert (tmp_path / "home" / "registry.db").exists()


def test_open_a_database_url_with_a_store(tmp_path: Path) -> None:
    with modelkeep.open(f"sqlite:///{tmp_path / 'x.db'}", store=f"file://{tmp_path / 'store'}") as reg:
        assert reg.artifacts() == []


def test_open_refuses_unknown_schemes() -> None:
    with pytest.raises(modelkeep.InvalidURI, match="unsupported registry URI scheme 'mysql'"):
        modelkeep.open("mysql://host/db")
