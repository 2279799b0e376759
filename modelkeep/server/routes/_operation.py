"""One route per row of ``registry/operations.py``: parse, authorize, call the registry, encode.

Each route: authenticate the caller (401), decode the arguments from the query
string (GET, DELETE) or the JSON body (POST, PUT) by the ABC's annotations (422
on malformed JSON or wrong types), check the caller's role on the namespace of
every artifact the arguments name (403, before the registry is asked anything,
so a refusal never tells whether the target exists), call the actor-scoped
registry in a worker thread, encode the result (``registry/wire.py``) and, after
the registry call has committed, hand the webhook event to the dispatcher.

:func:`answer` is that handler. It runs behind two doors: the FastAPI route of
each operation (OpenAPI, and requests the direct path does not match) and
:class:`Direct`, the ASGI app ``server/app.py`` sends an exact ``(verb, path)``
match to without FastAPI's routing and dependency machinery.
"""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import pydantic_core
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from modelkeep.errors import InvalidInput, MalformedRequest
from modelkeep.registry.api import Registry
from modelkeep.registry.names import VersionRef, check_name
from modelkeep.registry.operations import OPERATIONS, Operation
from modelkeep.registry.operations import Scope as ArgScope
from modelkeep.registry.wire import from_wire, to_wire
from modelkeep.server import errors as _errors
from modelkeep.server.auth import ALL, Principal, namespace_for
from modelkeep.server.deps import caller
from modelkeep.store.digest import Digest

__all__ = ["Direct", "KeptAnswers", "answer", "operations_router", "parameters", "namespaces", "artifact_of"]

API = "/api/v1"

# Operations that read a few rows by index whatever the registry holds (ServerContext.read).
POINT_READS = frozenset({"get"})

_SKIP = {"self", "progress"}


@cache
def parameters(method: str) -> tuple[tuple[inspect.Parameter, Any], ...]:
    """(parameter, resolved annotation) of a Registry method, without self and progress."""
    fn = getattr(Registry, method)
    hints = typing.get_type_hints(fn)
    return tuple(
        (p, hints.get(p.name, Any)) for p in inspect.signature(fn).parameters.values() if p.name not in _SKIP
    )


def artifact_of(value: Any, scope: ArgScope) -> str:
    """The artifact name an argument holds (validated)."""
    if not isinstance(value, str):
        raise InvalidInput(f"expected a name or ref, got {type(value).__name__}")
    if scope is ArgScope.REF:
        return VersionRef.parse(value).artifact
    return check_name(value)


def namespaces(op: Operation, args: dict[str, Any]) -> list[str]:
    """The namespaces ``op`` touches with these arguments ("*" for registry-wide)."""
    if op.scope is ArgScope.GLOBAL:
        return [ALL]
    if op.scope is ArgScope.NAMESPACE:
        out = []
        for a in op.args:
            ns = args.get(a)
            out.append(ALL if ns is None else str(ns))
        return out
    return [ALL if args.get(a) is None else namespace_for(artifact_of(args[a], op.scope)) for a in op.args]


def authorize(principal: Principal, op: Operation, args: dict[str, Any]) -> list[str]:
    spaces = namespaces(op, args)
    role = op.role_for(args)
    for ns in spaces:
        if op.filter_results and ns == ALL:
            continue  # a listing: filtered to what the caller may see below
        principal.require(role, ns)
    return spaces


def _decode_query(hint: Any, text: str) -> Any:
    base = _non_none(hint)
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise MalformedRequest(f"expected an integer, got {text!r}") from None
    if base is float:
        try:
            return float(text)
        except ValueError:
            raise MalformedRequest(f"expected a number, got {text!r}") from None
    if base is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise MalformedRequest(f"expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    if _is_text(base):
        return from_wire(hint, text)
    try:
        return from_wire(hint, json.loads(text))
    except json.JSONDecodeError:
        raise MalformedRequest(f"expected JSON, got {text!r}") from None


_UNIONS = (typing.Union, types.UnionType)


def _non_none(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in _UNIONS and len(args) == 1:
        return args[0]
    return hint


def _is_text(hint: Any) -> bool:
    """Scalars that travel as text: str, enums, datetimes, digests, and unions of them."""
    if typing.get_origin(hint) not in (*_UNIONS, None):
        return False
    options = [a for a in (typing.get_args(hint) or (hint,)) if a is not type(None)]
    return all(
        a is str or a is datetime or a is Digest or (isinstance(a, type) and issubclass(a, enum.Enum)) for a in options
    )


async def decode_arguments(op: Operation, request: Request) -> dict[str, Any]:
    params = parameters(op.method)
    known = {p.name for p, _ in params}
    if op.verb in ("GET", "DELETE"):
        raw: dict[str, Any] = dict(request.query_params)
        unknown = set(raw) - known
        if unknown:
            raise MalformedRequest(f"unknown parameters: {', '.join(sorted(unknown))}")
        decoded = {}
        for p, hint in params:
            if p.name in raw:
                try:
                    decoded[p.name] = _decode_query(hint, raw[p.name])
                except MalformedRequest:
                    raise
                except InvalidInput as exc:
                    raise MalformedRequest(f"parameter {p.name}: {exc.message}") from None
    else:
        body = await request.body()
        try:
            raw = json.loads(body) if body else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise MalformedRequest("the body must be a JSON object of arguments")
        unknown = set(raw) - known
        if unknown:
            raise MalformedRequest(f"unknown arguments: {', '.join(sorted(unknown))}")
        decoded = {}
        for p, hint in params:
            if p.name in raw:
                try:
                    decoded[p.name] = from_wire(hint, raw[p.name])
                except InvalidInput as exc:
                    raise MalformedRequest(f"argument {p.name}: {exc.message}") from None
    missing = [p.name for p, _ in params if p.default is inspect.Parameter.empty and p.name not in decoded]
    if missing:
        raise MalformedRequest(f"missing arguments: {', '.join(missing)}")
    return decoded


def _visible(principal: Principal, record: Any) -> bool:
    name = getattr(record, "artifact", None) or getattr(record, "name", None)
    if not isinstance(name, str):
        return False
    return principal.visible(namespace_for(name))


class WireJSON(JSONResponse):
    """A JSONResponse rendered by pydantic's serializer (in Rust): the same bytes as the
    standard library's compact form for the wire's plain values, ~4x faster (a tenth of
    resolving an alias was spent encoding its answer). Wire values hold no NaN: the
    registry refuses them on the way in."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)


class EncodedJSON(Response):
    """An answer already encoded (a kept one)."""

    media_type = "application/json"


class KeptAnswers:
    """Encoded answers of point reads, each with the database revision it was read at.

    Resolving a ref (``get``) is the call a serving fleet makes before every
    deployment or batch. While the registry's revision (``EmbeddedRegistry.revision``:
    SQLite's data version, which every commit of any process changes) stays the
    same, a kept answer is the answer, and it costs no read and no encoding.
    The revision is read before the registry, so a commit landing during the
    read leaves the answer kept under the older number, which no longer
    matches: it is read again next time. A kept answer is never older than
    the number it is kept under. On PostgreSQL the revision is a counter every
    commit bumps (``db/engine.PgRevision``): one query instead of the read's
    two and the encoding. A registry that cannot tell (SQLite in memory)
    keeps nothing. Callers are authorized before a kept answer is
    looked up, as before any read. At most ``size`` answers, oldest dropped first.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._entries: dict[tuple[Any, ...], tuple[int, bytes]] = {}

    def get(self, key: tuple[Any, ...], revision: int) -> bytes | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] == revision else None

    def put(self, key: tuple[Any, ...], revision: int, body: bytes) -> None:
        entries = self._entries
        entries.pop(key, None)
        entries[key] = (revision, body)
        while len(entries) > self._size:
            entries.pop(next(iter(entries)), None)


async def answer(op: Operation, request: Request) -> Response:
    """Serve one call of ``op`` (see the module docstring); errors propagate as exceptions."""
    ctx = request.app.state.mk
    principal = await caller(request)
    args = await decode_arguments(op, request)
    spaces = authorize(principal, op, args)
    registry = ctx.registry_for(principal)
    call = lambda: getattr(registry, op.method)(**args)  # noqa: E731
    if op.method in POINT_READS:
        key = (op.method, *sorted(args.items()))
        answers: KeptAnswers = ctx.answers

        def lookup() -> tuple[int | None, bytes | None, Any]:
            # The revision first, then the registry (see KeptAnswers); on PostgreSQL
            # both are round trips, made on a read thread, not on the event loop.
            revision = ctx.revision()
            kept = None if revision is None else answers.get(key, revision)
            return revision, kept, call() if kept is None else None

        revision, kept, result = await ctx.read(lookup, point=True)
        if kept is None:
            kept = pydantic_core.to_json(to_wire(result))
            if revision is not None:
                answers.put(key, revision, kept)
        return EncodedJSON(kept)
    if op.verb == "GET":
        result = await ctx.read(call, point=op.method in POINT_READS)
    else:
        result = await run_in_threadpool(call)
    if op.filter_results and isinstance(result, list):
        result = [r for r in result if _visible(principal, r)]
    body = to_wire(result)
    if op.event is not None:
        ctx.dispatcher.emit(op.event, spaces[0] if spaces else ALL, principal.user, body)
    return WireJSON(body)


def _endpoint(op: Operation):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> JSONResponse:
        return await answer(op, request)

    endpoint.__name__ = op.method
    endpoint.__doc__ = inspect.getdoc(getattr(Registry, op.method))
    return endpoint


@dataclass(frozen=True, slots=True)
class _Route:
    path: str  # what the metrics middleware labels a request with (``scope["route"].path``)


class Direct:
    """ASGI app answering the operations by an exact ``(verb, path)`` lookup.

    It does what the FastAPI stack around :func:`answer` does for these routes:
    sets ``scope["route"]`` (metrics label the route template) and turns an
    exception into its error answer (``server/errors.py``, 500 logged).
    """

    def __init__(self, operations: tuple[Operation, ...]) -> None:
        self._routes = {(op.verb, API + op.path): (op, _Route(API + op.path)) for op in operations}

    def matches(self, scope: Scope) -> bool:
        return (scope["method"], scope["path"]) in self._routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        op, route = self._routes[(scope["method"], scope["path"])]
        scope["route"] = route
        try:
            response = await answer(op, Request(scope, receive))
        except Exception as exc:
            response = _errors.response_for(exc)
        await response(scope, receive, send)


def _openapi_extra(op: Operation) -> dict[str, Any]:
    params = parameters(op.method)
    if op.verb in ("GET", "DELETE"):
        return {
            "parameters": [
                {
                    "name": p.name,
                    "in": "query",
                    "required": p.default is inspect.Parameter.empty,
                    "schema": {"type": "string"},
                    "description": f"{hint}".replace("typing.", ""),
                }
                for p, hint in params
            ]
        }
    props = {p.name: {"description": f"{hint}".replace("typing.", "")} for p, hint in params}
    required = [p.name for p, _ in params if p.default is inspect.Parameter.empty]
    schema = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return {"requestBody": {"required": bool(required), "content": {"application/json": {"schema": schema}}}}


def operations_router(group: str) -> APIRouter:
    """A router with one route per operation of ``group``."""
    router = APIRouter(tags=[group], dependencies=[Depends(caller)])
    for op in OPERATIONS:
        if op.group != group:
            continue
        router.add_api_route(
            op.path,
            _endpoint(op),
            methods=[op.verb],
            name=op.method,
            summary=f"Registry.{op.method} (role: {op.role.label}"
            + "".join(f"; {arg}: {role.label}" for arg, role in op.elevated)
            + ")",
            openapi_extra=_openapi_extra(op),
            include_in_schema=True,
        )
    return router
