"""Upload bodies sent from the pushed files themselves, by the kernel (``socket.sendfile``).

Through httpx, every uploaded byte was copied twice in the client: into the
batch's body, and again into the bytes object its HTTP layer joins each part
into before the socket copies it a third time. Here a request's head and the
batch's table are written as bytes, and the chunks' bytes go from the page
cache to the socket inside the kernel: no copy in Python, no per-chunk work.
The server verifies every chunk against its digest, so a file changed between
hashing and sending is refused, never stored (:class:`FileChanged`).

A body is a :class:`FileSpans` passed as ``content`` to ``Http.request``,
which sends it this way where it applies: a plain ``http://`` server reached
without a proxy, through the client's own transport. Elsewhere (https, a
proxy, a transport given to ``Http``) httpx sends it, reading the spans as it
goes. Idle connections are kept alive for the next upload. Answers go through
``_http.raise_for_error`` as httpx responses: callers see the same exceptions
either way, and a connection that fails is StorageError, which the transfer
retries on a new connection.
"""

from __future__ import annotations

import http.client
import os
import select
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

from modelkeep.errors import InvalidPath, StorageError

__all__ = ["FileChanged", "FilePoster", "FileSpans", "Span"]

Span = tuple[BinaryIO, int, int] | bytes  # (file, offset, length), or bytes held in memory
_READ = 1024 * 1024  # a part of a span, where httpx sends it


class FileChanged(InvalidPath):
    """A pushed file shrank between being hashed and being sent."""


@dataclass(frozen=True)
class FileSpans:
    """A request body: ``head``, then each span's bytes (of a file, or in memory), back to back."""

    head: bytes
    spans: list[Span]

    def __len__(self) -> int:
        return len(self.head) + sum(len(s) if isinstance(s, bytes) else s[2] for s in self.spans)

    def __iter__(self) -> Iterator[bytes]:
        """The body in parts (httpx's path; iterable again for a retry). Raises FileChanged."""
        yield self.head
        for span in self.spans:
            if isinstance(span, bytes):
                yield span
                continue
            f, offset, n = span
            end = offset + n
            while offset < end:
                part = os.pread(f.fileno(), min(_READ, end - offset), offset)
                if not part:
                    raise FileChanged(f"{getattr(f, 'name', 'a file')} shrank while being pushed")
                offset += len(part)
                yield part


class FilePoster:
    """POSTs bodies made of a head in memory and spans of files, on keep-alive connections."""

    KEEP = 8  # idle connections kept for the next requests

    def __init__(self, host: str, port: int, base_path: str, headers: dict[str, str], timeout: float) -> None:
        self._host, self._port, self._base_path = host, port, base_path
        self._headers = headers
        self._timeout = timeout
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []

    @classmethod
    def of(cls, base_url: str, client: httpx.Client, *, own_transport: bool) -> FilePoster | None:
        """One for the server at ``base_url``, or None where httpx must send (see the module docstring)."""
        parts = urlsplit(base_url)
        if own_transport or parts.scheme != "http" or not parts.hostname:
            return None
        proxies = urllib.request.getproxies_environment()
        if ("http" in proxies or "all" in proxies) and not urllib.request.proxy_bypass_environment(parts.hostname):
            return None
        headers = {k: v for k, v in client.headers.items() if k.lower() in ("authorization", "user-agent")}
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"), headers, client.timeout.read or 300.0)

    def post(self, target: str, body: FileSpans, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        """POST ``body`` to ``target`` (a path and query under the base URL): (status, headers, body).

        Raises StorageError when the connection fails, FileChanged when a file
        is shorter than its span; either way the connection is dropped. A kept
        connection the server closed meanwhile is replaced once at no cost (the
        request is idempotent), as HTTP clients do.
        """
        conn, kept = self._take()
        try:
            return self._post(conn, target, body, headers)
        except StorageError:
            if not kept:
                raise
        return self._post(self._new(), target, body, headers)

    def _post(
        self, conn: http.client.HTTPConnection, target: str, body: FileSpans, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            conn.putrequest("POST", self._base_path + target, skip_accept_encoding=True)
            for key, value in {**self._headers, **headers}.items():
                conn.putheader(key, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body.head)
            sock = conn.sock
            assert sock is not None
            for span in body.spans:
                if isinstance(span, bytes):
                    sock.sendall(span)
                    continue
                f, offset, n = span
                if sock.sendfile(f, offset, n) != n:
                    raise FileChanged(f"{getattr(f, 'name', 'a file')} shrank while being pushed")
            resp = conn.getresponse()
            answer = resp.status, resp.getheaders(), resp.read()
            reusable = not resp.will_close
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise StorageError(f"cannot reach the modelkeep server at {self._host}:{self._port}: {exc}") from exc
        except BaseException:
            conn.close()  # a request cut short: this connection cannot carry another
            raise
        if reusable:
            self._give(conn)
        else:
            conn.close()
        return answer

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection the server has not closed (True), or a new one (False)."""
        while True:
            with self._lock:
                if not self._idle:
                    return self._new(), False
                conn = self._idle.pop()
            if conn.sock is not None and not _readable(conn.sock):  # an idle connection readable: closed by the server
                return conn, True
            conn.close()

    def _new(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.KEEP:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _readable(sock: object) -> bool:
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))
