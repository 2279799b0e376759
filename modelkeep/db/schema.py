"""The registry schema: created and upgraded only by the Alembic migrations.

:func:`upgrade` brings a database to the newest revision. It runs from an
installed package: the Alembic ``Config`` is built in code and points at the
``migrations`` folder next to this file (shipped as package data).

Several processes may open a fresh registry at the same moment, so the
upgrade runs under a lock held by the database itself: ``BEGIN IMMEDIATE`` on
SQLite (the write lock), ``pg_advisory_xact_lock`` on PostgreSQL. The second
process then finds the schema at head and does nothing.

Opening a registry only reads the revision: the head comes from the migration
files' ``revision``/``down_revision`` lines and the current one from the
``alembic_version`` table, so Alembic (and the template engine it imports,
~0.1 s) loads only when a migration runs.
"""

from __future__ import annotations

import ast
import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from modelkeep.db.engine import WRITE_OPTION

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATIONS", "UNMAPPED_TABLES", "alembic_config", "current_revision", "head_revision", "include_object", "upgrade"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Tables the migrations keep outside the ORM models: PostgreSQL's registry revision
# (migration 0006), which only triggers write and only ``engine.PgRevision`` reads.
UNMAPPED_TABLES = frozenset({"registry_revision"})


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's filter when comparing the database with the models: not the unmapped tables."""
    return not (type_ == "table" and name in UNMAPPED_TABLES)
_PG_LOCK_KEY = 0x6D6B_6565_7001  # "mkee" + 1: an arbitrary constant owned by modelkeep


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config built in code (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head_revision() -> str:
    """The newest revision, read from the migration files."""
    down: dict[str, tuple[str, ...]] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        found: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and node.value is not None:
                found[target.id] = ast.literal_eval(node.value)
        if isinstance(found.get("revision"), str):
            parent = found.get("down_revision")
            down[found["revision"]] = tuple(parent) if isinstance(parent, (list, tuple)) else (parent,) if parent else ()
    heads = sorted(set(down) - {p for parents in down.values() for p in parents})
    if len(heads) != 1:  # a packaging mistake, not a user error
        raise RuntimeError(f"the migrations have {len(heads)} heads, expected one: {heads}")
    return heads[0]


def current_revision(connection: Connection) -> str | None:
    """The database's revision; None for a database no migration has touched."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) > 1:
        raise RuntimeError(f"the registry database has {len(rows)} schema revisions, expected one: {rows}")
    return rows[0] if rows else None


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
            from alembic import command
            from alembic.script import ScriptDirectory

            cfg = alembic_config(conn)
            if ScriptDirectory.from_config(cfg).get_heads() != [head]:  # both readings must agree
                raise RuntimeError(f"the migrations' head is not {head}")
            log.info("upgrading registry schema from %s to %s", before, head)
            command.upgrade(cfg, "head")
    return True
