"""Fixtures for dataset, impact, evaluation and comparison tests: a real embedded registry and the real CLI."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from modelkeep.cli.main import app
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.store import open_store

Invoke = Callable[..., Result]


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[EmbeddedRegistry]:
    """SQLite in tmp_path over an in-memory chunk store."""
    store = open_store(f"memory://{uuid.uuid4().hex}")
    registry = EmbeddedRegistry(f"sqlite:///{tmp_path / 'registry.db'}", store, "tester")
    yield registry
    registry.close()
    store.close()


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """``write("data/t.csv", "a,b\\n1,2\\n")`` writes a file under tmp_path and returns its path."""

    def w(rel: str, content: str | bytes) -> Path:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(content)
        else:
            p.write_bytes(content)
        return p

    return w


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def mk(home: Path) -> Invoke:
    runner = CliRunner(
        env={"MODELKEEP_HOME": str(home), "MODELKEEP_URI": None, "MODELKEEP_STORE": None,
             "MODELKEEP_USER": "tester", "COLUMNS": "200"}
    )

    def invoke(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(app, list(args), prog_name="mk")
        if ok and result.exit_code != 0:
            raise AssertionError(
                f"mk {' '.join(args)} exited {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
                f"\nexception: {result.exception!r}"
            )
        return result

    return invoke
