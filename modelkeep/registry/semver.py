"""Semantic versions the registry assigns, and the rules that pick the next one.

Only ``MAJOR.MINOR.PATCH`` is used (no pre-release or build parts): versions are
assigned by the registry, and a total order without special cases keeps the
"newest first" query a plain ``ORDER BY major, minor, patch``.

Bump rules, from the newest existing version:

* no version yet → ``1.0.0``
* ``major=True`` or a changed model signature → next major (interface change)
* files changed → next minor (new weights or data)
* metadata only (params, metrics, lineage) → next patch
* an explicit version is taken only when higher than every existing one
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelkeep.errors import InvalidVersion, VersionExists

__all__ = ["SemVer", "FIRST", "bump", "check_explicit"]

_SEMVER = re.compile(r"v?(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})")


@dataclass(frozen=True, slots=True, order=True)
class SemVer:
    """``MAJOR.MINOR.PATCH``; ordered numerically. ``str`` and ``parse`` round-trip."""

    major: int
    minor: int
    patch: int

    def __post_init__(self) -> None:
        if min(self.major, self.minor, self.patch) < 0:
            raise InvalidVersion(f"version parts must not be negative: {self.major}.{self.minor}.{self.patch}")

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse ``1.4.0`` (a leading ``v`` is accepted). Raises InvalidVersion."""
        if not isinstance(text, str):
            raise InvalidVersion(f"a version must be a string like '1.4.0', got {type(text).__name__}")
        m = _SEMVER.fullmatch(text.strip())
        if not m:
            raise InvalidVersion(
                f"not a version: {text!r} (expected MAJOR.MINOR.PATCH like '1.4.0', no leading zeros or suffixes)"
            )
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))

    def next_major(self) -> SemVer:
        return SemVer(self.major + 1, 0, 0)

    def next_minor(self) -> SemVer:
        return SemVer(self.major, self.minor + 1, 0)

    def next_patch(self) -> SemVer:
        return SemVer(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


FIRST = SemVer(1, 0, 0)


def bump(
    latest: SemVer | None, *, files_changed: bool, major: bool = False, signature_changed: bool = False
) -> SemVer:
    """The version that follows ``latest`` for a change of the given nature."""
    if latest is None:
        return FIRST
    if major or signature_changed:
        return latest.next_major()
    if files_changed:
        return latest.next_minor()
    return latest.next_patch()


def check_explicit(wanted: SemVer, latest: SemVer | None, *, exists: bool) -> SemVer:
    """Accept ``wanted`` only when it is higher than every existing version.

    ``exists`` says whether ``wanted`` is already a version of the artifact.
    Raises VersionExists (taken) or InvalidVersion (lower than the newest).
    """
    if exists:
        raise VersionExists(f"version {wanted} already exists")
    if latest is not None and wanted <= latest:
        raise InvalidVersion(f"version {wanted} is not higher than the newest version {latest}")
    return wanted
