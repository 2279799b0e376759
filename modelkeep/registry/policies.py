"""Promotion policies: versioned YAML/JSON documents per artifact, and their verdict on a candidate.

A policy document (every key optional; unknown keys are refused)::

    metrics: [accuracy, latency_p95_ms]   # metric names declared known (see below)
    rules:                                # registry/rules.py: the expression language
      - accuracy >= production.accuracy - 0.005
      - latency_p95_ms <= 1.10 * production.latency_p95_ms
    required_metrics: [accuracy, latency_p95_ms]
    require_trained_on: true              # a trained_on lineage edge is recorded
    require_clean_git: true               # provenance has git with dirty == false
    required_approvals: 2                 # four-eyes: approvals by others than the author
    approvers: [alice, bob]               # who may approve (absent: anyone but the author)
    require_signature:                    # a valid Ed25519 signature by one of these public keys
      - |
        -----BEGIN PUBLIC KEY-----
        ...
        -----END PUBLIC KEY-----
    require_evaluation: true              # an evaluation of the candidate on the dataset version
                                          # production's newest evaluation ran on (mk evaluate)
    slice_gap:                            # on that dataset: the candidate's gap between slices
      metric: accuracy                    # (slice_gap.<metric>) at most production's + tolerance
      tolerance: 0.01
    refuse_impact_flags: true             # no impact-… tag (mk impact --flag) on the candidate
    previous_production: archive          # or keep: what happens to the version replaced
    transitions:                          # allowed stage changes (default shown)
      none: [staging]
      staging: [validation]
      validation: [production]
      production: [archived]

A metric is *known* when some version of the artifact has it or the policy
lists it under ``metrics:``. A document naming an unknown metric (a typo, most
often) is refused when saved, with the line; so is one that does not parse.
Saving stores a new revision (the text as written) and appends a
``policy.set`` audit event; saving the text of the current revision changes
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import yaml
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from modelkeep.db.models import ArtifactRow, PolicyRow, VersionRow
from modelkeep.errors import InvalidPolicy
from modelkeep.registry import audit
from modelkeep.registry.evidence import IMPACT_TAG_PREFIX, Evaluation
from modelkeep.registry.rules import Missing, Rule, parse_rule
from modelkeep.registry.types import EdgeType, Policy, PolicyReport, RuleResult, Stage, Version
from modelkeep.store.digest import Digest, hash_bytes

__all__ = [
    "DEFAULT",
    "DEFAULT_TRANSITIONS",
    "PolicySpec",
    "current",
    "evaluate",
    "history",
    "parse",
    "save",
    "spec_of",
]

DEFAULT_TRANSITIONS: Mapping[Stage, frozenset[Stage]] = {
    Stage.NONE: frozenset({Stage.STAGING}),
    Stage.STAGING: frozenset({Stage.VALIDATION}),
    Stage.VALIDATION: frozenset({Stage.PRODUCTION}),
    Stage.PRODUCTION: frozenset({Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset(),
}
MAX_DOCUMENT = 64 * 1024


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A parsed, validated policy document."""

    rules: tuple[Rule, ...] = ()
    metrics: frozenset[str] = frozenset()
    required_metrics: tuple[str, ...] = ()
    require_trained_on: bool = False
    require_clean_git: bool = False
    required_approvals: int = 0
    approvers: tuple[str, ...] = ()
    signed_by: tuple[str, ...] = ()  # public key PEMs (require_signature)
    require_evaluation: bool = False
    slice_gap: tuple[str, float] | None = None  # (metric, tolerance)
    refuse_impact_flags: bool = False
    previous_production: str = "archive"
    transitions: Mapping[Stage, frozenset[Stage]] = field(default_factory=lambda: DEFAULT_TRANSITIONS)
    lines: Mapping[str, int] = field(default_factory=dict)  # metric -> first line naming it

    def referenced_metrics(self) -> set[str]:
        names = set(self.required_metrics)
        for r in self.rules:
            names |= r.metrics
        return names


DEFAULT = PolicySpec()


# -- parsing ---------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def parse(document: str) -> PolicySpec:
    """Parse and validate a YAML or JSON policy document. Raises InvalidPolicy with the line."""
    if not isinstance(document, str):
        raise InvalidPolicy("a policy document must be text (YAML or JSON)")
    if len(document) > MAX_DOCUMENT:
        raise InvalidPolicy(f"a policy document may have at most {MAX_DOCUMENT} characters")
    try:
        root = yaml.compose(document, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidPolicy(f"line {line}: the policy does not parse: {problem}", line=line) from None
    if root is None:
        return DEFAULT
    if not isinstance(root, yaml.MappingNode):
        raise InvalidPolicy(f"line {_line(root)}: a policy is a mapping of keys (rules:, approvers: …)", line=_line(root))
    fields: dict[str, Any] = {}
    lines: dict[str, int] = {}
    seen: set[str] = set()
    for key_node, value_node in root.value:
        key = key_node.value
        line = _line(key_node)
        if key in seen:
            raise InvalidPolicy(f"line {line}: {key!r} appears twice", line=line)
        seen.add(key)
        handler = _KEYS.get(key)
        if handler is None:
            raise InvalidPolicy(f"line {line}: unknown policy key {key!r} (known: {', '.join(_KEYS)})", line=line)
        handler(value_node, fields, lines)
    return PolicySpec(**fields, lines=lines)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _strings(node: yaml.Node, key: str) -> list[tuple[str, int]]:
    if not isinstance(node, yaml.SequenceNode):
        raise InvalidPolicy(f"line {_line(node)}: {key} must be a list", line=_line(node))
    out = []
    for item in node.value:
        value = _construct(item)
        if not isinstance(value, str) or not value:
            raise InvalidPolicy(f"line {_line(item)}: {key} holds strings, got {value!r}", line=_line(item))
        out.append((value, _line(item)))
    return out


def _flag(node: yaml.Node, key: str) -> bool:
    value = _construct(node)
    if not isinstance(value, bool):
        raise InvalidPolicy(f"line {_line(node)}: {key} must be true or false, got {value!r}", line=_line(node))
    return value


def _metric_names(node: yaml.Node, key: str, lines: dict[str, int]) -> list[str]:
    names = []
    for name, line in _strings(node, key):
        if not name.isidentifier():
            raise InvalidPolicy(f"line {line}: {name!r} is not a metric name (letters, digits, _)", line=line)
        lines.setdefault(name, line)
        names.append(name)
    return names


def _k_metrics(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    fields["metrics"] = frozenset(_metric_names(node, "metrics", {}))


def _k_rules(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    rules = []
    for text, line in _strings(node, "rules"):
        rule = parse_rule(text, line=line)
        for m in rule.metrics:
            lines.setdefault(m, line)
        rules.append(rule)
    fields["rules"] = tuple(rules)


def _k_required_metrics(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    fields["required_metrics"] = tuple(_metric_names(node, "required_metrics", lines))


def _k_trained_on(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    fields["require_trained_on"] = _flag(node, "require_trained_on")


def _k_clean_git(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    fields["require_clean_git"] = _flag(node, "require_clean_git")


def _k_required_approvals(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    value = _construct(node)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidPolicy(
            f"line {_line(node)}: required_approvals must be a whole number >= 0, got {value!r}", line=_line(node)
        )
    fields["required_approvals"] = value


def _k_approvers(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    fields["approvers"] = tuple(dict.fromkeys(name for name, _ in _strings(node, "approvers")))


def _k_signature(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    from modelkeep.errors import InvalidKey
    from modelkeep.registry.signatures import load_public_key

    keys = []
    for pem, line in _strings(node, "require_signature"):
        try:
            load_public_key(pem.encode())
        except InvalidKey as exc:
            raise InvalidPolicy(f"line {line}: require_signature holds public key PEMs: {exc}", line=line) from None
        keys.append(pem)
    if not keys:
        raise InvalidPolicy(f"line {_line(node)}: require_signature needs at least one public key", line=_line(node))
    fields["signed_by"] = tuple(keys)


def _k_evaluation(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    fields["require_evaluation"] = _flag(node, "require_evaluation")


def _k_slice_gap(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    value = _construct(node)
    line = _line(node)
    if not isinstance(value, dict) or set(value) - {"metric", "tolerance"} or "metric" not in value:
        raise InvalidPolicy(f"line {line}: slice_gap is a mapping with metric and, optionally, tolerance", line=line)
    metric, tolerance = value["metric"], value.get("tolerance", 0.0)
    if not isinstance(metric, str) or not metric.isidentifier():
        raise InvalidPolicy(f"line {line}: slice_gap.metric must be a metric name, got {metric!r}", line=line)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not math.isfinite(tolerance) or tolerance < 0:
        raise InvalidPolicy(f"line {line}: slice_gap.tolerance must be a number >= 0, got {tolerance!r}", line=line)
    fields["slice_gap"] = (metric, float(tolerance))


def _k_impact(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    fields["refuse_impact_flags"] = _flag(node, "refuse_impact_flags")


def _k_previous(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    value = _construct(node)
    if value not in ("archive", "keep"):
        raise InvalidPolicy(
            f"line {_line(node)}: previous_production must be 'archive' or 'keep', got {value!r}", line=_line(node)
        )
    fields["previous_production"] = value


def _k_transitions(node: yaml.Node, fields: dict[str, Any], lines: dict[str, int]) -> None:
    if not isinstance(node, yaml.MappingNode):
        raise InvalidPolicy(f"line {_line(node)}: transitions maps a stage to the stages it may go to", line=_line(node))
    table: dict[Stage, frozenset[Stage]] = {s: frozenset() for s in Stage}
    for key_node, value_node in node.value:
        source = _stage(key_node.value, _line(key_node))
        table[source] = frozenset(_stage(name, line) for name, line in _strings(value_node, f"transitions.{source}"))
    fields["transitions"] = table


def _stage(name: str, line: int) -> Stage:
    try:
        return Stage(name)
    except ValueError:
        raise InvalidPolicy(
            f"line {line}: unknown stage {name!r} ({', '.join(s.value for s in Stage)})", line=line
        ) from None


_KEYS = {
    "metrics": _k_metrics,
    "rules": _k_rules,
    "required_metrics": _k_required_metrics,
    "require_trained_on": _k_trained_on,
    "require_clean_git": _k_clean_git,
    "required_approvals": _k_required_approvals,
    "approvers": _k_approvers,
    "require_signature": _k_signature,
    "require_evaluation": _k_evaluation,
    "slice_gap": _k_slice_gap,
    "refuse_impact_flags": _k_impact,
    "previous_production": _k_previous,
    "transitions": _k_transitions,
}


def check_known(spec: PolicySpec, known: set[str], artifact: str) -> None:
    """Refuse a policy naming a metric that no version of ``artifact`` has and ``metrics:`` does not list."""
    unknown = sorted(spec.referenced_metrics() - known - spec.metrics, key=lambda m: (spec.lines.get(m, 0), m))
    if unknown:
        name = unknown[0]
        line = spec.lines.get(name)
        have = ", ".join(sorted(known)) or "none yet"
        raise InvalidPolicy(
            f"line {line}: unknown metric {name!r}: no version of {artifact!r} has it (metrics: {have})",
            line=line,
            hint="fix the name, or declare it under 'metrics:' when versions will report it later",
        )


# -- storage -----------------------------------------------------------------------------------

_LATEST = (
    select(PolicyRow).where(PolicyRow.artifact_id == bindparam("aid")).order_by(PolicyRow.revision.desc()).limit(1)
)


def _record(row: PolicyRow, name: str) -> Policy:
    return Policy(name, row.revision, row.document, Digest.parse(row.digest), row.created_at, row.created_by, row.reason)


def current(session: Session, art: ArtifactRow) -> Policy | None:
    row = session.scalars(_LATEST, {"aid": art.id}).one_or_none()
    return _record(row, art.name) if row is not None else None


def spec_of(session: Session, art_id: int) -> tuple[int | None, PolicySpec]:
    """(revision, parsed spec) of the newest policy of an artifact; (None, DEFAULT) without one."""
    row = session.scalars(_LATEST, {"aid": art_id}).one_or_none()
    if row is None:
        return None, DEFAULT
    return row.revision, parse(row.document)


def history(session: Session, art: ArtifactRow) -> list[Policy]:
    rows = session.scalars(select(PolicyRow).where(PolicyRow.artifact_id == art.id).order_by(PolicyRow.revision))
    return [_record(r, art.name) for r in rows]


def known_metrics(session: Session, art_id: int) -> set[str]:
    known: set[str] = set()
    for metrics in session.scalars(select(VersionRow.metrics).where(VersionRow.artifact_id == art_id)):
        known.update(metrics or ())
    return known


def save(session: Session, art: ArtifactRow, document: str, *, actor: str, at: datetime, reason: str) -> Policy:
    """Validate and store ``document`` as the next revision (the artifact row must be locked)."""
    spec = parse(document)
    check_known(spec, known_metrics(session, art.id), art.name)
    latest = session.scalars(_LATEST, {"aid": art.id}).one_or_none()
    if latest is not None and latest.document == document:
        return _record(latest, art.name)
    revision = (latest.revision if latest is not None else 0) + 1
    digest = str(hash_bytes(document.encode()))
    row = PolicyRow(
        artifact_id=art.id,
        revision=revision,
        document=document,
        digest=digest,
        created_at=at,
        created_by=actor,
        reason=reason,
    )
    session.add(row)
    session.flush()  # a concurrent save of the same revision fails here and is retried
    audit.record(
        session,
        action="policy.set",
        actor=actor,
        artifact=art.name,
        subject=art.name,
        reason=reason,
        data={"revision": revision, "digest": digest},
        at=at,
    )
    return _record(row, art.name)


# -- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApprovalState:
    """The current approval round of a candidate (``registry/approvals.py``)."""

    approved_by: tuple[str, ...] = ()
    rejected_by: tuple[tuple[str, str], ...] = ()  # (actor, comment)


def evaluate(
    spec: PolicySpec,
    revision: int | None,
    candidate: Version,
    production: Version | None,
    approvals: ApprovalState,
    signed: bool | None = None,
    evaluations: tuple[list[Evaluation], list[Evaluation]] | None = None,
) -> PolicyReport:
    """Every rule of ``spec`` on ``candidate`` against ``production``; never raises for a failing rule.

    ``signed``: whether one of ``spec.signed_by`` signed the candidate (checked by the caller,
    inside its transaction: ``signatures.has_valid_signature``). ``evaluations``: the
    evaluations of candidate and production (``evidence.evaluations_of``), read by the
    caller when the policy asks for them.
    """
    results: list[RuleResult] = []
    cm, pm = candidate.metrics, production.metrics if production is not None else None
    for name in spec.required_metrics:
        value = cm.get(name)
        ok = name in cm and _number(value)
        results.append(
            RuleResult(
                f"metric {name} recorded",
                "pass" if ok else "fail",
                {name: value},
                {name: pm.get(name)} if pm is not None else {},
                detail="" if ok else (f"{candidate.ref} has no metric {name!r}" if name not in cm else f"{name} is not a number"),
            )
        )
    for rule in spec.rules:
        results.append(_rule(rule, candidate, production))
    if spec.require_trained_on:
        datasets = [str(e.target) for e in candidate.edges if e.type is EdgeType.TRAINED_ON]
        results.append(
            RuleResult(
                "trained_on recorded",
                "pass" if datasets else "fail",
                {"trained_on": datasets},
                {},
                detail="" if datasets else f"{candidate.ref} has no trained_on edge (push --trained-on DATASET@VERSION)",
            )
        )
    if spec.require_clean_git:
        results.append(_clean_git(candidate))
    if spec.required_approvals:
        results.append(_approvals(spec, candidate, approvals))
    if spec.signed_by:
        n = len(spec.signed_by)
        results.append(
            RuleResult(
                "signed by a listed key",
                "pass" if signed else "fail",
                {"signed": bool(signed)},
                {},
                detail="" if signed else f"no valid signature by any of the {n} listed key{'s' if n != 1 else ''} (mk sign)",
            )
        )
    if spec.require_evaluation or spec.slice_gap is not None:
        results.extend(_evaluation_rules(spec, candidate, production, evaluations or ([], [])))
    if spec.refuse_impact_flags:
        flags = sorted(k for k in candidate.tags if k.startswith(IMPACT_TAG_PREFIX))
        results.append(
            RuleResult(
                "no impact flag",
                "fail" if flags else "pass",
                {"impact_flags": flags},
                {},
                detail=f"{candidate.ref} is flagged by impact analysis: {', '.join(flags)}" if flags else "",
            )
        )
    return PolicyReport(
        candidate.artifact,
        candidate.version,
        production.version if production is not None else None,
        revision,
        tuple(results),
    )


def _evaluation_rules(
    spec: PolicySpec, candidate: Version, production: Version | None, evals: tuple[list[Evaluation], list[Evaluation]]
) -> list[RuleResult]:
    cand_evals, prod_evals = evals
    name = "evaluated on production's dataset"
    if production is None:
        return [RuleResult(name, "skip", {}, {}, detail="no production version yet: nothing to compare with")]
    if not prod_evals:
        return [RuleResult(name, "fail", {}, {"evaluation": None},
                           detail=f"production {production.ref} has no evaluation to compare with (mk evaluate)")]
    prod = prod_evals[0]
    shared = next((e for e in cand_evals if e.dataset is not None and e.dataset == prod.dataset), None)
    pvals = {"evaluation": prod.ref, "dataset": prod.dataset}
    if shared is None:
        return [RuleResult(name, "fail", {"evaluations": [e.ref for e in cand_evals]}, pvals,
                           detail=f"{candidate.ref} has no evaluation on {prod.dataset} "
                                  f"(mk evaluate {candidate.ref} --on {prod.dataset} ...)")]
    out = [RuleResult(name, "pass", {"evaluation": shared.ref, "dataset": shared.dataset}, pvals)]
    if spec.slice_gap is not None:
        metric, tol = spec.slice_gap
        key = f"slice_gap.{metric}"
        gc, gp = shared.metrics.get(key), prod.metrics.get(key)
        label = f"{key} <= production.{key} + {tol:g}"
        if not _number(gc) or not _number(gp):
            where = shared.ref if not _number(gc) else prod.ref
            out.append(RuleResult(label, "fail", {key: gc}, {key: gp},
                                  detail=f"{where} records no {key} (evaluate with --slice-by)"))
        else:
            ok = float(gc) <= float(gp) + tol
            out.append(RuleResult(label, "pass" if ok else "fail", {key: gc}, {key: gp}, float(gc), float(gp) + tol,
                                  f"{_fmt(float(gc))} <= {_fmt(float(gp) + tol)}"))
    return out


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _rule(rule: Rule, candidate: Version, production: Version | None) -> RuleResult:
    cm = candidate.metrics
    pm = production.metrics if production is not None else None
    cvals = {m: cm.get(m) for m in sorted(rule.candidate_metrics)}
    pvals = {m: pm.get(m) for m in sorted(rule.production_metrics)} if pm is not None else {}
    env = (cm, pm)
    try:
        ok = rule.test(env)
        left = right = None
        if rule.sides is not None:
            left, right = rule.sides[0](env), rule.sides[1](env)
    except Missing as miss:
        if miss.why == "no production version":
            return RuleResult(rule.text, "skip", cvals, pvals, detail="no production version yet: nothing to compare with")
        who = candidate.ref if miss.side == "candidate" else f"production {production.ref}"  # type: ignore[union-attr]
        what = f"has no metric {miss.metric!r}" if miss.why == "missing" else f"metric {miss.metric!r} is {miss.why}"
        return RuleResult(rule.text, "fail", cvals, pvals, detail=f"{who} {what}")
    except ZeroDivisionError:
        return RuleResult(rule.text, "fail", cvals, pvals, detail="division by zero")
    detail = f"{_fmt(left)} {rule.op} {_fmt(right)}" if left is not None else ""
    return RuleResult(rule.text, "pass" if ok else "fail", cvals, pvals, left, right, detail)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _clean_git(candidate: Version) -> RuleResult:
    git = candidate.provenance.get("git") if isinstance(candidate.provenance, Mapping) else None
    if not isinstance(git, Mapping):
        return RuleResult("clean git state", "fail", {"git": None}, {}, detail="no git provenance was captured at push")
    dirty = git.get("dirty")
    commit = str(git.get("commit") or "")[:12]
    if dirty is False:
        return RuleResult("clean git state", "pass", {"commit": commit, "dirty": False}, {})
    return RuleResult(
        "clean git state", "fail", {"commit": commit, "dirty": dirty}, {}, detail=f"uncommitted changes at push (commit {commit})"
    )


def _approvals(spec: PolicySpec, candidate: Version, state: ApprovalState) -> RuleResult:
    valid = [a for a in state.approved_by if a != candidate.author and (not spec.approvers or a in spec.approvers)]
    name = f"{spec.required_approvals} approval{'s' if spec.required_approvals != 1 else ''}"
    values = {"approvals": len(valid), "approved_by": valid}
    if state.rejected_by:
        who, comment = state.rejected_by[-1]
        return RuleResult(name, "fail", values, {}, detail=f"rejected by {who}" + (f": {comment}" if comment else ""))
    ok = len(valid) >= spec.required_approvals
    detail = f"{len(valid)} of {spec.required_approvals}" + (f" ({', '.join(valid)})" if valid else "")
    if not ok:
        detail += f"; mk approve request {candidate.ref}"
    return RuleResult(name, "pass" if ok else "fail", values, {}, detail=detail)

