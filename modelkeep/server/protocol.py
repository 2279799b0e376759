"""The HTTP protocol ``mk server`` runs under uvicorn: httptools', with request bodies received in place.

Every byte of a chunk upload passes through the event loop, the one thread
all requests share. Under uvicorn's httptools protocol each byte was copied
three times there: by the event loop into a new bytes object per read, by the
parser into another per body piece, and by the route into its buffer, with a
round of Python for each ~256 KB piece.

``BodyProtocol`` is a buffered protocol (``asyncio.BufferedProtocol``): the
event loop reads into a buffer the protocol hands it. Normally that is a
scratch buffer fed to the parser, which copies what it keeps, as before. But a
route that knows where a body goes asks for it with :func:`receive_into`:
what the parser already took is copied over, and the rest of the body is read
by the kernel straight into the route's buffer, a few large reads and no copy
in Python. Once the declared length has arrived, a fresh parser takes over the
connection for the next request. A client that goes away mid-body fails the
wait with :class:`ClientGone`; a route cancelled mid-body closes the connection
(the rest of that body can no longer be parsed) and never leaves its buffer
with the event loop.

Bodies read the usual way (``receive``) reach the application as the parser
made them whenever nothing is waiting to be read, not appended to a bytearray
and copied again, as uvicorn's own protocol does. Flow control is uvicorn's.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

from starlette.requests import ClientDisconnect, Request

__all__ = ["ClientGone", "RECEIVE_INTO", "http_protocol", "receive_into"]

RECEIVE_INTO = "modelkeep.receive_into"  # the scope's extension: async (memoryview) -> memoryview
SCRATCH = 256 * 1024  # one read of anything but a body received in place


class ClientGone(ClientDisconnect):
    """The client closed the connection before the whole body arrived (as ``request.stream()`` says it)."""


async def receive_into(request: Request, out: memoryview) -> memoryview | None:
    """Receive ``request``'s body, of declared length ``len(out)``, into ``out``.

    None when the protocol cannot (another HTTP implementation; the caller then
    reads ``request.stream()``); else the part of ``out`` filled, all of it
    unless the client declared more than it sent (then the parser's answer).
    """
    into = request.scope.get("extensions", {}).get(RECEIVE_INTO)
    if into is None:
        return None
    filled: memoryview = await into(out)
    return filled


def http_protocol() -> Any:
    """What to pass as uvicorn's ``http``: a factory of ``BodyProtocol`` where httptools is installed, else "auto"."""
    try:
        import httptools
        from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn's pure-Python h11 protocol
        return "auto"

    class BodyProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._sink: _Sink | None = None

        # -- the event loop's reads ----------------------------------------------------

        def get_buffer(self, sizehint: int) -> memoryview:
            sink = self._sink
            return _scratch() if sink is None else sink.rest()

        def buffer_updated(self, nbytes: int) -> None:
            sink = self._sink
            if sink is None:
                self.data_received(_scratch()[:nbytes])  # type: ignore[arg-type]  # the parser copies what it keeps
                return
            if sink.advance(nbytes):
                self._sink = None
                self._fresh_parser()
                sink.cycle.more_body = False
                sink.cycle.message_event.set()
                if not sink.done.done():  # cancelled, its route not yet resumed: nothing to tell
                    sink.done.set_result(None)

        def connection_lost(self, exc: Exception | None) -> None:
            sink, self._sink = self._sink, None
            if sink is not None and not sink.done.done():
                sink.done.set_exception(ClientGone("the client closed the connection before sending the whole body"))
            super().connection_lost(exc)

        # -- the parser's callbacks ----------------------------------------------------

        def on_headers_complete(self) -> None:
            super().on_headers_complete()  # makes the cycle and schedules the application
            cycle = self.cycle
            if cycle is not None and cycle.scope is self.scope:
                self.scope.setdefault("extensions", {})[RECEIVE_INTO] = functools.partial(self._receive_into, cycle)

        def on_body(self, body: bytes) -> None:
            on_body(self, body, HIGH_WATER_LIMIT)

        # -- receive_into --------------------------------------------------------------

        async def _receive_into(self, cycle: Any, out: memoryview) -> memoryview:
            if self._sink is not None:
                raise RuntimeError("receive_into: this connection is already receiving a body in place")
            if cycle is not self.cycle and cycle.more_body:  # pragma: no cover - a later request is parsed only after
                raise RuntimeError("receive_into: not the request this connection is reading")
            if cycle.waiting_for_100_continue and not self.transport.is_closing():
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                cycle.waiting_for_100_continue = False
            have = len(cycle.body)
            if have > len(out):
                raise ValueError("the body is longer than the buffer given for it")
            out[:have] = cycle.body
            cycle.body = bytearray()
            if not cycle.more_body or have == len(out):
                return out[:have]
            if cycle.disconnected:
                raise ClientGone("the client closed the connection before sending the whole body")
            sink = _Sink(cycle, out, have, asyncio.get_running_loop().create_future())
            self._sink = sink
            self.flow.resume_reading()
            try:
                await sink.done
            except asyncio.CancelledError:
                if self._sink is sink:  # the rest of this body can no longer be parsed: end the connection
                    self._sink = None
                    self.transport.close()
                raise
            return out

        def _fresh_parser(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            try:
                self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
            except AttributeError:  # pragma: no cover - httptools < 0.6.3
                pass

    def make(**kwargs: Any) -> _Reads:
        return _Reads(BodyProtocol(**kwargs))

    make.protocol = BodyProtocol  # type: ignore[attr-defined]
    return make


_local = threading.local()


def _scratch() -> memoryview:
    """The scratch buffer of this thread's event loop: every connection's reads pass through it
    one at a time, and the parser copies what it keeps before the next read (as uvloop's own
    buffer is one per loop, not one per connection)."""
    view: memoryview | None = getattr(_local, "scratch", None)
    if view is None:
        view = _local.scratch = memoryview(bytearray(SCRATCH))
    return view


class _Reads(asyncio.BufferedProtocol):
    """What the event loop sees: a buffered protocol that hands everything to the HTTP one.

    uvloop reads into a protocol's buffer only when the protocol is not also an
    ``asyncio.Protocol``, as uvicorn's is.
    """

    __slots__ = ("http",)

    def __init__(self, http: Any) -> None:
        self.http = http

    def connection_made(self, transport: Any) -> None:
        self.http.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connection_lost(exc)

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()

    def eof_received(self) -> bool | None:
        return self.http.eof_received()  # type: ignore[no-any-return]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.http.get_buffer(sizehint)  # type: ignore[no-any-return]

    def buffer_updated(self, nbytes: int) -> None:
        self.http.buffer_updated(nbytes)


class _Sink:
    """A body being read straight into ``out``: filled up to ``at``."""

    __slots__ = ("cycle", "out", "at", "done")

    def __init__(self, cycle: Any, out: memoryview, at: int, done: asyncio.Future[None]) -> None:
        self.cycle, self.out, self.at, self.done = cycle, out, at, done

    def rest(self) -> memoryview:
        return self.out[self.at :]

    def advance(self, nbytes: int) -> bool:
        """Count ``nbytes`` more received; True once the body is complete."""
        self.at += nbytes
        return self.at >= len(self.out)


def on_body(protocol: Any, body: bytes, high_water: int) -> None:
    """uvicorn's ``on_body``, without the copy: the cycle's ``receive`` hands a bytes object on as it is."""
    if (protocol.parser.should_upgrade() and protocol._should_upgrade()) or protocol.cycle.response_complete:
        return
    cycle = protocol.cycle
    if cycle.body:
        cycle.body += body  # the application has not read the last piece yet
    else:
        cycle.body = body
    if len(cycle.body) > high_water:
        protocol.flow.pause_reading()
    cycle.message_event.set()
