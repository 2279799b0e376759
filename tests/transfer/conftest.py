"""A real server (uvicorn on a free 127.0.0.1 port) over an embedded registry, and an HTTP client to it."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from modelkeep.client._http import Http  # noqa: E402
from modelkeep.registry.embedded import EmbeddedRegistry  # noqa: E402
from modelkeep.server.app import create_app  # noqa: E402
from modelkeep.server.settings import ServerSettings  # noqa: E402


@contextmanager
def serve_in_thread(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Run ``app`` under uvicorn in a thread on a free 127.0.0.1 port; stop it on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Served:
    url: str
    registry: EmbeddedRegistry
    http: Http


@contextmanager
def serve_registry(db_url: str, store_url: str) -> Iterator[Served]:
    registry = EmbeddedRegistry(db_url, store_url, "server")
    try:
        app = create_app(registry, ServerSettings(db_url=db_url, auth=False, anonymous_user="alice"))
        with serve_in_thread(app) as url:
            http = Http(url)
            try:
                yield Served(url, registry, http)
            finally:
                http.close()
    finally:
        registry.close()


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    with serve_registry(f"sqlite:///{tmp_path / 'server.db'}", f"file://{tmp_path / 'server-store'}") as s:
        yield s


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    header: dict = {}
    offset = 0
    for name, arr in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for arr in tensors.values():
            f.write(np.ascontiguousarray(arr).tobytes())
    return path


def tensors(n: int = 8, size: int = 128 * 1024, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer{i}.weight": rng.standard_normal(size, dtype=np.float32) * 0.02 for i in range(n)}
