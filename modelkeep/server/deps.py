"""The authenticated caller of a request, resolved once, before anything else is read.

Routers declare ``dependencies=[Depends(caller)]`` so a request without a valid
token is refused (401) before its body or parameters are even validated; route
code then calls ``await caller(request)`` and gets the cached principal.
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from modelkeep.server.auth import Principal

__all__ = ["caller"]


async def caller(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal: Principal = await run_in_threadpool(request.app.state.mk.principal, request)
    request.state.principal = principal
    return principal
