"""Evaluation: metrics checked against hand-computed values, slices and gaps, stored versions, exact errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from modelkeep.errors import InvalidInput
from modelkeep.ml.datasets import push_dataset
from modelkeep.ml.evaluate import (
    REPORT_FILE,
    check_evaluated_like,
    check_metric,
    check_slice_gap,
    classification_metrics,
    evaluate,
    evaluate_predictions,
    evaluations_of,
    regression_metrics,
    roc_auc,
    slice_gaps,
)
from modelkeep.registry.types import Direction, EdgeType, Kind

Y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
PRED = np.array([1, 1, 0, 1, 0, 1, 1, 0])
P1 = np.array([0.9, 0.6, 0.4, 0.8, 0.2, 0.7, 0.65, 0.1])


def test_binary_metrics_by_hand():
    m = classification_metrics(Y, PRED, np.column_stack([1 - P1, P1]), [0, 1])
    # tp=3 fp=2 fn=1 tn=2
    assert m["accuracy"] == 5 / 8
    assert m["precision"] == 3 / 5 and m["recall"] == 3 / 4
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert m["roc_auc"] == 13 / 16  # positive-negative pairs ranked right: 4 + 2 + 4 + 3 of 16
    p_true = [0.9, 0.4, 0.4, 0.8, 0.8, 0.3, 0.65, 0.9]
    assert m["log_loss"] == pytest.approx(-sum(math.log(p) for p in p_true) / 8)
    assert roc_auc(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.7, 0.2])) == (1 * 0.5 + 1 + 1 + 1) / 4
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None
    no_proba = classification_metrics(Y, PRED)
    # without probabilities: AUC of the hard labels, (TPR + TNR) / 2 = (3/4 + 2/4) / 2; no log loss
    assert no_proba["log_loss"] is None and no_proba["roc_auc"] == 0.625


def test_multiclass_and_regression_by_hand():
    y = np.array(["a", "b", "c", "a", "b", "c"])
    p = np.array(["a", "b", "b", "a", "c", "c"])
    m = classification_metrics(y, p)
    # per class precision a 2/2 b 1/2 c 1/2; recall a 2/2 b 1/2 c 1/2
    assert m["accuracy"] == 4 / 6 and m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    r = regression_metrics(np.array([1.0, 2, 3, 4]), np.array([1.5, 2, 2.5, 5]))
    assert r["rmse"] == pytest.approx(math.sqrt(0.375)) and r["mae"] == 0.5 and r["r2"] == pytest.approx(0.7)
    assert regression_metrics(np.array([2.0, 2.0]), np.array([1.0, 3.0]))["r2"] is None


def test_slice_gaps():
    g = slice_gaps({"eu": {"accuracy": 0.9, "rmse": 1.0}, "us": {"accuracy": 0.7, "rmse": 3.0}, "asia": {"accuracy": None}})
    assert g["accuracy"]["gap"] == pytest.approx(0.2) and (g["accuracy"]["best"], g["accuracy"]["worst"]) == ("eu", "us")
    assert g["rmse"]["gap"] == 2.0 and (g["rmse"]["best"], g["rmse"]["worst"]) == ("eu", "us")  # lower is better


class Threshold:
    """A fixed rule on the first feature (a real model for these checks: deterministic, no training)."""

    classes_ = np.array([0, 1])

    def predict(self, x):
        return (x[:, 0] > 0).astype(int)

    def predict_proba(self, x):
        p = 1 / (1 + np.exp(-x[:, 0]))
        return np.column_stack([1 - p, p])


def test_slices_against_separate_evaluations():
    rng = np.random.default_rng(0)
    n = 400
    cols = {"id": np.arange(n), "f0": rng.standard_normal(n), "f1": rng.standard_normal(n),
            "region": np.array(["eu", "us"] * (n // 2), dtype=object)}
    cols["label"] = ((cols["f0"] + (cols["region"] == "us") * rng.standard_normal(n)) > 0).astype(int)
    r = evaluate_predictions(Threshold(), cols, target="label", slice_by="region", key="id")
    assert r.task == "classification" and r.rows == n
    for region in ("eu", "us"):
        mask = cols["region"] == region
        sub = evaluate_predictions(Threshold(), {k: v[mask] for k, v in cols.items()}, target="label", key="id",
                                   slice_by=None)
        assert r.slices[region]["rows"] == int(mask.sum())
        for name, value in sub.metrics.items():
            assert r.slices[region][name] == pytest.approx(value)
    assert r.slices["eu"]["accuracy"] == 1.0 and r.slices["us"]["accuracy"] < 1.0
    assert r.largest_gap == ("accuracy", r.gaps["accuracy"])
    assert r.gaps["accuracy"]["gap"] == pytest.approx(1.0 - r.slices["us"]["accuracy"])


def test_error_messages():
    cols = {"id": np.array([1, 2, 2]), "f0": np.array([0.1, -1.0, 2.0]), "label": np.array([1, 0, 1])}
    with pytest.raises(InvalidInput, match=r"^holdout@1.0.0 has no target column 'y' \(columns: id, f0, label\)$"):
        evaluate_predictions(Threshold(), cols, target="y", data_ref="holdout@1.0.0")
    with pytest.raises(InvalidInput, match=r"has no column 'region' to slice by"):
        evaluate_predictions(Threshold(), cols, target="label", slice_by="region")
    with pytest.raises(
        InvalidInput,
        match=r"^key column 'id' of holdout@1.0.0 is not unique: 1 values appear more than once \('2' x2\); "
        r"each row of an evaluation set must be a distinct id$",
    ):
        evaluate_predictions(Threshold(), cols, target="label", key="id", data_ref="holdout@1.0.0")


@pytest.fixture
def sklearn_setup(reg, tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")
    from sklearn.linear_model import LogisticRegression

    from modelkeep.ml.flavors import log_model

    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.standard_normal(300) > 0).astype(int)
    clf = LogisticRegression().fit(x, y)
    model = log_model(reg, clf, "fraud", input_example=x[:5])
    clf2 = LogisticRegression(C=0.01).fit(x[:, :2] * 0 + x[:, :2], y)  # a weaker candidate on two features
    rows = ["customer_id,f0,f1,f2,region,label"]
    hx = rng.standard_normal((200, 3))
    hy = (hx[:, 0] + 0.5 * hx[:, 1] > 0).astype(int)
    regions = ["eu", "us", "asia", "eu"] * 50
    rows += [f"{i},{a:.6f},{b:.6f},{c:.6f},{r},{lab}" for i, ((a, b, c), r, lab) in enumerate(zip(hx, regions, hy))]
    (tmp_path / "holdout.csv").write_text("\n".join(rows) + "\n")
    holdout = push_dataset(reg, tmp_path / "holdout.csv", "holdout", key="customer_id", unique_key=True)
    return {"clf": clf, "clf2": clf2, "model": model, "holdout": holdout, "hx": hx, "hy": hy, "regions": regions}


def test_evaluate_end_to_end_matches_scikit_learn(reg, sklearn_setup):
    from sklearn import metrics as skm

    s = sklearn_setup
    r = evaluate(reg, s["model"].ref, s["holdout"].ref, target="label", slice_by="region")
    hx, hy = np.round(s["hx"], 6), s["hy"]
    pred, proba = s["clf"].predict(hx), s["clf"].predict_proba(hx)
    assert r.metrics["accuracy"] == pytest.approx(skm.accuracy_score(hy, pred))
    assert r.metrics["precision"] == pytest.approx(skm.precision_score(hy, pred))
    assert r.metrics["recall"] == pytest.approx(skm.recall_score(hy, pred))
    assert r.metrics["f1"] == pytest.approx(skm.f1_score(hy, pred))
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(hy, proba[:, 1]))
    assert r.metrics["log_loss"] == pytest.approx(skm.log_loss(hy, proba))
    assert set(r.slices) == {"asia", "eu", "us"} and r.slices["eu"]["rows"] == 100
    v = r.version
    assert v is not None and v.kind is Kind.EVALUATION and v.artifact == "fraud-eval"
    assert {(e.type, str(e.target)) for e in v.edges} == {
        (EdgeType.EVALUATED_ON, s["holdout"].ref), (EdgeType.EVALUATED_ON, s["model"].ref)}
    assert v.metrics["slice_gap.accuracy"] == pytest.approx(r.gaps["accuracy"]["gap"])
    assert v.params["dataset"] == s["holdout"].ref and v.params["model"] == s["model"].ref
    stored = json.loads(_read(reg, v.ref, REPORT_FILE))
    assert stored["slices"]["us"]["accuracy"] == r.slices["us"]["accuracy"]
    down = reg.lineage(s["model"].ref, direction=Direction.DOWNSTREAM)
    assert [(str(n.version), n.kind) for n in down] == [(v.ref, Kind.EVALUATION)]
    assert [e.ref for e in evaluations_of(reg, s["model"].ref, dataset=s["holdout"].ref)] == [v.ref]


def test_promotion_helpers(reg, sklearn_setup, tmp_path):
    from modelkeep.ml.flavors import log_model

    s = sklearn_setup
    prod = s["model"]
    cand = log_model(reg, s["clf"], "fraud", input_example=s["hx"][:5], params={"retrained": True})
    no_eval = check_evaluated_like(reg, cand.ref, prod.ref)
    assert not no_eval.ok and "has no evaluation" in no_eval.reason
    evaluate(reg, prod.ref, s["holdout"].ref, target="label", slice_by="region")
    missing = check_evaluated_like(reg, cand.ref, prod.ref)
    assert not missing.ok and missing.reason == (
        f"{cand.ref} has no evaluation on {s['holdout'].ref}, the dataset production was evaluated on")
    evaluate(reg, cand.ref, s["holdout"].ref, target="label", slice_by="region")
    ok = check_evaluated_like(reg, cand.ref, prod.ref)
    assert ok.ok and ok.details["dataset"] == s["holdout"].ref
    gap = check_slice_gap(reg, cand.ref, prod.ref, metric="accuracy")
    assert gap.ok  # same weights: same gap
    assert check_metric(reg, cand.ref, prod.ref, metric="log_loss").ok


def test_evaluate_errors_through_the_registry(reg, sklearn_setup, tmp_path):
    s = sklearn_setup
    (tmp_path / "two.csv").write_text("f0,f1,label\n0.1,0.2,1\n-0.3,0.1,0\n")
    two = push_dataset(reg, tmp_path / "two.csv", "two-features")
    with pytest.raises(InvalidInput, match=rf"^{s['model'].ref} takes 3 features, two-features@1.0.0 has 2 numeric "
                       r"feature columns \(f0, f1\) besides label$"):
        evaluate(reg, s["model"].ref, two.ref, target="label")
    with pytest.raises(InvalidInput, match=r"^two-features@1.0.0 has no target column 'y'"):
        evaluate(reg, s["model"].ref, two.ref, target="y")
    (tmp_path / "dup.csv").write_text("customer_id,f0,f1,f2,label\n1,0,0,0,1\n1,1,1,1,0\n")
    dup = push_dataset(reg, tmp_path / "dup.csv", "dup", key="customer_id")
    with pytest.raises(InvalidInput, match=r"key column 'customer_id' of dup@1.0.0 is not unique"):
        evaluate(reg, s["model"].ref, dup.ref, target="label")
    with pytest.raises(InvalidInput, match=r"fraud@1.0.0 is a model, not a dataset"):
        evaluate(reg, s["model"].ref, s["model"].ref, target="label")


def test_cli_evaluate(mk, tmp_path, sklearn_setup):
    pytest.importorskip("sklearn")
    from modelkeep.config import Settings
    from modelkeep.ml.flavors import log_model
    from modelkeep.registry.embedded import EmbeddedRegistry

    s = sklearn_setup
    home = tmp_path / "home"
    with EmbeddedRegistry(Settings.for_home(home, user="tester")) as r:
        log_model(r, s["clf"], "fraud", input_example=s["hx"][:5])
        push_dataset(r, tmp_path / "holdout.csv", "holdout", key="customer_id")
    out = mk("evaluate", "fraud@1.0.0", "--on", "holdout@1.0.0", "--target", "label", "--slice-by", "region").stdout
    assert "stored as fraud-eval@1.0.0" in out and "largest accuracy gap between slices" in out
    data = json.loads(mk("evaluate", "fraud@1.0.0", "--on", "holdout@1.0.0", "--target", "label", "--json").stdout)
    assert data["rows"] == 200 and data["evaluation"] == "fraud-eval@1.1.0"
    bad = mk("evaluate", "fraud@1.0.0", "--on", "holdout@1.0.0", "--target", "nope", ok=False)
    assert bad.exit_code == 2 and "has no target column 'nope'" in bad.stderr


def _read(reg, ref, path):
    from modelkeep.ml import _versionfiles

    return _versionfiles.read_bytes(reg, ref, path)


def test_a_slice_with_one_class_keeps_the_positive_class():
    cols = {"f0": np.array([1.0, -1.0, -2.0, -3.0]), "label": np.array([1, 0, 0, 0]),
            "region": np.array(["eu", "eu", "us", "us"], dtype=object)}
    r = evaluate_predictions(Threshold(), cols, target="label", slice_by="region")
    # "us" holds only negatives, all predicted negative: no positive predicted or present
    assert r.slices["us"]["accuracy"] == 1.0
    assert r.slices["us"]["precision"] == 0.0 and r.slices["us"]["recall"] == 0.0
    assert r.slices["us"]["roc_auc"] is None
    assert r.slices["eu"]["precision"] == 1.0 and r.slices["eu"]["roc_auc"] == 1.0
