"""Stages, promotion policies, approvals and rollback, through the embedded registry on every database."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelkeep.errors import (
    ApprovalNotAllowed,
    ArtifactNotFound,
    ConflictError,
    InvalidInput,
    InvalidPolicy,
    PromotionRefused,
    TransitionNotAllowed,
)
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.types import Stage

from .conftest import MakeTree

POLICY = """\
rules:
  - accuracy >= production.accuracy - 0.005
  - latency_p95_ms <= 1.10 * production.latency_p95_ms
required_metrics: [accuracy]
"""


def _version(registry: EmbeddedRegistry, make_tree: MakeTree, n: int, **metrics: float) -> str:
    src = make_tree({"w.bin": f"weights {n}"}, name=f"v{n}")
    return registry.push(src, "fraud", metrics=metrics).version


def _to_validation(registry: EmbeddedRegistry, version: str) -> None:
    registry.transition(f"fraud@{version}", "staging", reason="candidate")
    registry.transition(f"fraud@{version}", "validation", reason="offline eval")


@pytest.fixture
def fraud(registry: EmbeddedRegistry, make_tree: MakeTree) -> EmbeddedRegistry:
    """fraud 1.0.0 in production (no policy yet), 1.1.0 and 1.2.0 in validation."""
    _version(registry, make_tree, 0, accuracy=0.90, latency_p95_ms=20.0)
    _version(registry, make_tree, 1, accuracy=0.93, latency_p95_ms=21.0)
    _version(registry, make_tree, 2, accuracy=0.80, latency_p95_ms=50.0)
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        _to_validation(registry, v)
    registry.promote("fraud@1.0.0", reason="first model")
    return registry


def test_default_transitions_are_the_linear_lifecycle(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _version(registry, make_tree, 0, accuracy=0.9)
    with pytest.raises(TransitionNotAllowed, match="none → production is not allowed"):
        registry.promote("fraud@1.0.0")
    t = registry.transition("fraud@1.0.0", "staging", reason="try it")
    assert (t.previous_stage, t.stage, t.actor, t.reason) == (Stage.NONE, Stage.STAGING, "tester", "try it")
    with pytest.raises(ConflictError, match="already in staging"):
        registry.transition("fraud@1.0.0", Stage.STAGING)
    with pytest.raises(InvalidInput, match="unknown stage"):
        registry.transition("fraud@1.0.0", "shipping")
    assert registry.stages("fraud") == {"1.0.0": Stage.STAGING}
    events = [e for e in registry.history("fraud") if e.action == "stage.change"]
    assert events[-1].data == {"version": "1.0.0", "from": "none", "to": "staging"}
    assert events[-1].reason == "try it"


def test_promotion_moves_the_alias_and_archives_the_previous(fraud: EmbeddedRegistry) -> None:
    fraud.set_policy("fraud", POLICY, reason="gates")
    t = fraud.promote("fraud@1.1.0", reason="better")
    assert t.stage is Stage.PRODUCTION and t.archived == ("1.0.0",)
    assert t.alias is not None and (t.alias.version, t.alias.previous) == ("1.1.0", "1.0.0")
    assert t.report is not None and t.report.passed and t.report.production == "1.0.0"
    assert fraud.get("fraud@production").version == "1.1.0"
    assert fraud.stages("fraud") == {"1.0.0": Stage.ARCHIVED, "1.1.0": Stage.PRODUCTION, "1.2.0": Stage.VALIDATION}
    acc = t.report.results[1]
    assert (acc.rule, acc.status, acc.candidate, acc.production) == (
        "accuracy >= production.accuracy - 0.005",
        "pass",
        {"accuracy": 0.93},
        {"accuracy": 0.9},
    )
    assert acc.left == pytest.approx(0.93) and acc.right == pytest.approx(0.895)


def test_keep_previous_production_when_the_policy_says_so(fraud: EmbeddedRegistry) -> None:
    fraud.set_policy("fraud", "previous_production: keep\n")
    t = fraud.promote("fraud@1.1.0")
    assert t.archived == ()
    assert fraud.stages("fraud")["1.0.0"] is Stage.PRODUCTION


def test_a_refused_promotion_reports_every_rule_and_changes_nothing(fraud: EmbeddedRegistry) -> None:
    fraud.set_policy("fraud", POLICY)
    before = len(fraud.audit_log())
    with pytest.raises(PromotionRefused) as info:
        fraud.promote("fraud@1.2.0", reason="please")
    report = info.value.report
    assert not report.passed and report.candidate == "1.2.0" and report.production == "1.0.0"
    assert [(r.rule, r.status) for r in report.results] == [
        ("metric accuracy recorded", "pass"),
        ("accuracy >= production.accuracy - 0.005", "fail"),
        ("latency_p95_ms <= 1.10 * production.latency_p95_ms", "fail"),
    ]
    lat = report.results[2]
    assert lat.candidate == {"latency_p95_ms": 50.0} and lat.production == {"latency_p95_ms": 20.0}
    assert lat.left == 50.0 and lat.right == pytest.approx(22.0) and lat.detail == "50 <= 22"
    assert "accuracy >= production.accuracy - 0.005" in str(info.value)
    assert fraud.get("fraud@production").version == "1.0.0"
    assert fraud.stages("fraud")["1.2.0"] is Stage.VALIDATION
    assert len(fraud.audit_log()) == before
    assert [m.version for m in fraud.alias_history("fraud", "production")] == ["1.0.0"]


def test_a_metric_missing_on_production_fails_and_says_so(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _version(registry, make_tree, 0, accuracy=0.9)
    _version(registry, make_tree, 1, accuracy=0.95, latency_p95_ms=10.0)
    for v in ("1.0.0", "1.1.0"):
        _to_validation(registry, v)
    registry.promote("fraud@1.0.0")
    registry.set_policy("fraud", POLICY)
    with pytest.raises(PromotionRefused) as info:
        registry.promote("fraud@1.1.0")
    lat = info.value.report.results[2]
    assert lat.status == "fail"
    assert lat.detail == "production fraud@1.0.0 has no metric 'latency_p95_ms'"
    assert lat.production == {"latency_p95_ms": None}


def test_the_first_promotion_skips_rules_that_need_production(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _version(registry, make_tree, 0, accuracy=0.9, latency_p95_ms=20.0)
    registry.set_policy("fraud", POLICY)
    _to_validation(registry, "1.0.0")
    t = registry.promote("fraud@1.0.0")
    assert [r.status for r in t.report.results] == ["pass", "skip", "skip"]
    assert "no production version yet" in t.report.results[1].detail


def test_force_overrides_and_is_recorded(fraud: EmbeddedRegistry) -> None:
    fraud.set_policy("fraud", POLICY)
    with pytest.raises(InvalidInput, match="needs a reason"):
        fraud.promote("fraud@1.2.0", force=True)
    t = fraud.promote("fraud@1.2.0", force=True, reason="hotfix for incident 42")
    assert t.forced and not t.report.passed
    assert fraud.get("fraud@production").version == "1.2.0"
    override = [e for e in fraud.history("fraud") if e.action == "promotion.override"]
    assert len(override) == 1 and override[0].reason == "hotfix for incident 42"
    assert override[0].data["failed"] == [
        "accuracy >= production.accuracy - 0.005",
        "latency_p95_ms <= 1.10 * production.latency_p95_ms",
    ]


def test_policy_documents_are_checked_when_saved(fraud: EmbeddedRegistry) -> None:
    with pytest.raises(InvalidPolicy, match="line 2: unknown metric 'acuracy'") as info:
        fraud.set_policy("fraud", "rules:\n  - acuracy >= 0.9\n")
    assert info.value.line == 2
    with pytest.raises(InvalidPolicy, match="line 3: cannot parse rule"):
        fraud.set_policy("fraud", "rules:\n  - accuracy >= 0.9\n  - accuracy >=\n")
    with pytest.raises(InvalidPolicy, match="line 2: not allowed"):
        fraud.set_policy("fraud", "rules:\n  - accuracy >= __import__('os').getpid()\n")
    with pytest.raises(InvalidPolicy, match="does not parse"):
        fraud.set_policy("fraud", "rules: [accuracy >= 0.9\n")
    with pytest.raises(InvalidPolicy, match="line 1: unknown policy key 'rulez'"):
        fraud.set_policy("fraud", "rulez: []\n")
    assert fraud.policy("fraud") is None and fraud.policy_history("fraud") == []
    # declared metrics are known before any version reports them
    p = fraud.set_policy("fraud", "metrics: [f1]\nrules:\n  - f1 >= 0.5\n", reason="f1 from 2.0 on")
    assert p.revision == 1


def test_policies_have_a_history_and_json_works(fraud: EmbeddedRegistry) -> None:
    p1 = fraud.set_policy("fraud", POLICY, reason="first")
    assert fraud.set_policy("fraud", POLICY).revision == 1  # same text: no new revision
    p2 = fraud.set_policy("fraud", '{"rules": ["accuracy >= 0.5"], "required_approvals": 0}', reason="json")
    assert (p1.revision, p2.revision) == (1, 2)
    assert [p.reason for p in fraud.policy_history("fraud")] == ["first", "json"]
    assert fraud.policy("fraud").document.startswith("{")
    assert [e.data["revision"] for e in fraud.history("fraud") if e.action == "policy.set"] == [1, 2]
    assert fraud.check_policy("fraud@1.2.0").passed


def test_production_alias_is_governed_once_a_policy_exists(fraud: EmbeddedRegistry) -> None:
    fraud.set_alias("fraud", "staging", "1.1.0")  # other aliases move freely
    fraud.set_policy("fraud", POLICY)
    with pytest.raises(TransitionNotAllowed, match="governed by its promotion policy"):
        fraud.set_alias("fraud", "production", "1.2.0")
    with pytest.raises(TransitionNotAllowed):
        fraud.remove_alias("fraud", "production")
    assert fraud.get("fraud@production").version == "1.0.0"


def test_four_eyes_approvals(fraud: EmbeddedRegistry, db_url: str) -> None:
    fraud.set_policy("fraud", POLICY + "required_approvals: 2\napprovers: [alice, bob, carol]\n")
    with pytest.raises(PromotionRefused) as info:
        fraud.promote("fraud@1.1.0")
    assert info.value.report.results[-1].detail.startswith("0 of 2")
    fraud.request_approval("fraud@1.1.0", comment="beats 1.0.0 on holdout")
    with pytest.raises(ApprovalNotAllowed, match="author"):
        fraud.approve("fraud@1.1.0")  # the author ("tester") may not approve
    alice, bob, mallory = (fraud.as_actor(u) for u in ("alice", "bob", "mallory"))
    with pytest.raises(ApprovalNotAllowed, match="alice, bob, carol"):
        mallory.approve("fraud@1.1.0")
    pending = fraud.pending_approvals()
    assert [(str(p.version), p.requested_by, p.approved_by, p.required) for p in pending] == [
        ("fraud@1.1.0", "tester", (), 2)
    ]
    alice.approve("fraud@1.1.0", comment="looks good")
    with pytest.raises(ConflictError, match="already approved"):
        alice.approve("fraud@1.1.0")
    assert fraud.pending_approvals("fraud")[0].approved_by == ("alice",)
    with pytest.raises(PromotionRefused):
        fraud.promote("fraud@1.1.0")
    bob.approve("fraud@1.1.0")
    assert fraud.pending_approvals() == []
    t = fraud.promote("fraud@1.1.0", reason="approved")
    assert t.report.results[-1].status == "pass" and "alice, bob" in t.report.results[-1].detail
    assert [a.decision for a in fraud.approvals("fraud@1.1.0")] == ["request", "approve", "approve"]
    actions = [e.action for e in fraud.history("fraud") if e.action.startswith("approval.")]
    assert actions == ["approval.request", "approval.approve", "approval.approve"]


def test_a_rejection_blocks_until_a_new_request(fraud: EmbeddedRegistry) -> None:
    fraud.set_policy("fraud", "required_approvals: 1\n")
    alice = fraud.as_actor("alice")
    fraud.request_approval("fraud@1.1.0")
    with pytest.raises(InvalidInput, match="needs a comment"):
        alice.reject("fraud@1.1.0", comment="")
    alice.reject("fraud@1.1.0", comment="latency regression on EU traffic")
    assert fraud.pending_approvals() == []
    with pytest.raises(PromotionRefused) as info:
        fraud.promote("fraud@1.1.0")
    assert info.value.report.results[-1].detail == "rejected by alice: latency regression on EU traffic"
    fraud.request_approval("fraud@1.1.0", comment="fixed")
    alice.approve("fraud@1.1.0")
    assert fraud.promote("fraud@1.1.0").stage is Stage.PRODUCTION


def test_rollback_returns_to_the_previous_production_version(fraud: EmbeddedRegistry) -> None:
    fraud.promote("fraud@1.1.0")
    fraud.promote("fraud@1.2.0")
    start = time.perf_counter()
    t = fraud.rollback("fraud", reason="error rate up")
    assert time.perf_counter() - start < 1.0
    assert t.rollback and t.version.version == "1.1.0" and t.archived == ("1.2.0",)
    assert t.alias.previous == "1.2.0"
    assert fraud.get("fraud@production").version == "1.1.0"
    assert fraud.stages("fraud") == {"1.0.0": Stage.ARCHIVED, "1.1.0": Stage.PRODUCTION, "1.2.0": Stage.ARCHIVED}
    # again: further back, not forward to the version just rolled back from
    assert fraud.rollback("fraud", reason="still bad").version.version == "1.0.0"
    with pytest.raises(Exception, match="no earlier production version"):
        fraud.rollback("fraud", reason="and again")
    rb = [e for e in fraud.history("fraud") if e.action == "promotion.rollback"]
    assert [(e.data["from"], e.data["to"], e.reason) for e in rb] == [("1.2.0", "1.1.0", "error rate up"), ("1.1.0", "1.0.0", "still bad")]


def test_rollback_to_a_named_version(fraud: EmbeddedRegistry) -> None:
    fraud.promote("fraud@1.1.0")
    with pytest.raises(TransitionNotAllowed, match="never served in production"):
        fraud.rollback("fraud", to="1.2.0", reason="x")
    assert fraud.rollback("fraud", to="1.0.0", reason="back").version.version == "1.0.0"
    with pytest.raises(ConflictError, match="already production"):
        fraud.rollback("fraud", to="1.0.0")


def test_rollback_ignores_the_policy_but_needs_production(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _version(registry, make_tree, 0, accuracy=0.9)
    with pytest.raises(ConflictError, match="no production version"):
        registry.rollback("fraud", reason="x")


def test_alias_at_answers_for_past_instants(fraud: EmbeddedRegistry) -> None:
    t0 = datetime.now(UTC)
    fraud.promote("fraud@1.1.0")
    t1 = datetime.now(UTC)
    fraud.rollback("fraud")
    assert fraud.alias_at("fraud", "production", t0) == "1.0.0"
    assert fraud.alias_at("fraud", "production", t1) == "1.1.0"
    assert fraud.alias_at("fraud", "production", datetime.now(UTC)) == "1.0.0"
    with pytest.raises(ArtifactNotFound):
        fraud.alias_at("nope", "production", t0)


def test_two_promotions_at_once_one_wins(db_url: str, tmp_path: Path) -> None:
    """Threads with registries of their own: one promotion wins, the other gets ConflictError."""
    store_url = f"file://{tmp_path / 'store'}"
    with EmbeddedRegistry(db_url, store_url, "setup") as reg:
        for n in range(3):
            src = tmp_path / f"v{n}"
            src.mkdir()
            (src / "w").write_text(str(n))
            reg.push(src, "race", metrics={"acc": 0.9 + n / 100})
            reg.transition(f"race@1.{n}.0", "staging")
            reg.transition(f"race@1.{n}.0", "validation")
        reg.promote("race@1.0.0")
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def promoter(version: str) -> None:
        with EmbeddedRegistry(db_url, store_url, f"p{version}") as reg:
            seen = reg.get("race@production").version  # both read production before either moves it
            barrier.wait()
            try:
                outcome[version] = reg.promote(f"race@{version}", expected_production=seen, reason="race")
            except ConflictError as exc:
                outcome[version] = exc

    threads = [threading.Thread(target=promoter, args=(v,)) for v in ("1.1.0", "1.2.0")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [v for v in outcome.values() if isinstance(v, ConflictError)]
    assert len(errors) == 1, outcome
    assert "another promotion won" in str(errors[0])
    with EmbeddedRegistry(db_url, store_url, "check") as reg:
        moves = reg.alias_history("race", "production")
        assert len(moves) == 2  # the first promotion, then exactly one of the two
        winner = moves[-1].version
        assert reg.get("race@production").version == winner
        loser = "1.2.0" if winner == "1.1.0" else "1.1.0"
        assert reg.stages("race")[loser] is Stage.VALIDATION
        assert reg.audit_verify().ok


def test_a_policy_can_require_a_signature_by_a_listed_key(fraud: EmbeddedRegistry) -> None:
    from modelkeep.registry.signatures import generate_keypair

    private, public = generate_keypair()
    other_private, _ = generate_keypair()
    with pytest.raises(InvalidPolicy, match="line 2: require_signature holds public key PEMs"):
        fraud.set_policy("fraud", "require_signature:\n  - not a key\n")
    block = "".join(f"      {line}\n" for line in public.decode().splitlines())
    fraud.set_policy("fraud", f"require_signature:\n  - |\n{block}")
    with pytest.raises(PromotionRefused) as info:
        fraud.promote("fraud@1.1.0")
    assert info.value.report.results[-1].rule == "signed by a listed key"
    fraud.sign("fraud@1.1.0", other_private)  # a key the policy does not list
    with pytest.raises(PromotionRefused):
        fraud.promote("fraud@1.1.0")
    fraud.sign("fraud@1.1.0", private)
    assert fraud.promote("fraud@1.1.0").report.results[-1].status == "pass"


def test_versions_carry_their_stage(fraud: EmbeddedRegistry) -> None:
    assert fraud.get("fraud@1.0.0").stage is Stage.PRODUCTION
    assert [v.stage for v in fraud.versions("fraud")] == [Stage.VALIDATION, Stage.VALIDATION, Stage.PRODUCTION]
    fraud.promote("fraud@1.1.0")
    assert fraud.get("fraud@production").stage is Stage.PRODUCTION
    assert fraud.get("fraud@1.0.0").stage is Stage.ARCHIVED


def test_two_rollbacks_at_once_go_back_one_version(fraud: EmbeddedRegistry) -> None:
    from modelkeep.registry import stages
    from modelkeep.registry.versions import artifact_row

    fraud.promote("fraud@1.1.0")
    fraud.promote("fraud@1.2.0")
    fraud.rollback("fraud", reason="first click")  # 1.2.0 -> 1.1.0

    def late(db):  # type: ignore[no-untyped-def]  # a second click that saw 1.2.0 in production
        art = artifact_row(db, "fraud", lock=True)
        return stages.rollback(db, art, None, actor="tester", at=datetime.now(UTC), reason="second", expected="1.2.0")

    with pytest.raises(ConflictError, match="someone else moved it"):
        fraud._uow.write(late)
    assert fraud.get("fraud@production").version == "1.1.0"
