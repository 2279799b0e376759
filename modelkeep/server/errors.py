"""Errors on the wire: ModelkeepError ``code`` -> HTTP status in one table, one JSON body shape.

Every error answer is ``{"error": {"code": ..., "message": ..., "hint": ...}}``,
plus ``"details"`` when the error carries more (PromotionRefused's ``report``);
the remote client maps ``code`` back to the same class (``errors.error_classes``)
and sets the details back as attributes.
A code missing from :data:`STATUS` takes the status of its nearest ancestor.
Unexpected exceptions answer 500 with code ``internal`` and no details.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelkeep.errors import MalformedRequest, ModelkeepError, NotFoundError
from modelkeep.registry.wire import to_wire

__all__ = ["STATUS", "status_of", "error_response", "response_for", "install"]

log = logging.getLogger(__name__)

STATUS: dict[str, int] = {
    "internal": 500,
    "invalid_input": 400,
    "malformed_request": 422,
    "payload_too_large": 413,
    "not_found": 404,
    "conflict": 409,
    "store_locked": 423,
    "integrity": 500,
    "storage": 503,
    "auth": 403,
    "unauthorized": 401,
    "forbidden": 403,
}


def status_of(exc: ModelkeepError) -> int:
    for cls in type(exc).__mro__:
        code = getattr(cls, "code", None)
        if code in STATUS:
            return STATUS[code]
    return 500


def error_response(exc: ModelkeepError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.code == "unauthorized" else None
    error: dict[str, Any] = {"code": exc.code, "message": exc.message, "hint": exc.hint}
    details = _details(exc)
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status_of(exc), headers=headers)


def response_for(exc: Exception) -> JSONResponse:
    """The answer to an exception a route raised: its own error body, or 500 ``internal`` (logged)."""
    if isinstance(exc, ModelkeepError):
        return error_response(exc)
    log.exception("unexpected error while answering a request", exc_info=exc)
    return error_response(ModelkeepError("internal server error"))


def _details(exc: ModelkeepError) -> dict[str, Any]:
    """Extra attributes an error carries (PromotionRefused.report, InvalidPolicy.line), as JSON."""
    out = {}
    for key, value in vars(exc).items():
        if key in ("message", "hint") or key.startswith("_") or value is None:
            continue
        try:
            out[key] = to_wire(value)
        except TypeError:  # not a record: the message says enough
            continue
    return out


def install(app: FastAPI) -> None:
    """Register the handlers: ours, request validation (422) and plain HTTP errors (404, 405)."""

    async def on_modelkeep(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ModelkeepError)
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(MalformedRequest(f"invalid request: {where}: {first.get('msg', 'invalid')}"))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return error_response(NotFoundError("no such route"))
        err = ModelkeepError(str(exc.detail))
        body = {"error": {"code": "http_error", "message": err.message, "hint": None}}
        return JSONResponse(body, status_code=exc.status_code)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        return response_for(exc)

    app.add_exception_handler(ModelkeepError, on_modelkeep)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
