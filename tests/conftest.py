"""Fixtures shared by every test folder: a private PostgreSQL database when one is available."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

POSTGRES_ENV = "MODELKEEP_TEST_POSTGRES_URL"

MakeTree = Callable[..., Path]


@pytest.fixture
def make_tree(tmp_path: Path) -> MakeTree:
    """``make_tree({"a.txt": "text", "w/b.bin": b"bytes"}, name="src")`` writes files, returns the folder."""

    def make(files: dict[str, str | bytes], name: str = "src") -> Path:
        root = tmp_path / name
        for rel, content in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                p.write_text(content)
            else:
                p.write_bytes(content)
        root.mkdir(parents=True, exist_ok=True)
        return root

    return make


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh database created for this test session and dropped after it.

    Skipped when MODELKEEP_TEST_POSTGRES_URL is unset (e.g.
    postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it.
    """
    from _servers import fresh_postgres

    with fresh_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of moto's standalone S3 server on 127.0.0.1, started for this session.

    Skipped when moto is not installed (the ``test`` extra installs it). Sets
    dummy AWS credentials in the environment: boto3 insists on some, moto
    accepts any.
    """
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install '.[test]')")
    from s3_support import CREDENTIALS, moto_server

    with pytest.MonkeyPatch.context() as mp:
        for k, v in CREDENTIALS.items():
            mp.setenv(k, v)
        with moto_server() as endpoint:
            yield endpoint
