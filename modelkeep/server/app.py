"""create_app(registry, settings) -> FastAPI: the whole server, built without module-level state.

Everything one app needs lives in ``app.state.mk`` (:class:`ServerContext`): the
registry, the settings, the auth store, the webhook dispatcher, the metrics
registry. Requests reach the registry through an actor-scoped view
(``registry.as_actor(user)``), so every change records the token's user.

Routes: ``/api/v1/...`` (one module per group under ``server/routes``), ``/healthz``
(process up), ``/readyz`` (database answers), ``/metrics`` (Prometheus),
``/docs`` and ``/openapi.json`` (without admin routes; admins get the full
document at ``/api/v1/admin/openapi.json``).

The Registry operations (``routes/_operation.py``) are the hot path (a client
resolving ``name@production`` before each deployment or prediction batch):
:class:`ModelkeepAPI` answers them straight from the ASGI call, through the
metrics and body-limit middlewares but without FastAPI's routing, dependency
solving and exception middlewares, which cost more than the registry read
itself. Their FastAPI routes stay registered, for the OpenAPI document and
for any request the direct path does not match; both paths run the same
handler, ``_operation.answer``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp, Receive, Scope, Send

from modelkeep.db.engine import normalize_url
from modelkeep.errors import InvalidInput, ModelkeepError, Unauthorized
from modelkeep.registry.api import Registry
from modelkeep.registry.operations import OPERATIONS, Role
from modelkeep.server import errors as _errors
from modelkeep.server.auth import ALL, AuthStore, Principal, TokenCache, hash_token
from modelkeep.server.deps import caller
from modelkeep.server.limits import BodyLimit
from modelkeep.server.metrics import Metrics
from modelkeep.server.routes import (
    _operation,
    admin,
    aliases,
    artifacts,
    audit,
    chunks,
    governance,
    lineage,
    retention,
    signatures,
    storage,
    tags,
    versions,
)
from modelkeep.server.settings import ServerSettings
from modelkeep.server.webhooks import Dispatcher, WebhookStore
from modelkeep.store.buffers import BufferPool

__all__ = ["create_app", "ModelkeepAPI", "ServerContext"]

log = logging.getLogger(__name__)

API = "/api/v1"

T = TypeVar("T")


class ActorScoped(Protocol):
    def as_actor(self, actor: str) -> Registry: ...


@dataclass
class ServerContext:
    registry: Registry
    settings: ServerSettings
    auth: AuthStore
    webhooks: WebhookStore
    dispatcher: Dispatcher
    metrics: Metrics
    tokens: TokenCache
    inline_point_reads: bool = False  # SQLite: see read()
    bodies: BufferPool = field(default_factory=lambda: BufferPool(keep=4))  # chunk upload bodies, reused
    answers: _operation.KeptAnswers = field(default_factory=_operation.KeptAnswers)  # of ref resolutions
    _readers: anyio.CapacityLimiter | None = field(default=None, init=False, repr=False)
    _last_upload: float = field(default=0.0, init=False, repr=False)
    _trim: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)
    _lookups: dict[str, asyncio.Future[Principal]] = field(default_factory=dict, init=False, repr=False)

    async def read(self, fn: Callable[[], T], *, point: bool = False) -> T:
        """Run a database read: a GET operation, a token lookup.

        A ``point`` read (a few indexed rows: resolving a ref) on SQLite runs right
        here, on the event loop: it is in-process work that holds the GIL anyway,
        and handing it to a thread and back cost more than the read (alias
        resolution ~1,400 -> ~2,200 req/s). Every other read, and every read on
        PostgreSQL (which waits on the network, GIL released), runs in one of at
        most ``settings.read_threads`` worker threads: few on purpose, since
        dozens of threads taking turns at the GIL (switch interval 5 ms) made the
        latency tail worse and the throughput lower than two to four queueing.
        """
        if point and self.inline_point_reads:
            return fn()
        if self._readers is None:  # made on first use: a limiter belongs to a running event loop
            self._readers = anyio.CapacityLimiter(self.settings.read_threads)
        return await anyio.to_thread.run_sync(fn, limiter=self._readers)

    async def caller(self, request: Request) -> Principal:
        """The caller of ``request``; every route but health and metrics depends on it.

        Answered on the event loop when auth is off or the token was authenticated
        within ``auth_cache_seconds``; otherwise one database read, shared by the
        requests that carry the same token meanwhile (when a cached caller expires
        under load, 32 connections wait for one lookup, not for 32 queued behind
        ``read_threads``). Raises Unauthorized (missing, unknown, expired, revoked
        token; a header that is not a bearer token).
        """
        if not self.settings.auth:
            return Principal(self.settings.anonymous_user, {ALL: Role.ADMIN})
        secret = _bearer(request)
        if not secret:
            return self.tokens.authenticate(None)  # raises: authentication required
        known = self.tokens.get(secret)
        if known is not None:
            return known
        key = hash_token(secret)
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(self.read(lambda: self.tokens.authenticate(secret)))
            self._lookups[key] = lookup
            lookup.add_done_callback(lambda done: self._lookup_done(key, done))
        return await asyncio.shield(lookup)  # a waiter that goes away leaves the lookup to the others

    def _lookup_done(self, key: str, done: asyncio.Future[Principal]) -> None:
        self._lookups.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: a refusal every waiter went away from is not "never retrieved"

    def uploaded(self) -> None:
        """An upload finished: the reused buffers are let go once uploads stop for a while.

        A 1 GiB push leaves the server holding its upload buffers (four of ~33 MiB)
        and the store's planes and pack staging buffers, ~150 MB, for the next push. After
        ``upload_buffers_idle_seconds`` without an upload they are unmapped, and the
        process is back near its size before any push; the next push maps them
        afresh (a few tens of milliseconds of page faults).
        """
        self._last_upload = time.monotonic()
        if self._trim is None:
            delay = self.settings.upload_buffers_idle_seconds
            self._trim = asyncio.get_running_loop().call_later(delay, self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        self._trim = None
        delay = self.settings.upload_buffers_idle_seconds
        quiet = time.monotonic() - self._last_upload
        if quiet < delay:  # uploads came meanwhile: look again when the last one is old enough
            self._trim = asyncio.get_running_loop().call_later(delay - quiet, self._trim_if_idle)
            return
        freed = self.bodies.trim() + self.registry.store.trim_buffers()
        log.debug("no upload for %.0f s: let go of %d MB of upload buffers", quiet, freed // 2**20)

    def revision(self) -> int | None:
        """The registry's revision (``EmbeddedRegistry.revision``), None where it has none."""
        revision = getattr(self.registry, "revision", None)
        return None if revision is None else revision()

    def registry_for(self, principal: Principal) -> Registry:
        """A view of the registry that records ``principal`` as the actor of every change."""
        scoped: ActorScoped = self.registry  # type: ignore[assignment]
        return scoped.as_actor(principal.user)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if header and scheme.lower() != "bearer":
        raise Unauthorized("only bearer tokens are accepted")
    return secret.strip() or None


class ModelkeepAPI(FastAPI):
    """FastAPI, plus a direct path for the Registry operations (see the module docstring)."""

    operations: _operation.Direct | None = None  # set by create_app: the (verb, path) table
    direct: ASGIApp | None = None  # set by create_app: metrics, body limit, then ``operations``

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ops = self.operations
        if ops is not None and self.direct is not None and scope["type"] == "http" and ops.matches(scope):
            scope["app"] = self
            await self.direct(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(registry: Registry, settings: ServerSettings) -> FastAPI:
    """The FastAPI app serving ``registry``. The caller keeps ownership of ``registry``."""
    if not callable(getattr(registry, "as_actor", None)):
        raise InvalidInput(f"{type(registry).__name__} cannot record per-request actors (no as_actor)")
    if not settings.auth:
        log.warning("authentication is DISABLED (--no-auth): anyone who reaches this server is an admin")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx: ServerContext = app.state.mk
        ctx.dispatcher.start()
        try:
            yield
        finally:
            ctx.dispatcher.stop()
            ctx.auth.close()

    app = ModelkeepAPI(
        title="modelkeep",
        summary="Immutable, content-addressed, deduplicated model versions with lineage and aliases.",
        version="1",
        lifespan=lifespan,
    )
    auth = AuthStore(settings.db_url)
    hooks = WebhookStore(auth)
    metrics = Metrics()
    app.state.mk = ServerContext(
        registry=registry,
        settings=settings,
        auth=auth,
        webhooks=hooks,
        dispatcher=Dispatcher(hooks, settings, metrics),
        metrics=metrics,
        tokens=TokenCache(auth, ttl=settings.auth_cache_seconds),
        inline_point_reads=make_url(normalize_url(settings.db_url)).get_backend_name() == "sqlite",
    )
    _errors.install(app)
    for module in (
        artifacts, versions, aliases, tags, lineage, audit, governance, signatures, retention, storage, admin
    ):
        app.include_router(module.router, prefix=API)
    # Push and pull (chunk-level transfer); authenticated before anything is read, like the rest.
    app.include_router(chunks.router, prefix=API, dependencies=[Depends(caller)])

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz(request: Request) -> JSONResponse:
        """The database answers (503 with the error body when it does not)."""
        try:
            request.app.state.mk.auth.ping()
        except ModelkeepError as exc:
            return _errors.error_response(exc)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus metrics of this process."""
        body, content_type = request.app.state.mk.metrics.render()
        return Response(body, media_type=content_type)

    full_openapi = app.openapi

    def public_openapi() -> dict[str, Any]:
        """The OpenAPI document without the admin routes (admins: /api/v1/admin/openapi.json)."""
        doc = copy.deepcopy(full_openapi())
        doc["paths"] = {p: v for p, v in doc["paths"].items() if not p.startswith(f"{API}/admin/")}
        return doc

    app.state.full_openapi = full_openapi
    app.openapi = public_openapi  # type: ignore[method-assign]

    # Outermost first: metrics see every answer, including 413s from the limit.
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(Metrics.Middleware, metrics=app.state.mk.metrics)
    # The same two middlewares, in the same order, in front of the direct path.
    app.operations = _operation.Direct(OPERATIONS)
    app.direct = Metrics.Middleware(BodyLimit(app.operations, settings=settings), metrics=app.state.mk.metrics)
    return app
