"""modelkeep: immutable, content-addressed, deduplicated model versions with lineage and aliases.

    import modelkeep

    with modelkeep.open() as reg:                     # MODELKEEP_* settings, or ~/.modelkeep
        v = reg.push("out/", "team/fraud", kind="model", metrics={"auc": 0.93})
        reg.set_alias("team/fraud", "production", v.version, reason="beats 1.3.0")
        reg.pull("team/fraud@production", "serving/")
        reg.log_model(estimator, "team/fraud", input_example=X[:5])   # ML: docs/ml.md
        model = reg.load_model("team/fraud@production")

Everything public is listed in ``__all__`` below (pinned by a test); other
modules are private to the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelkeep.config import Settings
from modelkeep.errors import (
    AliasNotFound,
    AmbiguousRef,
    ArtifactNotFound,
    AuthError,
    ChunkNotFound,
    ConflictError,
    CorruptData,
    Forbidden,
    IntegrityError,
    InvalidInput,
    InvalidName,
    InvalidPath,
    InvalidRef,
    InvalidURI,
    InvalidVersion,
    KindMismatch,
    MissingExtra,
    ModelkeepError,
    NotFoundError,
    SignatureMismatch,
    StorageError,
    StoreLocked,
    TagNotFound,
    Unauthorized,
    UnsafeModel,
    VersionExists,
    VersionNotFound,
)
from modelkeep.registry.api import Registry
from modelkeep.registry.names import VersionRef
from modelkeep.registry.semver import SemVer
from modelkeep.registry.types import (
    Alias,
    AliasMove,
    Artifact,
    ArtifactUsage,
    Direction,
    DiskUsage,
    Edge,
    EdgeType,
    FileChange,
    FsckReport,
    GcReport,
    Kind,
    LineageNode,
    Problem,
    TagChange,
    ValueChange,
    Version,
    VersionDiff,
    VersionKey,
)
from modelkeep.store.digest import Digest
from modelkeep.store.manifest import FileEntry, Manifest
from modelkeep.errors import HoldNotFound, InvalidKey, SignatureExists, VersionDeleted  # retention, signatures
from modelkeep.registry.types import (  # retention and signatures
    RetentionDecision,
    RetentionHold,
    RetentionPlan,
    RetentionRule,
    SignatureCheck,
    SignatureRecord,
    Tombstone,
)

from modelkeep.errors import ApprovalNotAllowed, InvalidPolicy, PromotionRefused, TransitionNotAllowed  # governance
from modelkeep.registry.types import (  # governance
    Approval,
    AuditProblem,
    AuditReport,
    Event,
    PendingApproval,
    Policy,
    PolicyReport,
    RuleResult,
    Stage,
    Transition,
)

if TYPE_CHECKING:
    from modelkeep.store.chunkstore import ChunkStore

__all__ = [
    "open",
    "digest",
    "Registry",
    "Settings",
    # value types
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
    # errors
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
    # ML (modelkeep/ml, loaded on first use: docs/ml.md)
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
    # server: authentication and roles (docs/server.md)
    "AuthError",
    "Unauthorized",
    "Forbidden",
]

# Public names defined in modelkeep/ml, imported on first access so that
# `import modelkeep` stays light (PEP 562 module __getattr__).
_LAZY = {
    "log_model": "modelkeep.ml.flavors",
    "load_model": "modelkeep.ml.flavors",
    "LoadedModel": "modelkeep.ml.flavors",
    "run": "modelkeep.ml.runs",
    "autolog": "modelkeep.ml.autolog",
    "infer_signature": "modelkeep.ml.signature",
    "ModelSignature": "modelkeep.ml.signature",
    "create_bundle": "modelkeep.ml.bundles",
    "update_bundle": "modelkeep.ml.bundles",
    "resolve_bundle": "modelkeep.ml.bundles",
    "find_variant": "modelkeep.ml.bundles",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelkeep' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


_DB_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")


def digest(path: str | Path) -> Manifest:
    """What pushing ``path`` (a file or a folder) would record, computed without storing anything.

    Each entry holds a file's digest, size and chunks, as ``push`` records them;
    the manifest's ``digest`` is the ``files_digest`` of a version made of these
    files. So ``modelkeep.digest("model/").digest == mk.get("fraud@production").files_digest``
    tells whether a local folder holds exactly what is serving. Raises InvalidPath.
    """
    from modelkeep.registry import tree
    from modelkeep.store.scan import scan_file

    return Manifest.of(scan_file(f.path, f.rel) for f in tree.collect(path))


def open(  # noqa: A001 - the public name is modelkeep.open, like io.open
    uri_or_home: str | Path | Settings | None = None,
    *,
    store: str | ChunkStore | None = None,
    user: str | None = None,
) -> Registry:
    """Open a registry; the database schema is upgraded to the newest migration first.

    ``uri_or_home`` picks it:

    * ``None``: settings from the environment (``Settings.from_env``: ``MODELKEEP_URI``,
      ``MODELKEEP_STORE``, ``MODELKEEP_HOME``, ``MODELKEEP_USER``), by default ``~/.modelkeep``;
    * a :class:`Settings`: exactly those settings;
    * a folder path: the registry in that home (SQLite ``registry.db`` + ``store/`` folder);
    * a ``sqlite:///…`` or ``postgresql://…`` URL: that database, with ``store`` (a store URL
      or a ChunkStore) or else the store the environment names (default ``~/.modelkeep/store``).
    * an ``http://…`` or ``https://…`` URL: the modelkeep server there (a remote registry,
      with the token of ``MODELKEEP_TOKEN``); so does a Settings whose ``db_url`` is one.

    ``store`` and ``user`` override whatever the first argument implies.
    Raises InvalidURI for other URL schemes, StorageError when the database is unreachable.
    """
    from modelkeep.ml.methods import with_model_methods  # log_model, load_model, run… as methods
    from modelkeep.registry.embedded import EmbeddedRegistry  # keeps `import modelkeep` light

    if isinstance(uri_or_home, str) and uri_or_home.startswith(("http://", "https://")):
        uri_or_home = Settings.from_env(db_url=uri_or_home, user=user)
    if uri_or_home is None:
        settings = Settings.from_env(user=user)
    elif isinstance(uri_or_home, Settings):
        settings = uri_or_home
    elif isinstance(uri_or_home, Path) or "://" not in uri_or_home:
        settings = Settings.for_home(uri_or_home, user=user)
    else:
        scheme = uri_or_home.partition("://")[0]
        if scheme not in _DB_SCHEMES:
            raise InvalidURI(
                f"unsupported registry URI scheme {scheme!r} (a folder path, sqlite:///path or postgresql://host/db)"
            )
        settings = Settings.from_env(db_url=uri_or_home, user=user)
    if settings.remote:
        from modelkeep.client.cache import ChunkCache
        from modelkeep.client.remote import RemoteRegistry  # needs the "client" extra (httpx)

        if store is not None:
            raise InvalidURI("a remote registry keeps its own store: do not pass store= with an http(s) URI")
        return with_model_methods(RemoteRegistry)(
            settings.db_url, token=settings.token, cache=ChunkCache(settings.cache_dir, max_bytes=settings.cache_max_bytes)
        )
    return with_model_methods(EmbeddedRegistry)(settings, store, user)
