"""The authenticated caller of a request, resolved once, before anything else is read.

Routers declare ``dependencies=[Depends(caller)]`` so a request without a valid
token is refused (401) before its body or parameters are even validated; route
code then calls ``await caller(request)`` and gets the cached principal.
A token seen within ``auth_cache_seconds`` (and every caller when auth is off)
is answered on the event loop; only the others wait for a worker thread and
the database (``ServerContext.caller``).
"""

from __future__ import annotations

from fastapi import Request

from modelkeep.server.auth import Principal

__all__ = ["caller"]


async def caller(request: Request) -> Principal:
    state = request.scope.setdefault("state", {})
    cached = state.get("principal")
    if cached is not None:
        return cached
    principal: Principal = await request.app.state.mk.caller(request)
    state["principal"] = principal
    return principal
