"""Commands on the registry as a whole: init, ls."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from modelkeep.cli._context import state
from modelkeep.cli._output import emit_json, out, table, when
from modelkeep.registry.types import Kind

__all__ = ["init", "ls"]


def init(ctx: typer.Context) -> None:
    """Create the registry (database and store) and say where everything lives."""
    st = state(ctx)
    s = st.settings
    # Opening the registry creates the database schema and the store when absent.
    st.registry()
    con = out()
    con.print(f"registry ready at [bold]{escape(str(s.home))}[/]")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column(overflow="fold")
    grid.add_row("database", escape(s.db_url))
    grid.add_row("store", escape(s.store_url))
    grid.add_row("user", escape(s.user))
    con.print(grid)
    con.print("next: mk push PATH NAME  (e.g. mk push model.safetensors team/fraud --kind model -m 'first')")


def ls(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Argument(help="Only artifacts under this namespace, e.g. team.")] = None,
    kind: Annotated[Kind | None, typer.Option("--kind", "-k", help="Only artifacts of this kind.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
) -> None:
    """List artifacts, sorted by name."""
    artifacts = state(ctx).registry().artifacts(namespace=namespace, kind=kind)
    if json_:
        emit_json(artifacts)
        return
    if not artifacts:
        out().print("no artifacts yet: mk push PATH NAME")
        return
    t = table("artifact", "kind", "versions", "latest", "created", "by", right=("versions",), wrap=("artifact",))
    for a in artifacts:
        t.add_row(
            escape(a.name), a.kind.value, str(a.version_count), escape(a.latest or "-"), when(a.created_at), escape(a.created_by)
        )
    out().print(t)
