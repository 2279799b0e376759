"""The HTTP protocol ``mk server`` runs under uvicorn: httptools', handing request bodies over without copies.

Every byte of a chunk upload passes through the event loop, the one thread
all requests share. uvicorn's httptools protocol appends each piece of a body
the parser hands it to a bytearray, and the application gets a bytes copy of
that: two copies of every uploaded byte on that thread (~8 % of its time
during a 1 GiB push). Here a piece goes to the application as the parser
made it whenever nothing is waiting to be read, the usual case; pieces that
arrive while one waits are joined, as before. Flow control is uvicorn's.
"""

from __future__ import annotations

from typing import Any

__all__ = ["http_protocol"]


def http_protocol() -> Any:
    """What to pass as uvicorn's ``http``: ``BodyProtocol`` where httptools is installed, else "auto"."""
    try:
        from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn's pure-Python h11 protocol
        return "auto"

    class BodyProtocol(HttpToolsProtocol):
        def on_body(self, body: bytes) -> None:
            on_body(self, body, HIGH_WATER_LIMIT)

    return BodyProtocol


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
