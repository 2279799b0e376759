"""Admin routes: webhooks and their delivery log, the full OpenAPI document; and ``whoami``.

Every admin route needs role ``admin`` on every namespace (``*``) and is left out
of the public ``/openapi.json`` (``server/app.py`` filters ``/api/v1/admin``);
admins read the full document at ``/api/v1/admin/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from modelkeep.registry.operations import Role
from modelkeep.server.auth import ALL, Principal, check_namespace
from modelkeep.server.deps import caller
from modelkeep.server.schemas import DeliveryOut, WebhookCreate, WebhookOut, WhoAmI
from modelkeep.server.webhooks import check_address

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(caller)])


async def _admin(request: Request) -> Principal:
    ctx = request.app.state.mk
    principal: Principal = await caller(request)
    principal.require(Role.ADMIN, ALL)
    return principal


def _out(row: Any, secret: str | None = None) -> WebhookOut:
    return WebhookOut(
        id=row.id,
        url=row.url,
        events=row.events.split(),
        namespace=row.namespace,
        created_at=row.created_at,
        created_by=row.created_by,
        secret=secret,
    )


@router.get("/whoami", tags=["auth"], response_model=WhoAmI)
async def whoami(request: Request) -> WhoAmI:
    """The caller's user name and roles."""
    ctx = request.app.state.mk
    p: Principal = await caller(request)
    return WhoAmI(user=p.user, grants={ns: r.label for ns, r in p.grants.items()}, auth=ctx.settings.auth)


@router.post("/admin/webhooks", tags=["admin"], response_model=WebhookOut)
async def create_webhook(request: Request, body: WebhookCreate) -> WebhookOut:
    """Subscribe ``url`` to ``events``; the answer carries the signing secret, once."""
    principal = await _admin(request)
    ctx = request.app.state.mk
    check_namespace(body.namespace)
    await run_in_threadpool(
        lambda: check_address(body.url, allow_private=ctx.settings.webhook_allow_private)
    )
    row, secret = await run_in_threadpool(
        lambda: ctx.webhooks.create(body.url, body.events, body.namespace, by=principal.user, secret=body.secret)
    )
    return _out(row, secret)


@router.get("/admin/webhooks", tags=["admin"], response_model=list[WebhookOut])
async def list_webhooks(request: Request) -> list[WebhookOut]:
    await _admin(request)
    rows = await run_in_threadpool(request.app.state.mk.webhooks.list)
    return [_out(r) for r in rows]


@router.delete("/admin/webhooks/{webhook_id}", tags=["admin"])
async def delete_webhook(request: Request, webhook_id: int) -> dict[str, int]:
    await _admin(request)
    await run_in_threadpool(request.app.state.mk.webhooks.delete, webhook_id)
    return {"deleted": webhook_id}


@router.get(
    "/admin/webhooks/{webhook_id}/deliveries", tags=["admin"], response_model=list[DeliveryOut]
)
async def deliveries(request: Request, webhook_id: int, limit: int = 100) -> list[DeliveryOut]:
    """The newest delivery attempts of one subscription, newest first."""
    await _admin(request)
    rows = await run_in_threadpool(lambda: request.app.state.mk.webhooks.deliveries(webhook_id, limit=min(limit, 1000)))
    return [DeliveryOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/admin/openapi.json", tags=["admin"])
async def admin_openapi(request: Request) -> dict[str, Any]:
    """The OpenAPI document with the admin routes included."""
    await _admin(request)
    return request.app.state.full_openapi()
