"""Alembic environment of the registry database.

Run programmatically by :func:`modelkeep.db.schema.upgrade`, which passes an
open connection (holding the migration lock) in ``config.attributes["connection"]``.
Without one, the URL comes from ``-x url=...`` or ``sqlalchemy.url`` and is
normalized like the registry's (``postgresql://`` -> psycopg 3).
"""

from __future__ import annotations

from alembic import context

from modelkeep.db.engine import make_engine
from modelkeep.db.models import Base
from modelkeep.db.schema import include_object

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True, include_object=include_object
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure_and_run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
