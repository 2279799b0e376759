"""``mk compare``: versions side by side, down to the tensor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, fmt_value, out, table

__all__ = ["compare"]


def compare(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(help="Two or more versions; the first is the base.")],
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")] = None,
    tensors: Annotated[bool, typer.Option("--tensors/--no-tensors", help="Tensor diff of changed safetensors files.")] = True,
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
) -> None:
    """Metrics with deltas, differing params, lineage, environment, files, tensors and text diffs."""
    from modelkeep.ml.compare import compare as run_compare
    from modelkeep.ml.report import render_html

    c = run_compare(registry(ctx), refs, tensors=tensors)
    if html is not None:
        html.write_text(render_html(c), encoding="utf-8")
    if json_:
        emit_json(c.to_json())
        return
    _print(c)
    if html is not None:
        out().print(f"\nreport written to {escape(str(html))}")


def _print(c: Any) -> None:
    con = out()
    refs = [v.ref for v in c.versions]
    con.print("compare " + " · ".join(f"[bold]{escape(r)}[/]" for r in refs))
    if c.metrics:
        t = table("metric", *refs, *(f"Δ {r}" for r in refs[1:]), right=tuple(refs) + tuple(f"Δ {r}" for r in refs[1:]))
        for m in c.metrics:
            t.add_row(escape(m.name), *(escape(fmt_value(x)) for x in m.values),
                      *("-" if d is None else f"{d:+.6g}" for d in m.deltas[1:]))
        con.print()
        con.print(t)
    if c.params:
        t = table("param", *refs, wrap=tuple(refs))
        for k, vals in c.params.items():
            t.add_row(escape(k), *(escape(fmt_value(x)) for x in vals))
        con.print()
        con.print(t)
    if c.lineage:
        t = table("lineage", *refs, wrap=tuple(refs))
        for k, vals in c.lineage.items():
            t.add_row(k, *(escape(", ".join(v) or "-") for v in vals))
        con.print()
        con.print(t)
    for ref, files in c.variables.items():
        for path, names in files.items():
            con.print(f"variables of {escape(ref)}:{escape(path)}: {escape(', '.join(names))}")
    for p in c.pairs:
        con.print()
        con.print(f"[bold]{escape(p.base)}[/] → [bold]{escape(p.other)}[/]")
        f = p.files
        con.print(f"files: {len(f.changed)} changed, {len(f.added)} added, {len(f.removed)} removed, {f.unchanged} unchanged")
        for sign, group in (("~", f.changed), ("+", f.added), ("-", f.removed)):
            for ch in group:
                con.print(f"  {sign} {escape(ch.path)}")
        env = p.environment
        if not env.empty:
            t = table("", "package / fact", "base", "other", wrap=("base", "other"))
            for k, v in env.added.items():
                t.add_row("+", escape(k), "-", escape(v))
            for k, v in env.removed.items():
                t.add_row("-", escape(k), escape(v), "-")
            for k, (a, b) in env.changed.items():
                t.add_row("~", escape(k), escape(a), escape(b))
            for k, (a, b) in env.other.items():
                t.add_row("~", escape(k), escape(fmt_value(a)), escape(fmt_value(b)))
            con.print(t)
        for path, td in p.tensors.items():
            con.print(f"tensors of {escape(path)}: {len(td.changed)} of {len(td.tensors)} differ; "
                      f"{td.params_changed:,} of {td.params_b:,} parameters changed ({td.share_changed:.2%})")
            rows = [t for t in td.tensors if t.status != "unchanged"]
            if rows:
                t = table("tensor", "status", "shape", "changed", "L2 diff", "relative", right=("changed", "L2 diff", "relative"))
                for x in rows:
                    shape = f"{list(x.shape_a) if x.shape_a is not None else '-'} → {list(x.shape_b) if x.shape_b is not None else '-'}"
                    t.add_row(escape(x.name), x.status, escape(shape), f"{x.changed_elements:,}",
                              fmt_value(x.l2_diff), fmt_value(x.relative_change))
                con.print(t)
        for td in p.texts:
            con.print(f"--- {escape(td.path)} ({td.status})")
            if td.diff:
                con.print(td.diff.rstrip("\n"), markup=False, highlight=False)
