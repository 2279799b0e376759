"""Fixtures shared by every test folder: a private PostgreSQL database when one is available."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ENV = "MODELKEEP_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh database created for this test session and dropped after it.

    Skipped when MODELKEEP_TEST_POSTGRES_URL is unset (e.g.
    postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it.
    """
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is unset: PostgreSQL tests need a server (see .ci/run)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from modelkeep.db.engine import normalize_url

    admin_url = make_url(normalize_url(base))
    name = f"modelkeep_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
