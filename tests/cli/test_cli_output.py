"""Rendering and argument parsing helpers (no registry needed)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import typer

from modelkeep.cli import _parse
from modelkeep.cli._output import bytes_in_unit_of, human_bytes, jsonable
from modelkeep.store.digest import hash_bytes


def test_human_bytes_uses_decimal_units() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(999) == "999 B"
    assert human_bytes(1_000) == "1.00 kB"
    assert human_bytes(1_070_000_000) == "1.07 GB"
    assert human_bytes(5_500_000) == "5.50 MB"


def test_parts_of_a_total_share_its_unit() -> None:
    assert bytes_in_unit_of(110_000_000, 1_070_000_000) == "0.11 GB"


def test_jsonable_converts_records() -> None:
    class Color(enum.StrEnum):
        RED = "red"

    @dataclass(frozen=True, slots=True)
    class Rec:
        d: object
        at: datetime
        c: Color
        items: tuple[int, ...]

    digest = hash_bytes(b"x")
    out = jsonable(Rec(d=digest, at=datetime(2024, 1, 2, tzinfo=UTC), c=Color.RED, items=(1, 2)))
    assert out == {"d": str(digest), "at": "2024-01-02T00:00:00+00:00", "c": "red", "items": [1, 2]}
    json.dumps(out)


def test_params_parse_json_else_string() -> None:
    assert _parse.params(["lr=0.001", "layers=[1, 2]", "opt=adamw", "flag=true", "eq=a=b"]) == {
        "lr": 0.001,
        "layers": [1, 2],
        "opt": "adamw",
        "flag": True,
        "eq": "a=b",
    }


@pytest.mark.parametrize("bad", ["acc=high", "acc=true", "acc=NaN", "acc=", "noequals", "=1"])
def test_metrics_must_be_numbers(bad: str) -> None:
    with pytest.raises(typer.BadParameter):
        _parse.metrics([bad])


def test_metrics_accept_ints_and_floats() -> None:
    assert _parse.metrics(["acc=0.9", "n=10", "loss=-1e-3"]) == {"acc": 0.9, "n": 10, "loss": -0.001}
