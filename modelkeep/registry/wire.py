"""JSON form of the registry records, shared by the server and the remote client.

``to_wire(record)`` turns a record of ``registry/types.py`` (or a list, tuple or
mapping of them) into JSON-ready values; ``from_wire(tp, data)`` rebuilds the
record from its type annotation, so a record type added to ``types.py`` travels
without new code. Digests travel as ``blake3:<hex>``, datetimes as ISO 8601
with offset, enums as their values, tuples as lists, bytes as base64.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from modelkeep.errors import InvalidInput
from modelkeep.store.digest import Digest

__all__ = ["to_wire", "from_wire"]


def to_wire(value: Any) -> Any:
    """JSON-ready form of a record, a container of records, or a plain value."""
    # Exact types first, by identity: a version (with its provenance package list)
    # is hundreds of values, and every server answer goes through here.
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:
        return value
    if t is dict:
        return {k if type(k) is str else str(k): v if type(v) is str else to_wire(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [to_wire(v) for v in value]
    if t is Digest:
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Digest):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_wire(getattr(value, name)) for name in _field_names(t)}
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_wire(v) for v in value]
    raise TypeError(f"cannot send a {type(value).__name__} over the wire")


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def from_wire(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from its wire form. Raises InvalidInput on a mismatch."""
    try:
        return _decode(tp, data)
    except (TypeError, ValueError, KeyError, binascii.Error) as exc:
        raise InvalidInput(f"unexpected wire data for {getattr(tp, '__name__', tp)}: {exc}") from None


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, data: Any) -> Any:
    if tp is Any or tp is object:
        return data
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        last: Exception | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(arg, data)
            except (TypeError, ValueError, KeyError, InvalidInput) as exc:
                last = exc
        raise ValueError(f"{data!r} matches none of {tp}") from last
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in _seq(data))
        return tuple(_decode(a, v) for a, v in zip(args, _seq(data), strict=True))
    if origin in (list, Sequence, typing.Sequence):
        (arg,) = typing.get_args(tp) or (Any,)
        return [_decode(arg, v) for v in _seq(data)]
    if origin in (dict, Mapping, typing.Mapping):
        kt, vt = typing.get_args(tp) or (Any, Any)
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        return {_decode(kt, k): _decode(vt, v) for k, v in data.items()}
    if tp is Digest:
        if not isinstance(data, str):
            raise TypeError("a digest travels as a string")
        return Digest.parse(data)
    if tp is bytes:
        if not isinstance(data, str):
            raise TypeError("bytes travel as a base64 string")
        return base64.b64decode(data, validate=True)
    if tp is datetime:
        if not isinstance(data, str):
            raise TypeError("a timestamp travels as an ISO 8601 string")
        return datetime.fromisoformat(data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object for {tp.__name__}")
        hints = _hints(tp)
        kwargs = {f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.name in data}
        return tp(**kwargs)
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp in (str, int, float, bool):
        if type(data) is not tp:
            raise TypeError(f"expected {tp.__name__}, got {type(data).__name__}")
        return data
    raise TypeError(f"no wire form for {tp!r}")


def _seq(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise TypeError(f"expected a list, got {type(data).__name__}")
    return data
