"""The one place HTTP happens for the remote client: requests, the bearer token, and errors.

An error answer's body ``{"error": {"code", "message", "hint"}}`` becomes the
exception class with that ``code`` (``errors.error_classes``), so callers catch
the same classes as with the embedded registry. A connection that fails is
StorageError.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from modelkeep.errors import MissingExtra, ModelkeepError, StorageError, error_classes
from modelkeep.registry.types import PolicyReport
from modelkeep.registry.wire import from_wire

try:
    import httpx
except ImportError:  # pragma: no cover - the client extra is missing
    raise MissingExtra.of("client", "httpx") from None

from modelkeep.client._sendfile import FilePoster, FileSpans  # noqa: E402  (needs httpx)

__all__ = ["Http", "raise_for_error"]

# Error attributes that are records, by (error code, attribute).
_DETAIL_TYPES: dict[tuple[str, str], Any] = {("promotion_refused", "report"): PolicyReport}

_FALLBACK = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 413: "payload_too_large", 422: "malformed_request"}


class Http:
    """An httpx client bound to one server, sending ``Authorization: Bearer <token>`` when given one."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 300.0, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"User-Agent": "modelkeep-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0), transport=transport
        )
        # Upload bodies of file spans go by sendfile where httpx's own transport would carry them.
        self._poster = FilePoster.of(self.base_url, self.client, own_transport=transport is not None)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        content = kwargs.get("content")
        if isinstance(content, FileSpans) and method == "POST" and self._poster is not None:
            return self._send_spans(path, content, kwargs)
        try:
            resp = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach the modelkeep server at {self.base_url}: {exc}") from exc
        raise_for_error(resp)
        return resp

    def _send_spans(self, path: str, body: FileSpans, kwargs: dict[str, Any]) -> httpx.Response:
        """A body of file spans, sent by the kernel (``_sendfile``)."""
        assert self._poster is not None
        unexpected = set(kwargs) - {"content", "params", "headers"}
        if unexpected:
            raise TypeError(f"a FileSpans body takes params and headers only, not {', '.join(sorted(unexpected))}")
        params = kwargs.get("params")
        target = path + ("?" + urlencode(params) if params else "")
        headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "content-length"}
        status, answer_headers, content = self._poster.post(target, body, headers)
        resp = httpx.Response(status, headers=answer_headers, content=content)
        raise_for_error(resp)
        return resp

    def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        """A context manager over a streamed response (errors raised on entry)."""
        return _Stream(self, method, path, kwargs)

    def close(self) -> None:
        if self._poster is not None:
            self._poster.close()
        self.client.close()


class _Stream:
    def __init__(self, http: Http, method: str, path: str, kwargs: dict[str, Any]) -> None:
        self._cm = http.client.stream(method, path, **kwargs)
        self._base = http.base_url

    def __enter__(self) -> httpx.Response:
        try:
            resp = self._cm.__enter__()
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach the modelkeep server at {self._base}: {exc}") from exc
        if resp.is_error:
            resp.read()
            try:
                raise_for_error(resp)
            finally:
                self._cm.__exit__(None, None, None)
        return resp

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


def raise_for_error(resp: httpx.Response) -> None:
    if not resp.is_error:
        return
    code, message, hint, details = None, f"server answered HTTP {resp.status_code}", None, {}
    try:
        body = resp.json()
        err = body["error"]
        code, message, hint = err["code"], err["message"], err.get("hint")
        details = err.get("details") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    classes = error_classes()
    cls = classes.get(code or "") or classes.get(_FALLBACK.get(resp.status_code, ""), ModelkeepError)
    if resp.status_code >= 500 and code in (None, "internal"):
        cls = StorageError if resp.status_code in (502, 503, 504) else ModelkeepError
    # Built without the class's own __init__: subclasses may take other arguments.
    exc = cls.__new__(cls)
    ModelkeepError.__init__(exc, message, hint=hint)
    for key, value in details.items() if isinstance(details, dict) else ():
        setattr(exc, key, _detail(cls, key, value))
    raise exc


def _detail(cls: type[ModelkeepError], key: str, value: Any) -> Any:
    """A detail rebuilt as the record it was, when its type is known; else the JSON value."""
    tp = _DETAIL_TYPES.get((cls.code, key))
    if tp is None:
        return value
    try:
        return from_wire(tp, value)
    except ModelkeepError:
        return value
