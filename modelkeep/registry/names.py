"""The one grammar for artifact names, alias names, tag keys and version refs.

Artifact names are ``name`` or ``namespace/name``. Every segment, alias name and
tag key follows the same rule: lowercase ``[a-z0-9][a-z0-9._-]*``, at most 64
characters, without ``..``. Refs name one version::

    fraud               newest version (same as fraud@latest)
    fraud@latest        newest version
    fraud@1.4.0         exact semantic version (a leading "v" is accepted)
    fraud@blake3:ab12cd digest prefix of the version, at least 6 hex digits
    fraud@production    alias

Alias names may not look like the other selectors: ``latest``, anything
semver-like (``1``, ``v2``, ``1.4``, ``1.4.0-rc1``) and anything starting with
``blake3`` are reserved.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from modelkeep.errors import InvalidName, InvalidRef, InvalidVersion
from modelkeep.registry.semver import SemVer

__all__ = [
    "MAX_SEGMENT",
    "RefKind",
    "VersionRef",
    "check_alias",
    "check_name",
    "check_tag_key",
    "namespace_of",
]

MAX_SEGMENT = 64
MIN_DIGEST_PREFIX = 6
LATEST = "latest"

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SEMVER_LIKE = re.compile(r"v?\d+(\.\d+){1,2}([-+].*)?|v?\d+")
_DIGEST_SELECTOR = re.compile(r"blake3:([0-9a-f]+)")
_RULE = "lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters, no '..'"


def _segment_problem(segment: str) -> str | None:
    if not segment:
        return "is empty"
    if len(segment) > MAX_SEGMENT:
        return f"is longer than {MAX_SEGMENT} characters"
    if not _SEGMENT.fullmatch(segment):
        return f"has characters outside the rule ({_RULE})"
    if ".." in segment:
        return "contains '..'"
    return None


def check_name(name: str) -> str:
    """Return ``name`` when it is a valid artifact name, else raise InvalidName."""
    if not isinstance(name, str):
        raise InvalidName(f"artifact name must be a string, got {type(name).__name__}")
    parts = name.split("/")
    if len(parts) > 2:
        raise InvalidName(f"invalid artifact name {name!r}: at most one '/' (namespace/name)")
    for part in parts:
        problem = _segment_problem(part)
        if problem:
            raise InvalidName(f"invalid artifact name {name!r}: segment {part!r} {problem}")
    return name


def namespace_of(name: str) -> str | None:
    """The namespace of a valid artifact name, None when it has none."""
    head, sep, _ = name.partition("/")
    return head if sep else None


def check_alias(alias: str) -> str:
    """Return ``alias`` when it is a valid, non-reserved alias name, else raise InvalidName."""
    if not isinstance(alias, str):
        raise InvalidName(f"alias name must be a string, got {type(alias).__name__}")
    problem = _segment_problem(alias)
    if problem:
        raise InvalidName(f"invalid alias name {alias!r}: it {problem}")
    if alias == LATEST or alias.startswith("blake3") or _SEMVER_LIKE.fullmatch(alias):
        raise InvalidName(
            f"alias name {alias!r} is reserved (latest, version numbers and digests name versions already)"
        )
    return alias


def check_tag_key(key: str) -> str:
    """Return ``key`` when it is a valid tag key, else raise InvalidName."""
    if not isinstance(key, str):
        raise InvalidName(f"tag key must be a string, got {type(key).__name__}")
    problem = _segment_problem(key)
    if problem:
        raise InvalidName(f"invalid tag key {key!r}: it {problem}")
    return key


class RefKind(enum.StrEnum):
    LATEST = "latest"
    SEMVER = "semver"
    DIGEST = "digest"  # value: lowercase hex prefix, without "blake3:"
    ALIAS = "alias"


@dataclass(frozen=True, slots=True)
class VersionRef:
    """A parsed ref: artifact name + one selector. ``str(ref)`` and ``parse`` round-trip."""

    artifact: str
    kind: RefKind
    value: str  # "latest", "1.4.0", hex prefix, or alias name

    @classmethod
    def parse(cls, text: str) -> VersionRef:
        """Parse ``name[@selector]``. Raises InvalidRef (bad selector) or InvalidName (bad name)."""
        if not isinstance(text, str):
            raise InvalidRef(f"a ref must be a string, got {type(text).__name__}")
        name, sep, selector = text.strip().partition("@")
        check_name(name)
        if not sep:
            return cls(name, RefKind.LATEST, LATEST)
        return cls.of(name, selector, text=text)

    @classmethod
    def of(cls, artifact: str, selector: str, *, text: str | None = None) -> VersionRef:
        """Build a ref from an artifact name and a selector string (semver, digest, alias, latest)."""
        shown = text if text is not None else f"{artifact}@{selector}"
        check_name(artifact)
        if not selector:
            raise InvalidRef(f"invalid ref {shown!r}: nothing after '@' (use a version, digest, alias or 'latest')")
        if selector == LATEST:
            return cls(artifact, RefKind.LATEST, LATEST)
        if selector.startswith("blake3"):
            m = _DIGEST_SELECTOR.fullmatch(selector)
            if not m:
                raise InvalidRef(f"invalid ref {shown!r}: a digest selector is 'blake3:' and lowercase hex digits")
            hexpart = m.group(1)
            if len(hexpart) < MIN_DIGEST_PREFIX or len(hexpart) > 64:
                raise InvalidRef(
                    f"invalid ref {shown!r}: a digest prefix needs {MIN_DIGEST_PREFIX} to 64 hex digits"
                )
            return cls(artifact, RefKind.DIGEST, hexpart)
        if _SEMVER_LIKE.fullmatch(selector):
            try:
                version = SemVer.parse(selector)
            except InvalidVersion as exc:
                raise InvalidRef(f"invalid ref {shown!r}: {exc}") from None
            return cls(artifact, RefKind.SEMVER, str(version))
        try:
            check_alias(selector)
        except InvalidName as exc:
            raise InvalidRef(f"invalid ref {shown!r}: {exc}") from None
        return cls(artifact, RefKind.ALIAS, selector)

    @property
    def selector(self) -> str:
        return f"blake3:{self.value}" if self.kind is RefKind.DIGEST else self.value

    @property
    def semver(self) -> SemVer:
        if self.kind is not RefKind.SEMVER:
            raise InvalidRef(f"ref {self} names no semantic version")
        return SemVer.parse(self.value)

    def __str__(self) -> str:
        return f"{self.artifact}@{self.selector}"
