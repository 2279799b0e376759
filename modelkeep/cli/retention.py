"""``mk retention``: rules, legal holds, plan and apply (versions deleted as tombstones)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, out, table, when
from modelkeep.registry.types import RetentionHold, RetentionPlan, RetentionRule

__all__ = ["app"]

app = typer.Typer(
    help="Retention: per-artifact rules, legal holds, plan and apply (deleted versions stay as tombstones).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
NameArg = Annotated[str, typer.Argument(help="Artifact name.")]
RefArg = Annotated[str, typer.Argument(help="Version, e.g. team/fraud@1.4.0.")]


@app.command("set")
def set_(
    ctx: typer.Context,
    name: NameArg,
    keep_last: Annotated[int | None, typer.Option("--keep-last", help="Keep the newest N versions.")] = None,
    keep_days: Annotated[int | None, typer.Option("--keep-days", help="Keep versions younger than D days.")] = None,
    keep_production: Annotated[
        bool, typer.Option("--keep-production", help="Keep every version production ever pointed at.")
    ] = False,
    min_days: Annotated[
        int | None, typer.Option("--min-days", help="Never delete a version younger than M days.")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why; recorded in the rule history.")] = "",
    json_: JsonOpt = False,
) -> None:
    """Replace the retention rule of NAME (a new revision; earlier ones stay in its history)."""
    rule = registry(ctx).set_retention(
        name, keep_last=keep_last, keep_days=keep_days, keep_production=keep_production, min_days=min_days, reason=reason
    )
    if json_:
        emit_json(rule)
        return
    out().print(f"retention rule of {escape(name)}, revision {rule.revision}: {escape(describe(rule))}")
    out().print(f"see what it would delete: mk retention plan {escape(name)}")


@app.command("show")
def show(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """The rule in force for NAME, its history and the active holds."""
    reg = registry(ctx)
    history = reg.retention_history(name)
    holds = reg.holds(name)
    if json_:
        emit_json({"rule": history[-1] if history else None, "history": history, "holds": holds})
        return
    if not history:
        out().print(f"{escape(name)} has no retention rule: retention never deletes its versions")
    else:
        t = table("rev", "when", "by", "rule", "reason", wrap=("rule", "reason"))
        for r in history:
            t.add_row(str(r.revision), when(r.at), escape(r.actor), escape(describe(r)), escape(r.reason))
        out().print(t)
    if holds:
        out().print(_holds_table(holds))


@app.command("hold")
def hold(
    ctx: typer.Context,
    ref: RefArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why the version must be kept (required).")],
    json_: JsonOpt = False,
) -> None:
    """Place a legal hold on REF: it cannot be deleted until released."""
    h = registry(ctx).hold(ref, reason=reason)
    if json_:
        emit_json(h)
        return
    out().print(f"hold {h.id} on {escape(str(h.version))}: {escape(h.reason)}")


@app.command("release")
def release(
    ctx: typer.Context,
    ref: RefArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why the hold ends (required).")],
    json_: JsonOpt = False,
) -> None:
    """Release every active hold on REF."""
    released = registry(ctx).release(ref, reason=reason)
    if json_:
        emit_json(released)
        return
    for h in released:
        out().print(f"released hold {h.id} on {escape(str(h.version))}")


@app.command("holds")
def holds(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only versions of this artifact.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include released holds.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Active legal holds (of NAME, or of every artifact)."""
    found = registry(ctx).holds(name, include_released=all_)
    if json_:
        emit_json(found)
        return
    if not found:
        out().print("no holds")
        return
    out().print(_holds_table(found))


@app.command("plan")
def plan(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this artifact (default: every artifact with a rule).")] = None,
    json_: JsonOpt = False,
) -> None:
    """What retention would delete now, and why each version is kept or deleted. Changes nothing."""
    p = registry(ctx).plan_retention(name)
    if json_:
        emit_json(p)
        return
    _print_plan(p)
    if p.to_delete:
        target = f" {escape(name)}" if name else ""
        out().print(f"to delete them: mk retention apply{target} --reason '...'")


@app.command("apply")
def apply(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this artifact (default: every artifact with a rule).")] = None,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why; recorded on every deleted version (required).")] = "",
    json_: JsonOpt = False,
) -> None:
    """Delete what the plan says, as tombstones (metadata and audit kept; bytes freed by mk gc)."""
    p = registry(ctx).apply_retention(name, reason=reason)
    if json_:
        emit_json(p)
        return
    _print_plan(p)
    if p.to_delete:
        out().print(f"deleted {len(p.to_delete)} version(s); free their bytes with: mk gc")


@app.command("deleted")
def deleted(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """Versions of NAME deleted by retention (tombstones), newest deletion first."""
    found = registry(ctx).tombstones(name)
    if json_:
        emit_json(found)
        return
    if not found:
        out().print(f"{escape(name)} has no deleted versions")
        return
    t = table("version", "created", "deleted", "by", "reason", wrap=("reason",))
    for d in found:
        t.add_row(escape(d.version.version), when(d.created_at), when(d.deleted_at), escape(d.deleted_by), escape(d.reason))
    out().print(t)


def describe(r: RetentionRule) -> str:
    parts = []
    if r.keep_last is not None:
        parts.append(f"keep the newest {r.keep_last}")
    if r.keep_days is not None:
        parts.append(f"keep versions younger than {r.keep_days} days")
    if r.keep_production:
        parts.append("keep every version that reached production")
    if r.min_days is not None:
        parts.append(f"never delete before {r.min_days} days")
    return "; ".join(parts)


def _print_plan(p: RetentionPlan) -> None:
    if not p.decisions:
        out().print("no artifact has a retention rule: nothing to do (mk retention set NAME ...)")
        return
    t = table("version", "created", "action", "why", wrap=("why",))
    for d in p.decisions:
        action = ("[red]deleted[/]" if p.applied else "[red]delete[/]") if d.delete else "keep"
        t.add_row(escape(str(d.version)), when(d.created_at), action, escape("; ".join(d.reasons)))
    out().print(t)
    verb = "deleted" if p.applied else "would delete"
    out().print(f"{verb} {len(p.to_delete)}, keep {len(p.to_keep)}")


def _holds_table(found: list[RetentionHold]):  # type: ignore[no-untyped-def]
    t = table("id", "version", "placed", "by", "reason", "released", wrap=("reason",))
    for h in found:
        t.add_row(
            str(h.id),
            escape(str(h.version)),
            when(h.placed_at),
            escape(h.placed_by),
            escape(h.reason),
            when(h.released_at) if h.released_at else "-",
        )
    return t
