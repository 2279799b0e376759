"""Prometheus metrics of one app, in a collector registry of its own (no global state)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics"]

_API = "/api/v1"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "modelkeep_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "modelkeep_http_request_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.webhook_deliveries = Counter(
            "modelkeep_webhook_deliveries", "Webhook delivery attempts", ["outcome"], registry=self.registry
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # labels() validates and locks: once per label set, not per request
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    class Middleware:
        """Counts and times every request by route template (never by raw path: bounded labels)."""

        def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
            self.app = app
            self.metrics = metrics

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                if scope["path"].startswith(_API) and not route.startswith(_API) and route != "unmatched":
                    route = _API + route  # routes of included routers may carry their path without the prefix
                self.metrics.observe(scope["method"], route, status, time.perf_counter() - start)
