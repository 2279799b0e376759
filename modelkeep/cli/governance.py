"""``mk stage``, ``mk promote``, ``mk rollback``, ``mk policy``, ``mk approve``, ``mk reject``."""

from __future__ import annotations

import sys

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, fmt_value, out, table, when
from modelkeep.errors import InvalidInput, PromotionRefused
from modelkeep.registry.types import Approval, PolicyReport, Transition

__all__ = ["approve_app", "policy_app", "promote", "reject", "rollback", "stage", "stages"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
RefArg = Annotated[str, typer.Argument(help="Version ref, e.g. fraud@1.2.0.")]
NameArg = Annotated[str, typer.Argument(help="Artifact name.")]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why; recorded in the audit trail.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Admin override of a refused policy or transition (needs --reason).")
]
CommentOpt = Annotated[str, typer.Option("--comment", "-m", help="Comment recorded with the decision.")]


# -- stages, promotion, rollback ------------------------------------------------------------


def stage(
    ctx: typer.Context,
    ref: RefArg,
    to: Annotated[str, typer.Argument(metavar="STAGE", help="none, staging, validation, production or archived.")],
    reason: ReasonOpt = "",
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Move REF to lifecycle STAGE (production evaluates the promotion policy and moves the alias)."""
    _run_transition(lambda: registry(ctx).transition(ref, to, reason=reason, force=force), json_)


def promote(
    ctx: typer.Context,
    ref: RefArg,
    reason: ReasonOpt = "",
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Promote REF to production: the policy decides, the production alias moves, the previous is archived."""
    _run_transition(lambda: registry(ctx).promote(ref, reason=reason, force=force), json_)


def rollback(
    ctx: typer.Context,
    name: NameArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why; recorded in the audit trail (required).")],
    to: Annotated[
        str | None, typer.Option("--to", help="Version to return to (default: the previous production version).")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Return production of NAME to the previous production version (or --to VERSION), recorded."""
    if not reason.strip():
        raise typer.BadParameter("say why the rollback happens", param_hint="--reason")
    _run_transition(lambda: registry(ctx).rollback(name, to=to, reason=reason), json_)


def stages(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """The lifecycle stage of each version of NAME that left 'none'."""
    found = registry(ctx).stages(name)
    if json_:
        emit_json(found)
        return
    if not found:
        out().print(f"no version of {escape(name)} has a stage yet: mk stage {escape(name)}@VERSION staging")
        return
    t = table("version", "stage")
    for version, s in sorted(found.items(), key=lambda kv: [int(p) for p in kv[0].split(".")], reverse=True):
        t.add_row(escape(version), s.value)
    out().print(t)


def _run_transition(call: Any, json_: bool) -> None:
    try:
        t: Transition = call()
    except PromotionRefused as exc:
        if exc.report is not None:
            if json_:
                emit_json(exc.report)
            else:
                out().print(report_table(exc.report))
        raise
    if json_:
        emit_json(t)
        return
    if t.report is not None and t.report.results:
        out().print(report_table(t.report))
    con = out()
    verb = "rolled back to" if t.rollback else "now in"
    what = f"{escape(str(t.version))} {verb} [bold]{t.stage.value}[/] (was {t.previous_stage.value})"
    if t.forced:
        what += " [red]by override[/]"
    con.print(what)
    if t.alias is not None:
        con.print(f"{escape(t.alias.artifact)}@production → {escape(t.alias.version or '-')} (was {escape(t.alias.previous or '-')})")
    for v in t.archived:
        con.print(f"{escape(t.version.artifact)}@{escape(v)} archived")


def report_table(report: PolicyReport) -> Any:
    """Every rule: the values it read on each side, the comparison, pass/fail."""
    prod = report.production or "none"
    t = table(
        "rule", f"candidate {report.candidate}", f"production {prod}", "result", "detail", wrap=("rule", "detail")
    )
    # the rule text matters most: let it keep up to 48 columns before anything else shrinks
    t.columns[0].min_width = min(48, max((len(r.rule) for r in report.results), default=10))
    marks = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "skip": "[yellow]skip[/]"}
    for r in report.results:
        t.add_row(escape(r.rule), escape(_values(r.candidate)), escape(_values(r.production)), marks[r.status], escape(r.detail))
    if not report.results:
        t.add_row("(no policy: every promotion passes)", "", "", marks["pass"], "")
    return t


def _values(values: Any) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in values.items() if v != []) or "-"


# -- policies -------------------------------------------------------------------------------

policy_app = typer.Typer(help="Promotion policies: set, show, history, check.", no_args_is_help=True)


@policy_app.command("set")
def policy_set(
    ctx: typer.Context,
    name: NameArg,
    file: Annotated[Path, typer.Argument(help="YAML or JSON policy document ('-' reads stdin).", allow_dash=True)],
    reason: ReasonOpt = "",
    json_: JsonOpt = False,
) -> None:
    """Save FILE as the next revision of NAME's promotion policy (refused, with the line, if invalid)."""
    if str(file) == "-":
        document = sys.stdin.read()
    else:
        try:
            document = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
    policy = registry(ctx).set_policy(name, document, reason=reason)
    if json_:
        emit_json(policy)
        return
    out().print(f"policy of {escape(name)}: revision {policy.revision} ({policy.digest.short})")
    out().print(f"try it: mk policy check {escape(name)}@VERSION")


@policy_app.command("show")
def policy_show(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """The current policy document of NAME."""
    policy = registry(ctx).policy(name)
    if json_:
        emit_json(policy)
        return
    if policy is None:
        out().print(f"{escape(name)} has no promotion policy: mk policy set {escape(name)} policy.yaml")
        return
    out().print(f"# revision {policy.revision} by {escape(policy.created_by)} at {when(policy.created_at)}")
    out().print(escape(policy.document.rstrip("\n")))


@policy_app.command("history")
def policy_history(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """Every revision of NAME's policy."""
    revisions = registry(ctx).policy_history(name)
    if json_:
        emit_json(revisions)
        return
    t = table("revision", "when", "by", "digest", "reason", right=("revision",), wrap=("reason",))
    for p in revisions:
        t.add_row(str(p.revision), when(p.created_at), escape(p.created_by), p.digest.short, escape(p.reason))
    out().print(t)


@policy_app.command("check")
def policy_check(ctx: typer.Context, ref: RefArg, json_: JsonOpt = False) -> None:
    """What the policy would decide now about promoting REF (changes nothing; exit 4 if refused)."""
    report = registry(ctx).check_policy(ref)
    if json_:
        emit_json(report)
    else:
        out().print(report_table(report))
        out().print("[green]would pass[/]" if report.passed else "[red]would be refused[/]")
    if not report.passed:
        raise typer.Exit(PromotionRefused.exit_code)


# -- approvals ------------------------------------------------------------------------------


class _ApproveGroup(TyperGroup):
    """``mk approve REF`` approves; ``mk approve request|pending|log ...`` are subcommands."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["grant", *args]
        return super().parse_args(ctx, args)


approve_app = typer.Typer(
    cls=_ApproveGroup,
    help="Four-eyes approvals: mk approve REF, mk approve request REF, mk approve pending, mk reject REF.",
    no_args_is_help=True,
)


@approve_app.command("grant", hidden=True)
def approve_grant(ctx: typer.Context, ref: RefArg, comment: CommentOpt = "", json_: JsonOpt = False) -> None:
    """Approve REF as the current user (not its author; a listed approver when the policy names them)."""
    _decided(registry(ctx).approve(ref, comment=comment), json_)


@approve_app.command("request")
def approve_request(ctx: typer.Context, ref: RefArg, comment: CommentOpt = "", json_: JsonOpt = False) -> None:
    """Ask for approvals of REF (starts a new round)."""
    _decided(registry(ctx).request_approval(ref, comment=comment), json_)


@approve_app.command("pending")
def approve_pending(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this artifact.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Open approval requests still short of the approvals their policy needs."""
    pending = registry(ctx).pending_approvals(name)
    if json_:
        emit_json(pending)
        return
    if not pending:
        out().print("no pending approvals")
        return
    t = table("version", "requested", "by", "approvals", "approvers", "comment", wrap=("comment",))
    for p in pending:
        t.add_row(
            escape(str(p.version)),
            when(p.requested_at),
            escape(p.requested_by),
            f"{len(p.approved_by)}/{p.required}" + (f" ({escape(', '.join(p.approved_by))})" if p.approved_by else ""),
            escape(", ".join(p.approvers) or "anyone but the author"),
            escape(p.comment),
        )
    out().print(t)


@approve_app.command("log")
def approve_log(ctx: typer.Context, ref: RefArg, json_: JsonOpt = False) -> None:
    """Every request, approval and rejection of REF."""
    found = registry(ctx).approvals(ref)
    if json_:
        emit_json(found)
        return
    t = table("when", "decision", "by", "comment", wrap=("comment",))
    for a in found:
        t.add_row(when(a.at), a.decision, escape(a.actor), escape(a.comment))
    out().print(t)


def reject(
    ctx: typer.Context,
    ref: RefArg,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (required).")],
    json_: JsonOpt = False,
) -> None:
    """Reject REF: its promotion is refused until a new approval request."""
    _decided(registry(ctx).reject(ref, comment=comment), json_)


def _decided(a: Approval, json_: bool) -> None:
    if json_:
        emit_json(a)
        return
    words = {"request": "approval requested for", "approve": "approved", "reject": "rejected"}
    out().print(f"{escape(a.actor)} {words[a.decision]} {escape(str(a.version))}")
    if a.decision == "request":
        out().print(f"approvers run: mk approve {escape(str(a.version))} --comment ...")
