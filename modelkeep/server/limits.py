"""Request body limits, enforced before a route reads the body (413 above the limit).

Chunk routes (``/api/v1/chunks...``: chunk batches, manifests) may carry
``max_upload_bytes``; every other body ``max_json_bytes``. A declared Content-Length over the limit is
refused at once (a body never runs past its declared length: the HTTP parser
stops there); a chunked body is counted as it streams and refused when it
crosses the limit.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelkeep.errors import PayloadTooLarge
from modelkeep.server.settings import ServerSettings

__all__ = ["BodyLimit"]

_UPLOAD_PREFIX = "/api/v1/chunks"


class BodyLimit:
    def __init__(self, app: ASGIApp, *, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    def limit_for(self, path: str) -> int:
        if path.startswith(_UPLOAD_PREFIX):
            return self.settings.max_upload_bytes
        return self.settings.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None:
            if declared > limit:
                await _too_large(send, limit)
                return
            # The HTTP parser delivers exactly the declared length: nothing to count
            # (an upload's body passes here in ~4,000 pieces per GiB).
            await self.app(scope, receive, send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
            return message

        await self.app(scope, counting, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    import json

    body = json.dumps(
        {"error": {"code": PayloadTooLarge.code, "message": f"request body over the limit of {limit} bytes", "hint": None}}
    ).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
