"""Webhooks: subscriptions, signed deliveries from a background worker, and the delivery log.

A route hands an event to :meth:`Dispatcher.emit` after the registry call has
committed; emit only puts it on a bounded queue (a full queue drops the event
with a warning, never blocks a request). One worker thread per server process
looks up the subscriptions of the event and POSTs to each::

    POST <url>
    Content-Type: application/json
    X-Modelkeep-Event: version.created
    X-Modelkeep-Delivery: <event id>
    X-Modelkeep-Signature: sha256=<hex HMAC-SHA256 of the body under the subscription secret>

    {"id": ..., "event": ..., "at": ..., "actor": ..., "namespace": ..., "data": {...}}

A 2xx answer is a success. Anything else (another status, a redirect — never
followed —, a timeout, a refused address) is retried up to ``webhook_attempts``
times with exponential backoff; every attempt is written to the delivery log.
Addresses that resolve to loopback, private, link-local, multicast or reserved
networks are refused unless the server runs with ``webhook_allow_private``;
``http://`` deliveries connect to the address that was checked (no DNS
rebinding between check and connection).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import queue
import secrets
import socket
import threading
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.db.models import WebhookDeliveryRow, WebhookRow, utcnow
from modelkeep.errors import InvalidInput, NotFoundError
from modelkeep.registry.operations import EVENTS
from modelkeep.server.settings import ServerSettings

if TYPE_CHECKING:
    from modelkeep.server.auth import AuthStore
    from modelkeep.server.metrics import Metrics

__all__ = ["WebhookStore", "Dispatcher", "sign", "check_address"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Modelkeep-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_address(url: str, *, allow_private: bool) -> str:
    """Refuse non-HTTP URLs and hosts on internal networks; return the URL to connect to.

    For ``http://`` URLs the host is resolved once, every address is checked, and
    the returned URL names the first address itself (the caller sends the
    original ``Host`` header), so DNS cannot answer differently between the
    check and the connection. ``https://`` URLs are returned unchanged: the
    certificate must match the host name, which an internal service behind a
    rebound name does not have. Raises InvalidInput.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook URL must be http:// or https:// with a host: {url!r}")
    if parts.username or parts.password:
        raise InvalidInput("webhook URL must not carry credentials; use the signing secret")
    if allow_private:
        return url
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise InvalidInput(f"cannot resolve webhook host {host!r}: {exc}") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for ip in addresses:
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
            raise InvalidInput(
                f"webhook host {host!r} is on an internal network ({ip})",
                hint="an admin may allow internal addresses with mk server --webhook-allow-private",
            )
    if parts.scheme == "https" or not addresses:
        return url
    first = addresses[0]
    literal = f"[{first}]" if first.version == 6 else str(first)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return urlunsplit(parts._replace(netloc=netloc))


class WebhookStore:
    """Subscriptions and the delivery log, in the registry database."""

    def __init__(self, auth: AuthStore) -> None:
        self._uow = auth.uow

    def create(self, url: str, events: list[str], namespace: str, *, by: str, secret: str | None) -> tuple[WebhookRow, str]:
        bad = sorted(set(events) - set(EVENTS))
        if bad:
            raise InvalidInput(f"unknown events {', '.join(bad)} ({', '.join(EVENTS)})")
        secret = secret or secrets.token_urlsafe(32)

        def run(db: Session) -> WebhookRow:
            row = WebhookRow(
                url=url,
                events=" ".join(sorted(set(events))),
                namespace=namespace,
                secret=secret,
                created_at=utcnow(),
                created_by=by,
                deleted_at=None,
            )
            db.add(row)
            db.flush()
            db.expunge(row)
            return row

        return self._uow.write(run), secret

    def list(self) -> list[WebhookRow]:
        def run(db: Session) -> list[WebhookRow]:
            rows = list(db.scalars(select(WebhookRow).where(WebhookRow.deleted_at.is_(None)).order_by(WebhookRow.id)))
            for r in rows:
                db.expunge(r)
            return rows

        return self._uow.read(run)

    def delete(self, webhook_id: int) -> None:
        def run(db: Session) -> None:
            row = db.get(WebhookRow, webhook_id)
            if row is None or row.deleted_at is not None:
                raise NotFoundError(f"no webhook {webhook_id}")
            row.deleted_at = utcnow()

        self._uow.write(run)

    def matching(self, event: str, namespace: str) -> list[tuple[int, str, str]]:
        """(id, url, secret) of the live subscriptions to ``event`` on ``namespace``."""
        return [
            (r.id, r.url, r.secret)
            for r in self.list()
            if event in r.events.split() and r.namespace in ("*", namespace)
        ]

    def log(self, webhook_id: int, event_id: str, event: str, attempt: int, ok: bool, status: int | None, error: str | None) -> None:
        def run(db: Session) -> None:
            db.add(
                WebhookDeliveryRow(
                    webhook_id=webhook_id,
                    event_id=event_id,
                    event=event,
                    attempt=attempt,
                    ok=ok,
                    status_code=status,
                    error=error,
                    at=utcnow(),
                )
            )

        self._uow.write(run)

    def deliveries(self, webhook_id: int, *, limit: int = 100) -> list[WebhookDeliveryRow]:
        def run(db: Session) -> list[WebhookDeliveryRow]:
            q = (
                select(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.webhook_id == webhook_id)
                .order_by(WebhookDeliveryRow.id.desc())
                .limit(limit)
            )
            rows = list(db.scalars(q))
            for r in rows:
                db.expunge(r)
            return rows

        return self._uow.read(run)


class Dispatcher:
    """A bounded queue of events and the one worker thread that delivers them."""

    def __init__(self, store: WebhookStore, settings: ServerSettings, metrics: Metrics | None = None) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=settings.webhook_queue_size)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="modelkeep-webhooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._thread = None

    def emit(self, event: str, namespace: str, actor: str, data: Any) -> None:
        payload = {
            "id": uuid.uuid4().hex,
            "event": event,
            "at": utcnow().isoformat(),
            "actor": actor,
            "namespace": namespace,
            "data": data,
        }
        try:
            with self._idle:
                self._pending += 1
            self._queue.put_nowait(payload)
        except queue.Full:
            with self._idle:
                self._pending -= 1
            log.warning("webhook queue full (%d events): dropped %s %s", self._queue.maxsize, event, payload["id"])

    def wait_idle(self, timeout: float) -> bool:
        """Block until every emitted event is delivered or given up (tests, shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        with httpx.Client(follow_redirects=False, timeout=self._settings.webhook_timeout_seconds) as client:
            while True:
                payload = self._queue.get()
                if payload is None:
                    return
                try:
                    self._deliver_all(client, payload)
                except Exception:  # the worker must outlive any one event; the error is logged, not lost
                    log.exception("webhook delivery of %s failed", payload["id"])
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _deliver_all(self, client: httpx.Client, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        for webhook_id, url, secret in self._store.matching(payload["event"], payload["namespace"]):
            self._deliver(client, webhook_id, url, secret, payload, body)

    def _deliver(
        self, client: httpx.Client, webhook_id: int, url: str, secret: str, payload: dict[str, Any], body: bytes
    ) -> None:
        s = self._settings
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "modelkeep-webhooks",
            "X-Modelkeep-Event": payload["event"],
            "X-Modelkeep-Delivery": payload["id"],
            SIGNATURE_HEADER: sign(secret, body),
        }
        wait = s.webhook_backoff_seconds
        for attempt in range(1, s.webhook_attempts + 1):
            status: int | None = None
            error: str | None = None
            try:
                target = check_address(url, allow_private=s.webhook_allow_private)
                host = urlsplit(url).netloc
                resp = client.post(target, content=body, headers={**headers, "Host": host})
                status = resp.status_code
                if resp.is_redirect:
                    error = f"redirect to {resp.headers.get('location', '?')} not followed"
                elif not resp.is_success:
                    error = f"HTTP {status}"
            except InvalidInput as exc:
                error = exc.message
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            ok = error is None
            self._store.log(webhook_id, payload["id"], payload["event"], attempt, ok, status, error)
            self._count("ok" if ok else "failed")
            if ok:
                return
            log.info("webhook %d attempt %d for %s failed: %s", webhook_id, attempt, payload["id"], error)
            if attempt < s.webhook_attempts and self._stopping.wait(wait):
                return  # shutting down: the log shows how far it got
            wait *= 2

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels(outcome).inc()

