"""Commands on versions: push, pull, show, log, diff."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from modelkeep.cli import _parse
from modelkeep.cli._context import registry, state
from modelkeep.cli._output import (
    bytes_in_unit_of,
    emit_json,
    fmt_value,
    human_bytes,
    jsonable,
    out,
    table,
    transfer_progress,
    when,
)
from modelkeep.errors import ArtifactNotFound
from modelkeep.registry.evidence import IMPACT_TAG_PREFIX
from modelkeep.registry.types import Kind, Stage, ValueChange, Version, VersionDiff

__all__ = ["push", "pull", "show", "log", "diff"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; print only the version ref.")]
RefsOpt = list[str]


def _refs_option(flag: str, what: str) -> Any:
    return typer.Option(
        "--" + flag, help=f"Lineage: {what} (a ref like name@1.0.0; repeatable).", rich_help_panel="Lineage"
    )


def push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="File or directory to store.")],
    name: Annotated[str, typer.Argument(help="Artifact name, e.g. team/fraud-detector.")],
    kind: Annotated[Kind | None, typer.Option("--kind", "-k", help="Artifact kind (set on first push).")] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="Why this version exists.")] = "",
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE hyperparameter; VALUE parsed as JSON when it parses.")] = [],  # noqa: B006
    metric: Annotated[list[str], typer.Option("--metric", help="KEY=NUMBER metric.")] = [],  # noqa: B006
    tag: Annotated[list[str], typer.Option("--tag", "-t", help="KEY=VALUE mutable tag.")] = [],  # noqa: B006
    derived_from: Annotated[RefsOpt, _refs_option("derived-from", "fine-tuned or continued from")] = [],  # noqa: B006
    trained_on: Annotated[RefsOpt, _refs_option("trained-on", "dataset used for training")] = [],  # noqa: B006
    evaluated_on: Annotated[RefsOpt, _refs_option("evaluated-on", "dataset used for evaluation")] = [],  # noqa: B006
    contains: Annotated[RefsOpt, _refs_option("contains", "bundle or ensemble member")] = [],  # noqa: B006
    variant_of: Annotated[RefsOpt, _refs_option("variant-of", "another build of the same model")] = [],  # noqa: B006
    version: Annotated[str | None, typer.Option("--version", help="Ask for this semantic version (X.Y.Z).")] = None,
    major: Annotated[bool, typer.Option("--major", help="Bump the major version (breaking change).")] = False,
    key: Annotated[str | None, typer.Option("--key", help="Dataset: index this key column (for mk impact).", rich_help_panel="Dataset")] = None,
    unique_key: Annotated[bool, typer.Option("--unique-key", help="Dataset: refuse a key column with repeated values.", rich_help_panel="Dataset")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Store PATH as a new version of NAME (no new version when nothing changed).

    Datasets (--kind dataset, or --key): row count, columns and dtypes of CSV/Parquet
    files are recorded, and --key stores an index of that column's values.
    """
    params = _parse.params(param)
    metrics = _parse.metrics(metric)
    tags = _parse.key_values(tag, "--tag")
    reg = registry(ctx)
    try:
        before = reg.versions(name, limit=1)
    except ArtifactNotFound:
        before = []
    push_fn: Any = reg.push
    if key is not None or unique_key or kind is Kind.DATASET or (kind is None and before and before[0].kind is Kind.DATASET):
        from modelkeep.ml.datasets import push_dataset

        push_fn = functools.partial(push_dataset, reg, key=key, unique_key=unique_key)
    with transfer_progress(f"push {name}", _local_size(path), enabled=not (json_ or quiet)) as progress:
        v = push_fn(
            path,
            name,
            kind=kind,
            message=message,
            params=params,
            metrics=metrics,
            tags=tags,
            derived_from=derived_from or None,
            trained_on=trained_on or None,
            evaluated_on=evaluated_on or None,
            contains=contains or None,
            variant_of=variant_of or None,
            version=version,
            major=major,
            progress=progress,
        )
    created = not (before and before[0].version == v.version)
    if json_:
        emit_json({"created": created, "ref": v.ref, "version": v})
    elif quiet:
        out().print(v.ref, markup=False)
    elif created:
        reused = max(v.size - v.new_bytes, 0)
        # to a server, new_bytes are the chunk bytes that went over the wire
        fresh, kept = ("sent", "reused") if state(ctx).settings.remote else ("new", "already stored")
        out().print(
            f"{human_bytes(v.size)} pushed as [bold]{escape(v.ref)}[/]: "
            f"{bytes_in_unit_of(v.new_bytes, v.size)} {fresh}, {bytes_in_unit_of(reused, v.size)} {kept}"
        )
    else:
        out().print(f"no change: [bold]{escape(v.ref)}[/] already holds these files and metadata")


def pull(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Version to fetch: name, name@1.2.0, name@production, name@blake3:ab12cd.")],
    dest: Annotated[Path, typer.Argument(help="Directory to write the files into (created if absent).")],
    variant: Annotated[
        str | None, typer.Option("--variant", help="Pull the build of REF named VARIANT (e.g. fp16) instead.")
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the files of REF under DEST, verifying every chunk."""
    reg = registry(ctx)
    if variant is not None:
        from modelkeep.ml.bundles import find_variant

        ref = find_variant(reg, ref, variant).ref
    total = reg.get(ref).size
    with transfer_progress(f"pull {ref}", total, enabled=not (json_ or quiet)) as progress:
        v = reg.pull(ref, dest, progress=progress)
    if json_:
        emit_json({"ref": v.ref, "dest": str(dest), "version": v})
    elif quiet:
        out().print(v.ref, markup=False)
    else:
        files = "file" if v.file_count == 1 else "files"
        out().print(
            f"{human_bytes(v.size)} pulled from [bold]{escape(v.ref)}[/] into {escape(str(dest))} "
            f"({v.file_count} {files}, verified)"
        )


def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Version: name, name@1.2.0, name@production, name@blake3:ab12cd.")],
    json_: JsonOpt = False,
) -> None:
    """Show one version: metadata, provenance, files, aliases, tags and lineage edges."""
    reg = registry(ctx)
    v = reg.get(ref)
    files = reg.files(v.ref)
    if json_:
        emit_json({"ref": v.ref, **_as_dict(v), "files": [{"path": p, "size": s} for p, s in files]})
        return
    con = out()
    con.print(f"[bold]{escape(v.ref)}[/]  ({v.kind.value})")
    info = Table.grid(padding=(0, 2))
    info.add_column(style="dim")
    info.add_column(overflow="fold")
    info.add_row("digest", str(v.digest))
    info.add_row("files digest", str(v.files_digest))
    info.add_row("created", f"{when(v.created_at)} by {escape(v.author)}")
    info.add_row("message", escape(v.message) or "-")
    info.add_row(
        "size",
        f"{human_bytes(v.size)} in {v.file_count} file{'s' if v.file_count != 1 else ''} "
        f"({human_bytes(v.new_bytes)} new when pushed)",
    )
    info.add_row("stage", v.stage.value)
    info.add_row("aliases", escape(", ".join(v.aliases)) or "-")
    info.add_row("tags", escape(", ".join(f"{k}={val}" for k, val in sorted(v.tags.items()))) or "-")
    for e in v.edges:
        info.add_row(e.type.value, escape(str(e.target)))
    if v.kind is Kind.PROMPT:
        from modelkeep.ml.textdiff import version_variables

        for path, names in version_variables(reg, v.ref).items():
            info.add_row("variables", escape(f"{path}: {', '.join(names)}"))
    con.print(info)
    _print_mapping(con, "params", v.params)
    _print_mapping(con, "metrics", v.metrics)
    if v.signature:
        from modelkeep.ml.signature import ModelSignature

        sig = table("signature", "")
        for direction, spec in ModelSignature.from_dict(v.signature).describe():
            sig.add_row(direction, escape(spec))
        con.print()
        con.print(sig)
    if v.provenance:
        prov = table("provenance", "", wrap=("",))
        for key, value in _provenance_rows(v.provenance):
            prov.add_row(escape(key), escape(value))
        con.print()
        con.print(prov)
    ft = table("file", "size", right=("size",), wrap=("file",))
    for p, s in files:
        ft.add_row(escape(p), human_bytes(s))
    con.print()
    con.print(ft)


def log(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    limit: Annotated[int | None, typer.Option("-n", "--limit", min=1, help="Show at most N versions.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Versions of NAME, newest first."""
    versions = registry(ctx).versions(name, limit=limit)
    if json_:
        emit_json([{"ref": v.ref, **_as_dict(v)} for v in versions])
        return
    flagged = {v.version: sorted(k for k in v.tags if k.startswith(IMPACT_TAG_PREFIX)) for v in versions}
    columns = ["version", "created", "size", "new", "author", "message", "stage", "aliases"]
    if any(flagged.values()):  # versions affected by a data deletion request (mk impact --flag)
        columns.append("impact flags")
    t = table(*columns, right=("size", "new"), wrap=("message",))
    for v in versions:
        row = [
            escape(v.version),
            when(v.created_at),
            human_bytes(v.size),
            human_bytes(v.new_bytes),
            escape(v.author),
            escape(v.message.splitlines()[0] if v.message else ""),
            "" if v.stage is Stage.NONE else v.stage.value,
            escape(", ".join(v.aliases)),
        ]
        if len(columns) > len(row):
            row.append(escape(", ".join(flagged[v.version])))
        t.add_row(*row)
    out().print(t)


def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="Old version ref.")],
    b: Annotated[str, typer.Argument(help="New version ref.")],
    json_: JsonOpt = False,
) -> None:
    """Files, params, metrics and metadata that changed from A to B (prompts and configs: a unified text diff)."""
    reg = registry(ctx)
    d = reg.diff(a, b)
    if json_:
        emit_json(d)
        return
    _print_diff(d)
    if {reg.get(a).kind, reg.get(b).kind} & {Kind.PROMPT, Kind.CONFIG}:
        from modelkeep.ml.textdiff import text_diffs

        for t in text_diffs(reg, a, b):
            out().print(f"--- {escape(t.path)} ({t.status})")
            if t.diff:
                out().print(t.diff.rstrip("\n"), markup=False, highlight=False)


# -- rendering helpers ----------------------------------------------------------------------


def _as_dict(v: Version) -> dict[str, Any]:
    d: dict[str, Any] = jsonable(v)
    return d


def _local_size(path: Path) -> int | None:
    """Bytes under ``path`` for the progress bar total; None when unknown (the registry reports errors)."""
    try:
        if path.is_file():
            return path.stat().st_size
        total = 0
        for root, _dirs, names in os.walk(path):
            for n in names:
                p = Path(root, n)
                if p.is_file():
                    total += p.stat().st_size
        return total or None
    except OSError:
        return None


def _print_mapping(con: Any, title: str, values: Mapping[str, Any]) -> None:
    if not values:
        return
    t = table(title, "", wrap=("",))
    for k in sorted(values):
        t.add_row(escape(k), escape(fmt_value(values[k])))
    con.print()
    con.print(t)


def _provenance_rows(prov: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A short summary: nested mappings flattened one level, long lists counted."""
    rows: list[tuple[str, str]] = []
    for key in sorted(prov):
        value = prov[key]
        label = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if not prefix and len(value) <= 8:
                rows.extend(_provenance_rows(value, prefix=f"{key}."))
            else:
                rows.append((label, f"{len(value)} entries"))
        elif isinstance(value, list | tuple) and len(value) > 4:
            rows.append((label, f"{len(value)} entries"))
        else:
            text = fmt_value(value)
            rows.append((label, text if len(text) <= 100 else text[:99] + "…"))
    return rows


def _print_diff(d: VersionDiff) -> None:
    con = out()
    con.print(f"[bold]{escape(str(d.a))}[/] → [bold]{escape(str(d.b))}[/]")
    con.print(
        f"files: {len(d.changed)} changed, {len(d.added)} added, {len(d.removed)} removed, {d.unchanged} unchanged"
    )
    if d.added or d.removed or d.changed:
        t = table("", "file", "old size", "new size", right=("old size", "new size"), wrap=("file",))
        for sign, style, changes in (("~", "yellow", d.changed), ("+", "green", d.added), ("-", "red", d.removed)):
            for c in changes:
                t.add_row(
                    f"[{style}]{sign}[/]",
                    escape(c.path),
                    human_bytes(c.old_size) if c.old_size is not None else "-",
                    human_bytes(c.new_size) if c.new_size is not None else "-",
                )
        con.print(t)
    for title, changes in (("params", d.params), ("metrics", d.metrics), ("metadata", d.metadata)):
        if changes:
            con.print()
            con.print(_changes_table(title, changes, numeric_delta=title == "metrics"))
    if not (d.added or d.removed or d.changed or d.params or d.metrics or d.metadata):
        con.print("no differences")


def _changes_table(title: str, changes: tuple[ValueChange, ...], *, numeric_delta: bool) -> Table:
    cols = [title, "old", "new"] + (["delta"] if numeric_delta else [])
    t = table(*cols, right=("delta",), wrap=("old", "new"))
    for c in changes:
        row = [escape(c.key), escape(fmt_value(c.old)), escape(fmt_value(c.new))]
        if numeric_delta:
            row.append(_delta(c.old, c.new))
        t.add_row(*row)
    return t


def _delta(old: Any, new: Any) -> str:
    numbers = (int, float)
    if isinstance(old, numbers) and isinstance(new, numbers) and not isinstance(old, bool) and not isinstance(new, bool):
        return f"{new - old:+.6g}"
    return ""
