"""One self-contained HTML page for a comparison: inline CSS, inline SVG plots, no external asset.

Sections: versions, metrics (table with deltas + a bar chart per metric),
params that differ, lineage differences, environment differences, files, tensor
diffs (table + per-tensor relative change bars), text diffs. Every value from
the registry is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from modelkeep.ml.compare import Comparison, PairComparison
from modelkeep.ml.tensordiff import TensorDiff

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24;background:#fff}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
h3{font-size:1rem}table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pos{color:#1a7f37}.neg{color:#cf222e}.muted{color:#57606a}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:12px}
.add{color:#1a7f37}.del{color:#cf222e}.hunk{color:#8250df}
svg text{font:11px system-ui,sans-serif;fill:#1b1f24}
"""

_COLORS = ("#0969da", "#bf8700", "#1a7f37", "#8250df", "#cf222e", "#57606a")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return f"{x:.6g}"
    return str(x)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], num: Sequence[int] = ()) -> str:
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>")
        for i, cell in enumerate(r):
            cls = ' class="num"' if i in num else ""
            out.append(f"<td{cls}>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _bars(title: str, labels: Sequence[str], values: Sequence[float | None], *, width: int = 520) -> str:
    """A horizontal bar chart as inline SVG (bars scaled to the largest absolute finite value)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(finite) if finite else 1.0
    top = top or 1.0
    row, label_w, pad = 18, 200, 70
    h = row * len(labels) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" aria-label="{_e(title)}">',
             f'<text x="0" y="12" font-weight="bold">{_e(title)}</text>']
    bar_w = width - label_w - pad
    for i, (lab, v) in enumerate(zip(labels, values)):
        y = 20 + i * row
        short = lab if len(lab) <= 30 else "…" + lab[-29:]
        parts.append(f'<text x="0" y="{y + 12}">{_e(short)}</text>')
        if v is None or not math.isfinite(v):
            parts.append(f'<text x="{label_w}" y="{y + 12}" class="muted">{_e(_fmt(v))}</text>')
            continue
        w = max(1.0, bar_w * abs(v) / top)
        color = _COLORS[i % len(_COLORS)]
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="{color}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 12}">{_e(_fmt(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _delta(d: float | None) -> str:
    if d is None:
        return "-"
    cls = "pos" if d > 0 else "neg" if d < 0 else "muted"
    return f'<span class="{cls}">{d:+.6g}</span>'


def _diff_html(text: str) -> str:
    lines = []
    for line in text.splitlines():
        cls = ("add" if line.startswith("+") and not line.startswith("+++") else
               "del" if line.startswith("-") and not line.startswith("---") else
               "hunk" if line.startswith("@@") else "")
        lines.append(f'<span class="{cls}">{_e(line)}</span>' if cls else _e(line))
    return "<pre>" + "\n".join(lines) + "</pre>"


def _tensor_section(path: str, td: TensorDiff) -> str:
    out = [f"<h3>{_e(path)}</h3>",
           f"<p>{td.params_changed:,} of {td.params_b:,} parameters changed "
           f"({td.share_changed:.2%}); {len(td.changed)} of {len(td.tensors)} tensors differ.</p>"]
    rows = []
    for t in td.tensors:
        if t.status == "unchanged":
            continue
        shape = (_e(list(t.shape_a)) if t.shape_a is not None else "-") + " → " + (
            _e(list(t.shape_b)) if t.shape_b is not None else "-")
        rows.append([_e(t.name), _e(t.status), shape, _e(_fmt(t.changed_elements)), _e(_fmt(t.l2_diff)),
                     _e(_fmt(t.relative_change))])
    if rows:
        out.append(_table(["tensor", "status", "shape", "changed elements", "L2 of difference", "relative change"],
                          rows, num=(3, 4, 5)))
    compared = [t for t in td.tensors if t.status in ("changed", "unchanged") and t.relative_change is not None]
    if compared:
        out.append(_bars("relative change per tensor", [t.name for t in compared],
                         [t.relative_change for t in compared]))
    return "".join(out)


def _pair_section(p: PairComparison) -> str:
    out = [f"<h2>{_e(p.base)} → {_e(p.other)}</h2>"]
    f = p.files
    out.append(f"<p>files: {len(f.changed)} changed, {len(f.added)} added, {len(f.removed)} removed, "
               f"{f.unchanged} unchanged</p>")
    rows = [[sign, _e(c.path), _e(_fmt(c.old_size)), _e(_fmt(c.new_size))]
            for sign, group in (("~", f.changed), ("+", f.added), ("-", f.removed)) for c in group]
    if rows:
        out.append(_table(["", "file", "old size", "new size"], rows, num=(2, 3)))
    env = p.environment
    if not env.empty:
        out.append("<h3>environment</h3>")
        erows = [["+", _e(k), "-", _e(v)] for k, v in env.added.items()]
        erows += [["-", _e(k), _e(v), "-"] for k, v in env.removed.items()]
        erows += [["~", _e(k), _e(a), _e(b)] for k, (a, b) in env.changed.items()]
        erows += [["~", _e(k), _e(_fmt(a)), _e(_fmt(b))] for k, (a, b) in env.other.items()]
        out.append(_table(["", "package / fact", "base", "other"], erows))
    for path, td in p.tensors.items():
        out.append(_tensor_section(path, td))
    for t in p.texts:
        out.append(f"<h3>{_e(t.path)} ({_e(t.status)})</h3>")
        out.append(_diff_html(t.diff) if t.diff else '<p class="muted">binary file</p>')
    return "".join(out)


def render_html(c: Comparison, *, title: str | None = None) -> str:
    """The comparison as one HTML document (a string)."""
    refs = [v.ref for v in c.versions]
    title = title or "Comparison of " + ", ".join(refs)
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>"]
    out.append(_table(["version", "kind", "created", "author", "message"],
                      [[_e(v.ref), _e(v.kind.value), _e(v.created_at.isoformat(timespec="seconds")), _e(v.author),
                        _e(v.message)] for v in c.versions]))
    if c.metrics:
        out.append("<h2>metrics</h2>")
        head = ["metric", *refs, *(f"Δ {r}" for r in refs[1:])]
        rows = [[_e(m.name), *(_e(_fmt(x)) for x in m.values), *(_delta(d) for d in m.deltas[1:])] for m in c.metrics]
        out.append(_table(head, rows, num=tuple(range(1, len(head)))))
        for m in c.metrics:
            vals = [x if isinstance(x, int | float) and not isinstance(x, bool) else None for x in m.values]
            out.append(_bars(m.name, refs, vals))
    if c.params:
        out.append("<h2>params that differ</h2>")
        out.append(_table(["param", *refs], [[_e(k), *(_e(_fmt(x)) for x in v)] for k, v in c.params.items()]))
    if c.lineage:
        out.append("<h2>lineage differences</h2>")
        out.append(_table(["edge", *refs], [[_e(k), *(_e(", ".join(t) or "-") for t in v)]
                                            for k, v in c.lineage.items()]))
    if c.variables:
        out.append("<h2>prompt variables</h2>")
        out.append(_table(["version", "file", "variables"],
                          [[_e(ref), _e(path), _e(", ".join(names))]
                           for ref, files in c.variables.items() for path, names in files.items()]))
    for p in c.pairs:
        out.append(_pair_section(p))
    out.append("</body></html>\n")
    return "".join(out)
