"""``mk alias``: named, movable pointers to versions, with full history."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, out, table, when
from modelkeep.registry.types import AliasMove

__all__ = ["app"]

app = typer.Typer(help="Aliases (production, staging, …): set, remove, list, history.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why; recorded in the alias history.")]


@app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    alias: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    version: Annotated[str, typer.Argument(help="Target: a semver (1.2.0) or any ref.")],
    reason: ReasonOpt = "",
    expected: Annotated[
        str | None,
        typer.Option("--expected", help="Only move if the alias now points at this semver ('' = must not exist)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Point ALIAS of NAME at VERSION (recorded with actor, time and reason)."""
    move = registry(ctx).set_alias(name, alias, version, reason=reason, expected=expected)
    if json_:
        emit_json(move)
        return
    was = f" (was {escape(move.previous)})" if move.previous else ""
    out().print(f"{escape(move.artifact)}@[bold]{escape(move.alias)}[/] → {escape(move.version or '-')}{was}")


@app.command("rm")
def rm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    alias: Annotated[str, typer.Argument(help="Alias to remove.")],
    reason: ReasonOpt = "",
    json_: JsonOpt = False,
) -> None:
    """Remove ALIAS of NAME (the removal stays in its history)."""
    move = registry(ctx).remove_alias(name, alias, reason=reason)
    if json_:
        emit_json(move)
        return
    was = f" (was {escape(move.previous)})" if move.previous else ""
    out().print(f"removed {escape(move.artifact)}@{escape(move.alias)}{was}")


@app.command("ls")
def ls(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    json_: JsonOpt = False,
) -> None:
    """Current aliases of NAME."""
    aliases = registry(ctx).aliases(name)
    if json_:
        emit_json(aliases)
        return
    if not aliases:
        out().print(f"{escape(name)} has no aliases: mk alias set {escape(name)} ALIAS VERSION")
        return
    t = table("alias", "version", "updated", "by")
    for a in aliases:
        t.add_row(escape(a.name), escape(a.version), when(a.updated_at), escape(a.updated_by))
    out().print(t)


@app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    alias: Annotated[str | None, typer.Argument(help="Only this alias.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Every move of the aliases of NAME (or of ALIAS), oldest first."""
    moves = registry(ctx).alias_history(name, alias)
    if json_:
        emit_json(moves)
        return
    out().print(_history_table(moves))


@app.command("at")
def at(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    alias: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    instant: Annotated[str, typer.Argument(metavar="TIME", help="ISO 8601 instant, e.g. 2026-03-01T12:00:00Z.")],
    json_: JsonOpt = False,
) -> None:
    """Which version ALIAS of NAME pointed at, at instant TIME."""
    from modelkeep.cli.audit import parse_instant

    when_ = parse_instant(instant, "TIME")
    version = registry(ctx).alias_at(name, alias, when_)
    if json_:
        emit_json({"artifact": name, "alias": alias, "at": when_, "version": version})
        return
    if version is None:
        out().print(f"{escape(name)}@{escape(alias)} pointed nowhere at {escape(when_.isoformat())}")
        return
    out().print(escape(version))


def _history_table(moves: list[AliasMove]) -> Table:
    t = table("when", "alias", "from", "to", "by", "reason", wrap=("reason",))
    for m in moves:
        t.add_row(
            when(m.at),
            escape(m.alias),
            escape(m.previous or "-"),
            escape(m.version) if m.version else "[red](removed)[/]",
            escape(m.actor),
            escape(m.reason),
        )
    return t
