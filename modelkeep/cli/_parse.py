"""Parsing of ``KEY=VALUE`` command-line arguments (the only parsing the CLI does itself)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import typer

__all__ = ["key_values", "params", "metrics"]


def _split(item: str, option: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
    return key, value


def key_values(items: Iterable[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; values stay strings (tags)."""
    return dict(_split(item, option) for item in items)


def params(items: Iterable[str], option: str = "--param") -> dict[str, Any]:
    """Values parsed as JSON when they parse (``lr=0.001`` -> 0.001, ``layers=[1,2]``), else kept as strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, raw = _split(item, option)
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def metrics(items: Iterable[str], option: str = "--metric") -> dict[str, float | int]:
    """Metric values must be finite numbers."""
    out: dict[str, float | int] = {}
    for item in items:
        key, raw = _split(item, option)
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise typer.BadParameter(f"metric {key!r} must be a number, got {raw!r}", param_hint=option)
        out[key] = value
    return out
