"""A real HTTP S3 endpoint for tests (moto's standalone server), and a proxy that injects faults.

The proxy sits between boto3 and moto: it forwards requests as they are, except
that it can answer the next N requests with 500/503, or drop the connection
without answering (a dropped upload), so tests see what a flaky S3 does.
"""

from __future__ import annotations

import http.client
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto on 127.0.0.1 (free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_bucket(endpoint: str) -> str:
    import boto3

    name = f"mk-{uuid.uuid4().hex[:16]}"
    client = boto3.session.Session().client("s3", endpoint_url=endpoint)
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()
    return name


class FaultProxy:
    """HTTP proxy to ``upstream`` on a free 127.0.0.1 port, with scripted faults."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self._lock = threading.Lock()
        self._faults: list[int] = []  # status to answer, or 0: drop the connection
        self.fail_all: int | None = None  # answer every request with this status
        self.requests = 0
        self.faults_served = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._next_fault()
                if fault == 0:
                    self.close_connection = True
                    self.connection.shutdown(2)  # mid-request drop: no answer at all
                    return
                if fault is not None:
                    msg = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
                    self.send_response(fault)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    # the proxy already answered "100 Continue" and holds the whole body
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    head = self.command == "HEAD"  # keeps the object's Content-Length
                    skip = ("transfer-encoding", "connection", "server", "date") + (() if head else ("content-length",))
                    for k, v in resp.getheaders():
                        if k.lower() not in skip:
                            self.send_header(k, v)
                    if not head:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _next_fault(self) -> int | None:
        with self._lock:
            self.requests += 1
            if self.fail_all is not None:
                self.faults_served += 1
                return self.fail_all
            if self._faults:
                self.faults_served += 1
                return self._faults.pop(0)
        return None

    def inject(self, *faults: int) -> None:
        """The next requests get these answers in order (0: the connection is dropped)."""
        with self._lock:
            self._faults.extend(faults)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

