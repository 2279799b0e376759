"""PostgreSQL: a registry revision that every committed change bumps, once per transaction.

Revision ID: 0006_pg_revision
Revises: 0005_ml_signature
Create Date: 2026-11-24

The server keeps the encoded answers of ref resolutions while the registry's
revision stays the same (docs/server.md, "Kept answers"). SQLite tells every
commit itself (``PRAGMA data_version``); PostgreSQL gets this counter:
``registry_revision.n``, bumped by a deferred constraint trigger on every
table, at commit, once per transaction (a transaction-local setting marks it
bumped). At commit, so the counter's row lock is the last lock a writer takes
and is held only while it commits: writers never deadlock over it. A table
added by a later migration must get the trigger too (``add_revision_trigger``);
a test checks that every table has it.

SQLite: nothing to do.
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0006_pg_revision"
down_revision: Union[str, Sequence[str], None] = "0005_ml_signature"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

EXEMPT = ("alembic_version", "registry_revision")

BUMP = """
CREATE FUNCTION modelkeep_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('modelkeep.revision_bumped', true) IS DISTINCT FROM 'on' THEN
        PERFORM set_config('modelkeep.revision_bumped', 'on', true);
        UPDATE registry_revision SET n = n + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END
$$
"""


def add_revision_trigger(table: str) -> None:
    op.execute(
        f'CREATE CONSTRAINT TRIGGER modelkeep_revision AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION modelkeep_bump_revision()"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE registry_revision (id smallint PRIMARY KEY CHECK (id = 1), n bigint NOT NULL)")
    op.execute("INSERT INTO registry_revision (id, n) VALUES (1, 0)")
    op.execute(BUMP)
    tables = list(
        op.get_bind()
        .exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
        .scalars()
    )
    for table in tables:
        if table not in EXEMPT:
            add_revision_trigger(table)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION modelkeep_bump_revision() CASCADE")  # and every trigger calling it
    op.execute("DROP TABLE registry_revision")
