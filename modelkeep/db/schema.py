"""The registry schema: created and upgraded only by the Alembic migrations.

:func:`upgrade` brings a database to the newest revision. It runs from an
installed package: the Alembic ``Config`` is built in code and points at the
``migrations`` folder next to this file (shipped as package data).

Several processes may open a fresh registry at the same moment, so the
upgrade runs under a lock held by the database itself: ``BEGIN IMMEDIATE`` on
SQLite (the write lock), ``pg_advisory_xact_lock`` on PostgreSQL. The second
process then finds the schema at head and does nothing.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from modelkeep.db.engine import WRITE_OPTION

__all__ = ["MIGRATIONS", "alembic_config", "current_revision", "head_revision", "upgrade"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_LOCK_KEY = 0x6D6B_6565_7001  # "mkee" + 1: an arbitrary constant owned by modelkeep


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config built in code (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:  # a packaging mistake, not a user error
        raise RuntimeError(f"the migrations have {len(heads)} heads, expected one: {heads}")
    return heads[0]


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> bool:
    """Upgrade the database to the newest revision; True when anything ran."""
    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:  # fast path: no lock, no migration machinery
            conn.rollback()
            return False
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            before = current_revision(conn)
            if before == head:
                return False
            log.info("upgrading registry schema from %s to %s", before, head)
            command.upgrade(alembic_config(conn), "head")
    return True
