"""Storage commands: du, fsck, gc, digest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, err, human_bytes, jsonable, out, table, transfer_progress
from modelkeep.errors import IntegrityError

__all__ = ["du", "fsck", "gc", "digest"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def du(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Logical and stored bytes, dedup ratio, and bytes per artifact."""
    u = registry(ctx).du()
    if json_:
        emit_json({**jsonable(u), "dedup_ratio": u.dedup_ratio})
        return
    con = out()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column(justify="right")
    grid.add_row("logical", human_bytes(u.logical_bytes))
    grid.add_row("unique", human_bytes(u.unique_bytes))
    grid.add_row("stored", human_bytes(u.stored_bytes))
    grid.add_row("dedup ratio", f"[bold]{u.dedup_ratio:.2f}x[/]")
    grid.add_row("chunks", f"{u.chunks:,}")
    grid.add_row("packs", f"{u.packs:,}")
    con.print(grid)
    if u.artifacts:
        t = table("artifact", "versions", "logical", right=("versions", "logical"), wrap=("artifact",))
        for a in u.artifacts:
            t.add_row(escape(a.artifact), str(a.versions), human_bytes(a.logical_bytes))
        con.print()
        con.print(t)


def fsck(
    ctx: typer.Context,
    json_: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Re-hash every pack, chunk and file; exit 5 when any problem is found."""
    with transfer_progress("fsck", None, enabled=not (json_ or quiet)) as progress:
        report = registry(ctx).fsck(progress=progress)
    if json_:
        emit_json({**jsonable(report), "ok": report.ok})
    else:
        con = out()
        con.print(
            f"checked {report.packs_checked:,} packs, {report.chunks_checked:,} chunks, "
            f"{human_bytes(report.bytes_checked)}"
        )
        if report.ok:
            con.print("[green]no problems found[/]")
        for p in report.problems:
            where = ", ".join(x for x in (f"pack {p.pack}" if p.pack else "", f"chunk {p.chunk}" if p.chunk else "") if x)
            con.print(f"[red]{escape(p.kind)}[/]: {escape(p.detail)}" + (f" ({escape(where)})" if where else ""))
            for a in p.affects:
                con.print(f"  affects {escape(a)}")
    if not report.ok:
        n = len(report.problems)
        err().print(f"error: {n} integrity problem{'s' if n != 1 else ''} found", markup=False)
        raise typer.Exit(IntegrityError.exit_code)


def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Report what would be deleted; delete nothing.")] = False,
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Keep unreferenced packs younger than SECONDS (pushes in flight).")
    ] = 3600.0,
    json_: JsonOpt = False,
) -> None:
    """Delete chunks and packs no version references."""
    r = registry(ctx).gc(dry_run=dry_run, grace_seconds=grace)
    if json_:
        emit_json(r)
        return
    verb = "would free" if r.dry_run else "freed"
    out().print(
        f"{verb} {human_bytes(r.bytes_freed)}: {r.chunks_deleted:,} chunks, {r.packs_deleted:,} packs deleted, "
        f"{r.packs_repacked:,} repacked; {r.packs_kept_young:,} young packs kept (grace {grace:g}s)"
    )


def digest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A file or a folder, as you would push it.")],
    against: Annotated[
        str | None,
        typer.Option("--against", help="Compare with this version (name@production, name@1.2.0…); exit 1 if they differ."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Digests of local files as a push would record them, computed without storing anything."""
    import modelkeep
    from modelkeep.registry.diff import file_changes

    local = modelkeep.digest(path)
    report: dict = {
        "files_digest": str(local.digest),
        "files": [{"path": f.path, "size": f.size, "digest": str(f.digest)} for f in local],
    }
    differs = False
    if against is not None:
        version, theirs = registry(ctx).manifest(against)
        added, removed, changed, unchanged = file_changes(theirs, local)
        differs = bool(added or removed or changed)
        report["against"] = {
            "ref": version.ref,
            "same": not differs,
            "added": [c.path for c in added],  # here, not in the version
            "removed": [c.path for c in removed],  # in the version, not here
            "changed": [c.path for c in changed],
            "unchanged": unchanged,
        }
    if json_:
        emit_json(report)
    else:
        con = out()
        # one line per file, digest first (as sha256sum and b3sum print): full digests never wrap
        for f in local:
            con.print(f"{f.digest}  {human_bytes(f.size):>9}  {escape(f.path)}", soft_wrap=True)
        con.print(f"{local.digest}  {human_bytes(local.size):>9}  (files digest)", soft_wrap=True)
        if against is not None:
            a = report["against"]
            if not differs:
                con.print(f"[green]same files as {escape(a['ref'])}[/] ({unchanged} file{'s' if unchanged != 1 else ''})")
            else:
                for key, word in (("changed", "changed"), ("added", "only here"), ("removed", "only in the version")):
                    for p in a[key]:
                        con.print(f"  {word}: {escape(p)}")
                con.print(f"[yellow]differs from {escape(a['ref'])}[/]")
    if differs:
        raise typer.Exit(1)
