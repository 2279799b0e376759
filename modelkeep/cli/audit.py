"""``mk history`` and ``mk audit``: the hash-chained audit trail (log, export, verify)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.markup import escape

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, fmt_value, jsonable, out, table, when
from modelkeep.errors import IntegrityError
from modelkeep.registry.types import Event

__all__ = ["app", "history", "parse_instant"]

app = typer.Typer(help="Audit trail: log, export, verify the hash chain.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
_PAGE = 5000


def parse_instant(text: str, param: str) -> datetime:
    """An ISO 8601 instant with a timezone (``2026-03-01T12:00:00Z``); a bare date means 00:00 UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r} (e.g. 2026-03-01T12:00:00Z)", param_hint=param) from None
    if value.tzinfo is None:
        if len(text) == 10:  # a date
            return value.replace(tzinfo=UTC)
        raise typer.BadParameter(f"give a timezone, e.g. {text}Z for UTC", param_hint=param)
    return value


def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    json_: JsonOpt = False,
) -> None:
    """Every event of NAME in order: versions, aliases, tags, stages, approvals, policies."""
    events = registry(ctx).history(name)
    if json_:
        emit_json(events)
        return
    out().print(_events_table(events))


@app.command("log")
def log(
    ctx: typer.Context,
    artifact: Annotated[str | None, typer.Option("--artifact", "-a", help="Only events of this artifact.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only events at or after this instant (ISO 8601).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=0, help="Only the newest N events.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Audit events, oldest first."""
    start = parse_instant(since, "--since") if since is not None else None
    events = registry(ctx).audit_log(artifact=artifact, since=start, limit=limit)
    if json_:
        emit_json(events)
        return
    if not events:
        out().print("no events")
        return
    out().print(_events_table(events))


@app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="Write here (default: stdout).", dir_okay=False)] = None,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line (the only format).")] = True,
) -> None:
    """Export the whole chain as JSON lines, with each event's digest and the previous one."""
    reg = registry(ctx)
    if file is None:
        count = _export(reg, sys.stdout)
    else:
        with file.open("w", encoding="utf-8") as fp:
            count = _export(reg, fp)
        out().print(f"{count} events written to {escape(str(file))}")


def _export(reg, fp: TextIO) -> int:  # type: ignore[no-untyped-def]
    after, count = 0, 0
    while True:
        page = reg.audit_log(after=after, limit=_PAGE)
        for e in page:
            fp.write(json.dumps(jsonable(e), ensure_ascii=False, sort_keys=True) + "\n")
        count += len(page)
        if len(page) < _PAGE:
            return count
        after = page[-1].seq


@app.command("verify")
def verify(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Re-hash the whole chain; exit 5 naming the first edited, deleted, inserted or reordered event."""
    report = registry(ctx).audit_verify()
    if json_:
        emit_json(report)
    elif report.ok:
        out().print(
            f"audit chain ok: {report.events_checked} events, head {report.head_seq} {report.head_digest}"
        )
    if not report.ok:
        p = report.problem
        assert p is not None
        raise IntegrityError(
            f"audit chain broken at event {p.seq} ({p.kind}): {p.detail}",
            hint="the events from there on cannot be trusted; compare with an exported copy (mk audit export)",
        )


def _events_table(events: list[Event]):  # type: ignore[no-untyped-def]
    t = table("seq", "when", "actor", "action", "subject", "reason", "details", right=("seq",), wrap=("reason", "details"))
    for e in events:
        t.add_row(
            str(e.seq),
            when(e.at),
            escape(e.actor),
            escape(e.action),
            escape(e.subject),
            escape(e.reason),
            escape(_details(e)),
        )
    return t


def _details(e: Event) -> str:
    d = dict(e.data)
    if e.action.startswith("alias."):
        return f"{d.get('previous') or '-'} → {d.get('version') or '(removed)'}"
    if e.action.startswith("tag."):
        return f"{d.get('key')}={d.get('value')}" if d.get("value") is not None else f"-{d.get('key')}"
    if e.action == "stage.change":
        return f"{d.get('from')} → {d.get('to')}"
    if e.action == "version.create":
        return f"{d.get('kind')} {d.get('digest', '')[:19]}"
    return " ".join(f"{k}={fmt_value(v)}" for k, v in sorted(d.items()))
