from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path

import numpy as np
import pytest

from modelkeep.store import ChunkStore, open_store


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], *, metadata: dict | None = None) -> Path:
    """A safetensors file written by hand (the format is a JSON header + raw tensors)."""
    header: dict = {}
    offset = 0
    dtypes = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}
    for name, arr in tensors.items():
        header[name] = {"dtype": dtypes[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for arr in tensors.values():
            f.write(np.ascontiguousarray(arr).tobytes())
    return path


def model_tensors(n: int = 12, size: int = 64 * 1024, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer{i}.weight": (rng.standard_normal(size, dtype=np.float32) * 0.02) for i in range(n)}


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path) -> ChunkStore:
    if request.param == "local":
        s = open_store(f"file://{tmp_path / 'store'}")
    elif request.param == "s3":  # moto's S3 server over real HTTP
        from s3_support import make_bucket

        endpoint = request.getfixturevalue("s3_endpoint")
        s = open_store(f"s3://{make_bucket(endpoint)}/store?endpoint={endpoint}")
    else:
        s = open_store(f"memory://{uuid.uuid4().hex}")
    yield s
    s.close()


@pytest.fixture
def local_store(tmp_path) -> ChunkStore:
    s = open_store(f"file://{tmp_path / 'store'}")
    yield s
    s.close()
