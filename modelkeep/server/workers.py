"""Several server processes on one listening socket: ``mk server --workers N``.

One server process answers on one core (the interpreter lock). Replicas behind
a load balancer scale out (docs/deploy.md); on one machine, ``--workers N``
forks N processes that accept from the same socket, each with its own
registry, database connections, caches and event loop, as N replicas would
have. The store and the database are shared as replicas share them: a worker
looks on disk for chunks another one wrote before it reports them missing.

The parent opens the registry once before forking (so migrations run once),
then only waits: SIGTERM or SIGINT is passed on to every worker, which shuts
down gracefully; when a worker exits on its own, the others are stopped and
the parent exits non-zero. Needs ``os.fork`` (Linux, macOS).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["serve_forked"]

log = logging.getLogger(__name__)


def serve_forked(host: str, port: int, workers: int, run_worker: Callable[[socket.socket], None]) -> int:
    """Fork ``workers`` processes running ``run_worker(listening socket)``; the exit code for the parent."""
    if not hasattr(os, "fork"):
        raise OSError("several workers need os.fork (Linux or macOS); run one per process instead")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    # What exists now lives in every worker: frozen, no collection walks it, and
    # its pages stay shared between the processes instead of being copied.
    gc.collect()
    gc.freeze()
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                run_worker(sock)
                code = 0
            except BaseException:  # a worker must never return into the parent's code
                log.exception("server worker %d failed", os.getpid())
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    sock.close()
    return _supervise(children)


def _supervise(children: list[int]) -> int:
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(children, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    alive = set(children)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in alive:
            continue
        alive.discard(pid)
        if not stopping:  # a worker ended on its own: stop the others
            log.error("server worker %d exited (status %d); stopping the others", pid, status)
            code = 1
            stopping = True
            _signal_all(list(alive), signal.SIGTERM)
    return code


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
