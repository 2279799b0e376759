"""Canonical JSON: the one byte form that version documents and audit events are hashed in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from modelkeep.errors import InvalidInput

__all__ = ["canonical_json", "json_value"]


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: equal data gives equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def json_value(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """``value`` as plain JSON data (tuples become lists, numpy scalars numbers). Raises InvalidInput."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        return json.loads(canonical_json(dict(value)).decode())
    except ValueError as exc:  # NaN / infinity: not JSON, and not storable in PostgreSQL
        raise InvalidInput(f"{what} must be JSON with finite numbers: {exc}") from None
    except TypeError as exc:
        raise InvalidInput(f"{what} must be JSON-serializable: {exc}") from None
