"""A real server (uvicorn on a free 127.0.0.1 port) over an embedded registry, and an HTTP client to it."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from _servers import serve_in_thread  # noqa: E402

from modelkeep.client._http import Http  # noqa: E402
from modelkeep.registry.embedded import EmbeddedRegistry  # noqa: E402
from modelkeep.server.app import create_app  # noqa: E402
from modelkeep.server.settings import ServerSettings  # noqa: E402


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
