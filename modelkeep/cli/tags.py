"""``mk tag``: mutable KEY=VALUE labels on a version, every change recorded."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from modelkeep.cli import _parse
from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, out, table, when

__all__ = ["app"]

app = typer.Typer(help="Version tags: set, remove, list, history.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why; recorded in the tag history.")]
RefArg = Annotated[str, typer.Argument(help="Version ref, e.g. fraud@1.2.0 or fraud@production.")]


@app.command("set")
def set_(
    ctx: typer.Context,
    ref: RefArg,
    pairs: Annotated[list[str] | None, typer.Argument(metavar="KEY=VALUE...", help="Tags to set.")] = None,
    remove: Annotated[list[str], typer.Option("--rm", help="Tag key to remove (repeatable).")] = [],  # noqa: B006
    reason: ReasonOpt = "",
    json_: JsonOpt = False,
) -> None:
    """Set tags on REF (and remove those named by --rm)."""
    values = _parse.key_values(pairs or [], "KEY=VALUE")
    if not values and not remove:
        raise typer.BadParameter("give at least one KEY=VALUE or --rm KEY", param_hint="KEY=VALUE")
    _apply(ctx, ref, {**values, **dict.fromkeys(remove)}, reason, json_)


@app.command("rm")
def rm(
    ctx: typer.Context,
    ref: RefArg,
    keys: Annotated[list[str], typer.Argument(metavar="KEY...", help="Tag keys to remove.")],
    reason: ReasonOpt = "",
    json_: JsonOpt = False,
) -> None:
    """Remove tags KEY... from REF."""
    _apply(ctx, ref, dict.fromkeys(keys), reason, json_)


@app.command("ls")
def ls(ctx: typer.Context, ref: RefArg, json_: JsonOpt = False) -> None:
    """Current tags of REF."""
    v = registry(ctx).get(ref)
    if json_:
        emit_json({"ref": v.ref, "tags": dict(v.tags)})
        return
    t = table("key", "value", wrap=("value",))
    for k in sorted(v.tags):
        t.add_row(escape(k), escape(v.tags[k]))
    out().print(t)


@app.command("history")
def history(
    ctx: typer.Context,
    ref: RefArg,
    key: Annotated[str | None, typer.Option("--key", help="Only this tag key.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Every change of the tags of REF, oldest first."""
    changes = registry(ctx).tag_history(ref, key)
    if json_:
        emit_json(changes)
        return
    t = table("when", "version", "key", "from", "to", "by", "reason", wrap=("from", "to", "reason"))
    for c in changes:
        t.add_row(
            when(c.at),
            escape(str(c.version)),
            escape(c.key),
            escape(c.previous if c.previous is not None else "-"),
            escape(c.value) if c.value is not None else "[red](removed)[/]",
            escape(c.actor),
            escape(c.reason),
        )
    out().print(t)


def _apply(ctx: typer.Context, ref: str, changes: dict[str, str | None], reason: str, json_: bool) -> None:
    reg = registry(ctx)
    done = [reg.set_tag(ref, key, value, reason=reason) for key, value in changes.items()]
    if json_:
        emit_json(done)
        return
    con = out()
    for c in done:
        if c.value is None:
            con.print(f"{escape(str(c.version))}: removed {escape(c.key)}")
        else:
            con.print(f"{escape(str(c.version))}: {escape(c.key)}={escape(c.value)}")
