"""``mk bundle``: versions that pin exact member versions (an ensemble, a whole AI system)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, out, table, when
from modelkeep.ml import bundles

__all__ = ["app"]

app = typer.Typer(help="Bundles: create, update, show.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
MessageOpt = Annotated[str, typer.Option("--message", "-m", help="Why this bundle version exists.")]


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Bundle artifact name, e.g. fraud-system.")],
    members: Annotated[list[str], typer.Argument(metavar="MEMBER...", help="Member refs; each is pinned exactly.")],
    message: MessageOpt = "",
    json_: JsonOpt = False,
) -> None:
    """Make a bundle version of NAME pinning the versions the MEMBER refs resolve to now."""
    v = bundles.create_bundle(registry(ctx), name, members, message=message)
    _show(ctx, v.ref, json_)


@app.command("update")
def update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Bundle artifact name.")],
    member: Annotated[list[str], typer.Option("--member", help="New member ref; replaces the member of the same artifact (repeatable).")] = [],  # noqa: B006
    remove: Annotated[list[str], typer.Option("--remove", help="Artifact whose member to drop (repeatable).")] = [],  # noqa: B006
    message: MessageOpt = "",
    json_: JsonOpt = False,
) -> None:
    """Make the next bundle version of NAME with the given members swapped in or removed."""
    if not member and not remove:
        raise typer.BadParameter("give at least one --member REF or --remove ARTIFACT", param_hint="--member")
    v = bundles.update_bundle(registry(ctx), name, member, remove=remove, message=message)
    _show(ctx, v.ref, json_)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Bundle version: name, name@1.2.0, name@production.")],
    json_: JsonOpt = False,
) -> None:
    """The exact member versions bundle REF pins."""
    _show(ctx, ref, json_)


def _show(ctx: typer.Context, ref: str, json_: bool) -> None:
    b = bundles.bundle(registry(ctx), ref)
    if json_:
        emit_json({"ref": b.version.ref, "members": [{"ref": m.ref, "kind": m.kind.value, "digest": str(m.digest)} for m in b.members]})
        return
    con = out()
    con.print(f"[bold]{escape(b.version.ref)}[/]  (bundle, {when(b.version.created_at)})")
    t = table("member", "kind", "digest", "created")
    for m in b.members:
        t.add_row(escape(m.ref), m.kind.value, str(m.digest)[:19], when(m.created_at))
    con.print(t)
