from __future__ import annotations

import pytest

from modelkeep.errors import InvalidVersion, VersionExists
from modelkeep.registry.semver import FIRST, SemVer, bump, check_explicit


def test_parse_str_round_trip_and_numeric_order() -> None:
    assert str(SemVer.parse("1.4.0")) == "1.4.0"
    assert SemVer.parse("v2.0.1") == SemVer(2, 0, 1)
    assert sorted(SemVer.parse(s) for s in ["1.10.0", "1.2.0", "1.9.9", "0.1.0"]) == [
        SemVer(0, 1, 0),
        SemVer(1, 2, 0),
        SemVer(1, 9, 9),
        SemVer(1, 10, 0),
    ]


@pytest.mark.parametrize("bad", ["1.4", "1.4.0.1", "01.2.3", "1.2.3-rc1", "a.b.c", "", "-1.0.0", "1.0.0 x"])
def test_parse_refuses(bad: str) -> None:
    with pytest.raises(InvalidVersion, match="not a version"):
        SemVer.parse(bad)


def test_bump_rules() -> None:
    v = SemVer(1, 4, 2)
    assert bump(None, files_changed=True) == FIRST == SemVer(1, 0, 0)
    assert bump(None, files_changed=False, major=True) == FIRST
    assert bump(v, files_changed=True) == SemVer(1, 5, 0)
    assert bump(v, files_changed=False) == SemVer(1, 4, 3)
    assert bump(v, files_changed=False, major=True) == SemVer(2, 0, 0)
    assert bump(v, files_changed=True, major=True) == SemVer(2, 0, 0)


def test_explicit_version_must_be_higher_than_every_existing_one() -> None:
    latest = SemVer(1, 4, 0)
    assert check_explicit(SemVer(3, 0, 0), latest, exists=False) == SemVer(3, 0, 0)
    assert check_explicit(SemVer(0, 1, 0), None, exists=False) == SemVer(0, 1, 0)
    with pytest.raises(VersionExists):
        check_explicit(SemVer(1, 2, 0), latest, exists=True)
    with pytest.raises(InvalidVersion, match="not higher than the newest version 1.4.0"):
        check_explicit(SemVer(1, 3, 5), latest, exists=False)
