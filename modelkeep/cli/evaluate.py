"""``mk evaluate``: metrics of a model version on a dataset version, stored as an evaluation version."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, fmt_value, out, table

__all__ = ["evaluate"]


def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model version, e.g. fraud@2.0.0.")],
    on: Annotated[str, typer.Option("--on", help="Dataset version, e.g. holdout@1.0.0.")],
    target: Annotated[str, typer.Option("--target", help="Column holding the true values.")],
    slice_by: Annotated[str | None, typer.Option("--slice-by", help="Column whose values define slices.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="classification or regression (default: from the target).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Evaluation artifact (default MODEL-eval).")] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow loading a pickled model (runs its code).")] = False,
    message: Annotated[str, typer.Option("--message", "-m", help="Why this evaluation.")] = "",
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
) -> None:
    """Evaluate MODEL on a dataset version; store the report linked evaluated_on both."""
    from modelkeep.ml.evaluate import evaluate as run_evaluate

    r = run_evaluate(registry(ctx), model, on, target=target, slice_by=slice_by, task=task, name=name,
                     allow_pickle=allow_pickle, message=message)
    if json_:
        emit_json(r.to_json())
        return
    con = out()
    assert r.version is not None
    con.print(f"[bold]{escape(r.model)}[/] on [bold]{escape(r.dataset)}[/]: {r.rows:,} rows, {r.task}"
              f" → stored as [bold]{escape(r.version.ref)}[/]")
    t = table("metric", "value", right=("value",))
    for k, v in r.metrics.items():
        t.add_row(k, fmt_value(v))
    con.print(t)
    if r.slices:
        names = list(r.metrics)
        t = table(escape(r.slice_by or ""), "rows", *names, right=("rows", *names))
        for s, m in r.slices.items():
            t.add_row(escape(s), str(m["rows"]), *(fmt_value(m.get(n)) for n in names))
        con.print()
        con.print(t)
        gap = r.largest_gap
        if gap is not None:
            metric, g = gap
            con.print(f"largest {metric} gap between slices: {g['gap']:.4g} "
                      f"(best {escape(str(g['best']))}, worst {escape(str(g['worst']))})")
