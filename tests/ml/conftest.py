"""Fixtures for the ML tests: a real embedded registry (SQLite in tmp_path, or PostgreSQL) with the ML methods."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from modelkeep.ml.methods import with_model_methods
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.store import open_store


@pytest.fixture
def ml_registry(tmp_path) -> Iterator[EmbeddedRegistry]:  # type: ignore[no-untyped-def]
    """``modelkeep.open()``'s class over SQLite in tmp_path and an in-memory store."""
    store = open_store(f"memory://{uuid.uuid4().hex}")
    reg = with_model_methods(EmbeddedRegistry)(f"sqlite:///{tmp_path / 'registry.db'}", store, "tester")
    yield reg
    reg.close()
    store.close()
