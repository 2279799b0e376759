"""create_app(registry, settings) -> FastAPI: the whole server, built without module-level state.

Everything one app needs lives in ``app.state.mk`` (:class:`ServerContext`): the
registry, the settings, the auth store, the webhook dispatcher, the metrics
registry. Requests reach the registry through an actor-scoped view
(``registry.as_actor(user)``), so every change records the token's user.

Routes: ``/api/v1/...`` (one module per group under ``server/routes``), ``/healthz``
(process up), ``/readyz`` (database answers), ``/metrics`` (Prometheus),
``/docs`` and ``/openapi.json`` (without admin routes; admins get the full
document at ``/api/v1/admin/openapi.json``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from modelkeep.errors import InvalidInput, ModelkeepError, Unauthorized
from modelkeep.registry.api import Registry
from modelkeep.registry.operations import Role
from modelkeep.server import errors as _errors
from modelkeep.server.auth import ALL, AuthStore, Principal
from modelkeep.server.deps import caller
from modelkeep.server.limits import BodyLimit
from modelkeep.server.metrics import Metrics
from modelkeep.server.routes import (
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

__all__ = ["create_app", "ServerContext"]

log = logging.getLogger(__name__)

API = "/api/v1"


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

    def principal(self, request: Request) -> Principal:
        """The caller of ``request``; every route but health and metrics depends on it."""
        if not self.settings.auth:
            return Principal(self.settings.anonymous_user, {ALL: Role.ADMIN})
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if header and scheme.lower() != "bearer":
            raise Unauthorized("only bearer tokens are accepted")
        return self.auth.authenticate(secret.strip() or None)

    def registry_for(self, principal: Principal) -> Registry:
        """A view of the registry that records ``principal`` as the actor of every change."""
        scoped: ActorScoped = self.registry  # type: ignore[assignment]
        return scoped.as_actor(principal.user)


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

    app = FastAPI(
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
    return app
