"""The whole modelkeep error tree.

Every error modelkeep raises on purpose derives from :class:`ModelkeepError`.
Each class carries a stable ``code`` (sent in JSON error bodies by the server
and mapped back to the same class by the remote client) and the ``exit_code``
the CLI exits with. Codes never change once released; add new classes instead.

Exit codes: 1 generic failure, 2 usage / invalid input, 3 not found,
4 conflict, 5 integrity problem, 6 store or database unavailable,
7 not authenticated or not allowed (server).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
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
    # governance
    "InvalidPolicy",
    "TransitionNotAllowed",
    "PromotionRefused",
    "ApprovalNotAllowed",
    # retention and signatures
    "InvalidKey",
    "VersionDeleted",
    "HoldNotFound",
    "SignatureExists",
    "PayloadTooLarge",
    "MalformedRequest",
    "AuthError",
    "Unauthorized",
    "Forbidden",
    "UnsafeModel",
    "SignatureMismatch",
    "MissingExtra",
    "error_classes",
]


class ModelkeepError(Exception):
    """Root of every error modelkeep raises deliberately."""

    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 1
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


# -- bad input (exit 2) ---------------------------------------------------------


class InvalidInput(ModelkeepError):
    code = "invalid_input"
    exit_code = 2


class InvalidName(InvalidInput):
    code = "invalid_name"


class InvalidRef(InvalidInput):
    code = "invalid_ref"


class InvalidPath(InvalidInput):
    code = "invalid_path"


class InvalidURI(InvalidInput):
    code = "invalid_uri"


class InvalidVersion(InvalidInput):
    code = "invalid_version"


class InvalidKey(InvalidInput):
    """A key file that is not an Ed25519 key in PEM form (or the wrong half of a pair)."""

    code = "invalid_key"


class MalformedRequest(InvalidInput):
    """A request body that is not valid JSON or not of the expected shape."""

    code = "malformed_request"


class PayloadTooLarge(InvalidInput):
    """A request body or manifest over the server's limit."""

    code = "payload_too_large"


class UnsafeModel(InvalidInput):
    """A model file that would run code when loaded (pickle, joblib, untrusted skops types)."""

    code = "unsafe_model"


class SignatureMismatch(InvalidInput):
    """Inputs given to a loaded model do not match the signature stored with its version."""

    code = "signature_mismatch"


class InvalidPolicy(InvalidInput):
    """A promotion policy document that does not parse, or names an unknown metric; ``line`` says where."""

    code = "invalid_policy"

    def __init__(self, message: str, *, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.line = line


# -- not found (exit 3) -----------------------------------------------------------


class NotFoundError(ModelkeepError):
    code = "not_found"
    exit_code = 3


class ArtifactNotFound(NotFoundError):
    code = "artifact_not_found"


class VersionNotFound(NotFoundError):
    code = "version_not_found"


class VersionDeleted(VersionNotFound):
    """The version existed and was deleted by retention (its tombstone remains)."""

    code = "version_deleted"


class AliasNotFound(NotFoundError):
    code = "alias_not_found"


class TagNotFound(NotFoundError):
    code = "tag_not_found"


class ChunkNotFound(NotFoundError):
    code = "chunk_not_found"


class HoldNotFound(NotFoundError):
    code = "hold_not_found"


# -- conflicts (exit 4) -----------------------------------------------------------


class ConflictError(ModelkeepError):
    code = "conflict"
    exit_code = 4


class VersionExists(ConflictError):
    code = "version_exists"


class KindMismatch(ConflictError):
    code = "kind_mismatch"


class AmbiguousRef(ConflictError):
    code = "ambiguous_ref"


class StoreLocked(ConflictError):
    code = "store_locked"


class SignatureExists(ConflictError):
    code = "signature_exists"


class TransitionNotAllowed(ConflictError):
    """A stage change the artifact's allowed transitions do not permit."""

    code = "transition_not_allowed"


class PromotionRefused(ConflictError):
    """The promotion policy refused a version; ``report`` holds every rule with both values."""

    code = "promotion_refused"

    def __init__(self, message: str, *, report: Any = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report  # a registry.types.PolicyReport (Any: errors sits below the registry)


class ApprovalNotAllowed(ConflictError):
    """This actor may not approve or reject this version (its author, or not a listed approver)."""

    code = "approval_not_allowed"


# -- integrity (exit 5) -----------------------------------------------------------


class IntegrityError(ModelkeepError):
    code = "integrity"
    exit_code = 5


class CorruptData(IntegrityError):
    code = "corrupt_data"


# -- infrastructure (exit 6) --------------------------------------------------------


class StorageError(ModelkeepError):
    code = "storage"
    exit_code = 6


# -- authentication and roles (exit 7) ------------------------------------------------


class AuthError(ModelkeepError):
    code = "auth"
    exit_code = 7


class Unauthorized(AuthError):
    """No token, or an unknown, expired or revoked one."""

    code = "unauthorized"


class Forbidden(AuthError):
    """A valid token whose roles do not allow the operation (never says whether the target exists)."""

    code = "forbidden"


# -- environment (exit 1) --------------------------------------------------------------


class MissingExtra(ModelkeepError):
    """An optional framework is not installed; the message names the extra to install."""

    code = "missing_extra"

    @classmethod
    def of(cls, extra: str, module: str) -> MissingExtra:
        return cls(f"{module} is not installed: pip install 'modelkeep[{extra}]'")


def error_classes() -> dict[str, type[ModelkeepError]]:
    """Map every stable error code to its class (used to rebuild errors off the wire)."""
    out: dict[str, type[ModelkeepError]] = {}
    stack: list[type[ModelkeepError]] = [ModelkeepError]
    while stack:
        cls = stack.pop()
        out[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return out
