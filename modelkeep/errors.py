"""The whole modelkeep error tree.

Every error modelkeep raises on purpose derives from :class:`ModelkeepError`.
Each class carries a stable ``code`` (sent in JSON error bodies by the server
and mapped back to the same class by the remote client) and the ``exit_code``
the CLI exits with. Codes never change once released; add new classes instead.

Exit codes: 1 generic failure, 2 usage / invalid input, 3 not found,
4 conflict, 5 integrity problem, 6 store or database unavailable.
"""

from __future__ import annotations

from typing import ClassVar

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


# -- not found (exit 3) -----------------------------------------------------------


class NotFoundError(ModelkeepError):
    code = "not_found"
    exit_code = 3


class ArtifactNotFound(NotFoundError):
    code = "artifact_not_found"


class VersionNotFound(NotFoundError):
    code = "version_not_found"


class AliasNotFound(NotFoundError):
    code = "alias_not_found"


class TagNotFound(NotFoundError):
    code = "tag_not_found"


class ChunkNotFound(NotFoundError):
    code = "chunk_not_found"


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


def error_classes() -> dict[str, type[ModelkeepError]]:
    """Map every stable error code to its class (used to rebuild errors off the wire)."""
    out: dict[str, type[ModelkeepError]] = {}
    stack: list[type[ModelkeepError]] = [ModelkeepError]
    while stack:
        cls = stack.pop()
        out[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return out
