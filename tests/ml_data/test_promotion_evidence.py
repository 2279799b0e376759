"""Promotion policies that read evaluations and impact flags (require_evaluation, slice_gap, refuse_impact_flags)."""

from __future__ import annotations

import pytest

from modelkeep.errors import InvalidPolicy, PromotionRefused
from modelkeep.ml.evaluate import evaluate
from modelkeep.ml.impact import FLAG_PREFIX

from .test_evaluate import sklearn_setup  # noqa: F401  (fixture)


def ready(reg, ref: str) -> None:
    """Walk the default stages up to validation: production is one promote away."""
    reg.transition(ref, "staging", reason="test")
    reg.transition(ref, "validation", reason="test")


def _results(exc: PromotionRefused) -> dict[str, str]:
    return {r.rule: r.status for r in exc.value.report.results}


def test_promotion_requires_an_evaluation_on_productions_dataset(reg, sklearn_setup):  # noqa: F811
    from modelkeep.ml.flavors import log_model

    s = sklearn_setup
    prod = s["model"]
    reg.set_policy("fraud", "require_evaluation: true\nslice_gap: {metric: accuracy, tolerance: 0.5}\n")
    ready(reg, prod.ref)
    reg.promote(prod.ref, reason="first production: rules reading production are skipped")
    evaluate(reg, prod.ref, s["holdout"].ref, target="label", slice_by="region")
    cand = log_model(reg, s["clf"], "fraud", input_example=s["hx"][:5], params={"retrained": True})
    ready(reg, cand.ref)
    with pytest.raises(PromotionRefused) as refused:
        reg.promote(cand.ref, reason="no evaluation yet")
    assert _results(refused)["evaluated on production's dataset"] == "fail"
    assert reg.get("fraud@production").version == prod.version  # nothing moved

    evaluate(reg, cand.ref, s["holdout"].ref, target="label", slice_by="region")
    moved = reg.promote(cand.ref, reason="evaluated like production")
    assert reg.get("fraud@production").version == cand.version, moved


def test_slice_gap_rule_compares_both_evaluations(reg, sklearn_setup):  # noqa: F811
    from modelkeep.ml.flavors import log_model

    s = sklearn_setup
    prod = s["model"]
    ready(reg, prod.ref)
    reg.promote(prod.ref, reason="first")
    evaluate(reg, prod.ref, s["holdout"].ref, target="label", slice_by="region")
    cand = log_model(reg, s["clf"], "fraud", input_example=s["hx"][:5], params={"retrained": True})
    evaluate(reg, cand.ref, s["holdout"].ref, target="label", slice_by="region")
    ready(reg, cand.ref)
    gap = reg.get("fraud-eval@latest").metrics["slice_gap.accuracy"]
    assert gap > 0  # the regions really differ, or this test proves nothing
    reg.set_policy("fraud", "slice_gap: {metric: accuracy, tolerance: 0}\n")
    # the same classifier on the same data has the same gap: within production's + 0
    reg.promote(cand.ref, reason="same gap")
    assert reg.get("fraud@production").version == cand.version
    reg.set_policy("fraud", "slice_gap: {metric: f1_missing, tolerance: 0}\n")
    third = log_model(reg, s["clf"], "fraud", input_example=s["hx"][:5], params={"retrained": 2})
    evaluate(reg, third.ref, s["holdout"].ref, target="label", slice_by="region")
    ready(reg, third.ref)
    with pytest.raises(PromotionRefused) as refused:
        reg.promote(third.ref)
    assert _results(refused)["slice_gap.f1_missing <= production.slice_gap.f1_missing + 0"] == "fail"


def test_impact_flag_blocks_promotion(reg, sklearn_setup):  # noqa: F811
    s = sklearn_setup
    prod = s["model"]
    reg.set_policy("fraud", "refuse_impact_flags: true\n")
    reg.set_tag(prod.ref, f"{FLAG_PREFIX}abc123", "customer_id key in holdout@1.0.0")
    ready(reg, prod.ref)
    with pytest.raises(PromotionRefused) as refused:
        reg.promote(prod.ref)
    assert _results(refused)["no impact flag"] == "fail"
    reg.set_tag(prod.ref, f"{FLAG_PREFIX}abc123", None, reason="data owner confirmed deletion upstream")
    reg.promote(prod.ref)
    assert reg.get("fraud@production").version == prod.version


@pytest.mark.parametrize(
    "doc,line",
    [
        ("slice_gap: accuracy\n", 1),
        ("slice_gap: {metric: accuracy, tolerance: -1}\n", 1),
        ("metrics: [a]\nslice_gap: {metric: '1x'}\n", 2),
        ("require_evaluation: yes please\n", 1),
    ],
)
def test_bad_evidence_keys_are_refused_with_the_line(reg, sklearn_setup, doc, line):  # noqa: F811
    with pytest.raises(InvalidPolicy) as bad:
        reg.set_policy("fraud", doc)
    assert bad.value.line == line
