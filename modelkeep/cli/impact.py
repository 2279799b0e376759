"""``mk impact``: which dataset versions hold a key, and which versions were made from them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from modelkeep.cli._context import registry, state
from modelkeep.cli._output import emit_json, out, table
from modelkeep.errors import InvalidInput

__all__ = ["impact"]


def impact(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Dataset artifact, e.g. transactions.")],
    key: Annotated[str, typer.Option("--key", help="COLUMN=VALUE to look for, e.g. customer_id=123.")],
    flag: Annotated[bool, typer.Option("--flag", help="Tag every affected version impact-<hash> (blocks promotion rules).")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded with each tag change).")] = "",
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
) -> None:
    """Every version of DATASET holding the key, and every version made from them (lineage, downstream)."""
    from modelkeep.ml.impact import KeyIndexCache, flag_impact
    from modelkeep.ml.impact import impact as run_impact

    column, sep, value = key.partition("=")
    if not sep or not column:
        raise InvalidInput(f"--key must be COLUMN=VALUE, got {key!r}")
    reg = registry(ctx)
    cache = KeyIndexCache(state(ctx).settings.home / "cache" / "keys")
    report = run_impact(reg, dataset, column, value, cache=cache)
    flagged = flag_impact(reg, report, reason=reason) if flag else []
    if json_:
        emit_json({**report.to_json(), "flagged": [str(k) for k in flagged]})
        return
    con = out()
    con.print(
        f"{column} key: in {len(report.containing)} of {report.checked} versions of [bold]{escape(dataset)}[/]"
        + (f" ({len(report.unindexed)} without an index of {escape(column)}: unknown)" if report.unindexed else "")
    )
    if report.containing:
        con.print("  " + escape(", ".join(str(k) for k in report.containing)))
    if report.affected:
        t = table("version", "kind", "from", "via", wrap=("via",))
        for a in report.affected:
            t.add_row(escape(str(a.version)), a.kind.value, escape(str(a.source)),
                      escape(f"{a.edge.source} {a.edge.type.value} {a.edge.target}"))
        con.print()
        con.print(t)
    else:
        con.print("no version was made from them")
    if flag:
        con.print(f"\nflagged {len(flagged)} versions with tag [bold]{report.flag}[/] (see mk show; remove with mk tag rm)")
    elif report.containing:
        con.print(f"\nmark them with: mk impact {escape(dataset)} --key {escape(key)} --flag")
