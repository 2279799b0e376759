"""Evaluation of a model version on a dataset version, stored as an ``evaluation`` version.

``evaluate(registry, "fraud@2.0.0", "holdout@1.0.0", target="label", slice_by="region")``:

1. loads the model with :func:`modelkeep.ml.flavors.load_model` and pulls the
   dataset (every ``.csv`` / ``.parquet`` file, concatenated);
2. checks the data: the target column exists, the model's features are there
   (from its signature when it has one), a declared key column is unique
   (each row of an evaluation set must be a distinct entity); each problem
   raises InvalidInput saying exactly what is wrong;
3. computes metrics with numpy — classification: accuracy, precision, recall,
   F1 (binary: of the positive class, the larger label; multiclass: macro
   averages), ROC AUC (rank statistic; binary from the positive-class
   probability, multiclass one-vs-rest macro) and log loss (both need
   ``predict_proba``); regression: RMSE, MAE, R²;
4. with ``slice_by``, the same metrics per value of that column, and for each
   metric the gap between the best and the worst slice;
5. pushes ``evaluation.json`` (the whole report) as a version of
   ``<model artifact>-eval`` (kind ``evaluation``) with the headline metrics
   (``slice_gap.<metric>`` too) and params ``model``, ``dataset``, ``target``,
   ``slice_by``, ``task``, ``rows``.

**Edges.** The evaluation version has two ``evaluated_on`` edges: to the dataset
version and to the model version. So ``lineage(model, direction="downstream",
depth=1)`` lists the evaluations of a model (nodes of kind ``evaluation``), and
``lineage(dataset, direction="downstream")`` those made on a dataset; impact
analysis reaches evaluations too. ``derived_from`` was not used: an evaluation
is not a new build of the model, and compare/impact read ``derived_from`` as
"fine-tuned from".

**For promotion rules** (the governance policy engine calls these; each returns
a :class:`Check` with ``ok`` and a one-line ``reason``):

* :func:`evaluations_of` — evaluation versions of a model, optionally on one dataset version;
* :func:`check_evaluated_like` — the candidate has an evaluation on the dataset
  version production's newest evaluation used;
* :func:`check_slice_gap` — on that shared dataset version, the candidate's gap
  between slices for a metric is not larger than production's (plus a tolerance);
* :func:`check_metric` — the candidate's metric on that dataset is not worse than
  production's by more than a tolerance.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelkeep.errors import InvalidInput, SignatureMismatch
from modelkeep.ml import _versionfiles
from modelkeep.ml.datasets import Table, read_table, table_files
from modelkeep.registry.api import Registry
from modelkeep.registry.types import Direction, EdgeType, Kind, Version

__all__ = [
    "REPORT_FILE",
    "LOWER_IS_BETTER",
    "classification_metrics",
    "regression_metrics",
    "roc_auc",
    "log_loss",
    "slice_gaps",
    "EvaluationReport",
    "evaluate",
    "evaluate_predictions",
    "Check",
    "evaluations_of",
    "check_evaluated_like",
    "check_slice_gap",
    "check_metric",
]

REPORT_FILE = "evaluation.json"
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})
_EPS = 1e-15
_MAX_CLASSES_AUTO = 20


# -- metrics ------------------------------------------------------------------------------


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    sx = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sx)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U); None when only one class is present."""
    pos = np.asarray(positive, dtype=bool)
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    r = _ranks(np.asarray(scores, dtype=np.float64))
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> float:
    """Mean negative log probability of the true class (probabilities clipped to [1e-15, 1])."""
    index = {c: i for i, c in enumerate(classes)}
    missing = sorted({str(v) for v in y_true if v not in index})
    if missing:
        raise InvalidInput(f"labels {', '.join(missing)} are not among the model's classes {list(classes)}")
    cols = np.array([index[v] for v in y_true])
    p = np.clip(proba[np.arange(len(y_true)), cols].astype(np.float64), _EPS, 1.0)
    return float(-np.mean(np.log(p)))


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
    *,
    labels: Sequence[Any] | None = None,
) -> dict[str, float | None]:
    """accuracy, precision, recall, f1, roc_auc, log_loss (None when undefined or no probabilities).

    ``labels``: every label of the whole evaluation (default: those in ``y_true`` and
    ``y_pred``), so a slice holding one class still averages over the same classes
    and a binary task keeps the same positive class.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if labels is None:
        labels = _labels(y_true, y_pred)
    labels = list(labels)
    out: dict[str, float | None] = {"accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else None}
    if len(labels) <= 2:
        pos = labels[-1] if labels else None
        classes_for = [pos]
    else:
        classes_for = labels
    precisions, recalls, f1s = [], [], []
    for c in classes_for:
        tp = int(np.sum((y_pred == c) & (y_true == c)))
        fp = int(np.sum((y_pred == c) & (y_true != c)))
        fn = int(np.sum((y_pred != c) & (y_true == c)))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        precisions.append(p)
        recalls.append(r)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    out["precision"] = float(np.mean(precisions)) if precisions else None
    out["recall"] = float(np.mean(recalls)) if recalls else None
    out["f1"] = float(np.mean(f1s)) if f1s else None
    out["roc_auc"] = None
    out["log_loss"] = None
    if proba is not None and classes is not None and len(y_true):
        proba = np.asarray(proba, dtype=np.float64)
        cls = list(classes)
        if proba.ndim != 2 or proba.shape != (len(y_true), len(cls)):
            raise InvalidInput(f"predict_proba returned shape {proba.shape}, expected ({len(y_true)}, {len(cls)})")
        if len(cls) == 2:
            out["roc_auc"] = roc_auc(y_true == cls[1], proba[:, 1])
        else:
            aucs = [roc_auc(y_true == c, proba[:, i]) for i, c in enumerate(cls)]
            known = [a for a in aucs if a is not None]
            out["roc_auc"] = float(np.mean(known)) if known else None
        out["log_loss"] = log_loss(y_true, proba, cls)
    elif len(labels) == 2 and y_pred.dtype.kind in "biuf":
        out["roc_auc"] = roc_auc(y_true == labels[-1], y_pred.astype(np.float64))  # from hard labels
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """rmse, mae, r2 (r2 None when the target is constant)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64).reshape(len(t), -1)[:, 0] if len(t) else np.empty(0)
    if not len(t):
        return {"rmse": None, "mae": None, "r2": None}
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else None,
    }


def _labels(*arrays: np.ndarray) -> list[Any]:
    return sorted({v for a in arrays for v in np.asarray(a).tolist()}, key=_label_key)


def _label_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int | float | bool | np.number) else (1, str(v))


def slice_gaps(per_slice: Mapping[str, Mapping[str, float | None]]) -> dict[str, dict[str, Any]]:
    """For each metric: the best and worst slice and the gap between them (only slices where it is defined)."""
    names = sorted({m for metrics in per_slice.values() for m in metrics})
    out: dict[str, dict[str, Any]] = {}
    for m in names:
        vals = {s: v[m] for s, v in per_slice.items() if v.get(m) is not None}
        if len(vals) < 2:
            continue
        lo = min(vals, key=lambda s: vals[s])  # type: ignore[arg-type,return-value]
        hi = max(vals, key=lambda s: vals[s])  # type: ignore[arg-type,return-value]
        best, worst = (lo, hi) if m in LOWER_IS_BETTER else (hi, lo)
        out[m] = {"gap": float(vals[hi] - vals[lo]), "best": best, "worst": worst,  # type: ignore[operator]
                  "best_value": vals[best], "worst_value": vals[worst]}
    return out


# -- evaluation -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    model: str
    dataset: str
    target: str
    task: str  # "classification" | "regression"
    rows: int
    metrics: dict[str, float | None]
    slice_by: str | None
    slices: dict[str, dict[str, Any]]  # slice value -> {"rows": n, metric: value...}
    gaps: dict[str, dict[str, Any]]
    version: Version | None = None  # the stored evaluation version

    @property
    def largest_gap(self) -> tuple[str, dict[str, Any]] | None:
        """The headline gap: of accuracy (classification) or RMSE (regression) when defined."""
        key = "accuracy" if self.task == "classification" else "rmse"
        if key in self.gaps:
            return key, self.gaps[key]
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "model": self.model,
            "dataset": self.dataset,
            "target": self.target,
            "task": self.task,
            "rows": self.rows,
            "metrics": self.metrics,
            "slice_by": self.slice_by,
            "slices": self.slices,
            "gaps": self.gaps,
            "evaluation": self.version.ref if self.version is not None else None,
        }


def _concat(tables: list[Table], where: str) -> dict[str, np.ndarray]:
    cols = list(tables[0].columns)
    for t in tables[1:]:
        if list(t.columns) != cols:
            raise InvalidInput(f"{where}: table files have different columns ({cols} and {list(t.columns)})")
    out = {}
    for c in cols:
        parts = [t.columns[c] for t in tables]
        kinds = {p.dtype.kind for p in parts}
        out[c] = np.concatenate(parts if len(kinds) == 1 else [p.astype(object) for p in parts])
    return out


def _load_dataset(registry: Registry, ref: str) -> tuple[Version, dict[str, np.ndarray]]:
    with _versionfiles.local_copy(registry, ref) as (version, root):
        files = table_files(root)
        if not files:
            raise InvalidInput(f"{version.ref} holds no .csv or .parquet table to evaluate on")
        return version, _concat([read_table(f) for f in files], version.ref)


def _declared_key(version: Version) -> str | None:
    info = version.params.get("dataset")
    keys = info.get("keys") if isinstance(info, Mapping) else None
    if isinstance(keys, Mapping) and keys:
        return str(next(iter(keys)))
    return None


def _check_unique_key(columns: Mapping[str, np.ndarray], key: str, ref: str) -> None:
    if key not in columns:
        return
    vals, counts = np.unique(columns[key].astype(str), return_counts=True)
    dups = [(v, c) for v, c in zip(vals.tolist(), counts.tolist()) if c > 1]
    if dups:
        shown = ", ".join(f"{v!r} x{c}" for v, c in dups[:5])
        more = f" and {len(dups) - 5} more" if len(dups) > 5 else ""
        raise InvalidInput(
            f"key column {key!r} of {ref} is not unique: {len(dups)} values appear more than once "
            f"({shown}{more}); each row of an evaluation set must be a distinct {key}"
        )


def _features(model: Any, columns: Mapping[str, np.ndarray], exclude: set[str], model_ref: str, data_ref: str) -> Any:
    """The model's input built from the dataset columns, following its signature when it has one."""
    sig = getattr(model, "signature", None)
    available = [c for c in columns if c not in exclude]
    if sig is not None and sig.input_form in ("dict", "dataframe"):
        names = [s.name for s in sig.inputs]
        missing = [n for n in names if n not in columns]
        if missing:
            raise InvalidInput(
                f"{data_ref} lacks features {model_ref} expects: {', '.join(missing)} "
                f"(signature inputs: {', '.join(names)}; dataset columns: {', '.join(columns)})"
            )
        if sig.input_form == "dict":
            return {n: columns[n] for n in names}
        try:
            import pandas as pd
        except ImportError:
            raise InvalidInput(f"{model_ref} takes a DataFrame: pip install pandas") from None
        return pd.DataFrame({n: columns[n] for n in names})
    numeric = [c for c in available if columns[c].dtype.kind in "biuf"]
    other = [c for c in available if c not in numeric]
    if sig is not None and sig.input_form == "array" and sig.inputs:
        shape = sig.inputs[0].shape
        want = shape[1] if len(shape) == 2 and shape[1] != -1 else None
        if want is not None and want != len(numeric):
            raise InvalidInput(
                f"{model_ref} takes {want} features, {data_ref} has {len(numeric)} numeric feature columns "
                f"({', '.join(numeric) or 'none'}) besides {', '.join(sorted(exclude & set(columns))) or 'nothing'}"
                + (f"; text columns not used: {', '.join(other)}" if other else "")
            )
    if not numeric:
        raise InvalidInput(f"{data_ref} has no numeric feature column besides {', '.join(sorted(exclude))}")
    return np.column_stack([columns[c].astype(np.float64) for c in numeric])


def _task(y: np.ndarray, task: str | None) -> str:
    if task is not None:
        if task not in ("classification", "regression"):
            raise InvalidInput(f"unknown task {task!r} (classification, regression)")
        return task
    if y.dtype.kind in "bOUS":
        return "classification"
    if y.dtype.kind in "iu" and len(np.unique(y)) <= _MAX_CLASSES_AUTO:
        return "classification"
    return "regression"


def _take(x: Any, mask: np.ndarray) -> Any:
    if isinstance(x, Mapping):
        return {k: v[mask] for k, v in x.items()}
    if hasattr(x, "iloc"):
        return x.iloc[np.flatnonzero(mask)]
    return x[mask]


def _classes(model: Any, y: np.ndarray, proba: np.ndarray) -> list[Any]:
    raw = getattr(model, "raw", model)
    cls = getattr(raw, "classes_", None)
    if cls is not None:
        return list(np.asarray(cls).tolist())
    labels = sorted(set(np.asarray(y).tolist()), key=_label_key)
    if len(labels) != proba.shape[1]:
        raise InvalidInput(
            f"the model gives {proba.shape[1]} class probabilities but does not say which classes they are "
            f"and the target has {len(labels)} labels"
        )
    return labels


def _predict(model: Any, x: Any, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    pred = np.asarray(model.predict(x))
    proba = None
    if task == "classification" and callable(getattr(model, "predict_proba", None)):
        try:
            proba = np.asarray(model.predict_proba(x))
        except SignatureMismatch:
            raise
        except InvalidInput:  # the flavor says this classifier has no probabilities
            proba = None
    return pred, proba


def _metrics(
    task: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list[Any] | None,
    labels: list[Any] | None,
) -> dict[str, float | None]:
    if task == "classification":
        return classification_metrics(y, pred, proba, classes, labels=labels)
    return regression_metrics(y, pred)


def evaluate_predictions(
    model: Any,
    columns: Mapping[str, np.ndarray],
    *,
    target: str,
    slice_by: str | None = None,
    key: str | None = None,
    task: str | None = None,
    model_ref: str = "the model",
    data_ref: str = "the dataset",
) -> EvaluationReport:
    """Metrics of ``model`` (anything with ``predict``, optionally ``predict_proba``) on table ``columns``."""
    if target not in columns:
        raise InvalidInput(f"{data_ref} has no target column {target!r} (columns: {', '.join(columns)})")
    if slice_by is not None and slice_by not in columns:
        raise InvalidInput(f"{data_ref} has no column {slice_by!r} to slice by (columns: {', '.join(columns)})")
    if key is not None:
        _check_unique_key(columns, key, data_ref)
    y = columns[target]
    kind = _task(y, task)
    exclude = {target} | ({key} if key else set()) | ({slice_by} if slice_by else set())
    x = _features(model, columns, exclude, model_ref, data_ref)
    pred, proba = _predict(model, x, kind)
    if len(pred) != len(y):
        raise InvalidInput(f"{model_ref} returned {len(pred)} predictions for {len(y)} rows")
    if kind == "classification" and pred.ndim > 1:
        if pred.size != len(y):
            raise InvalidInput(f"{model_ref} returned predictions of shape {pred.shape}, expected one label per row")
        pred = pred.reshape(len(y))
    classes = _classes(model, y, proba) if proba is not None else None
    labels = _labels(y, pred) if kind == "classification" else None
    if labels is not None and classes is not None:
        labels = sorted(set(labels) | set(classes), key=_label_key)
    overall = _metrics(kind, y, pred, proba, classes, labels)
    slices: dict[str, dict[str, Any]] = {}
    if slice_by is not None:
        sv = columns[slice_by]
        for value in sorted(set(sv.tolist()), key=_label_key):
            mask = sv == value
            m = _metrics(kind, y[mask], pred[mask], proba[mask] if proba is not None else None, classes, labels)
            slices[str(value)] = {"rows": int(mask.sum()), **m}
    gaps = slice_gaps({s: {k: v for k, v in m.items() if k != "rows"} for s, m in slices.items()})
    return EvaluationReport(model_ref, data_ref, target, kind, len(y), overall, slice_by, slices, gaps)


def evaluate(
    registry: Registry,
    model_ref: str,
    dataset_ref: str,
    *,
    target: str,
    slice_by: str | None = None,
    task: str | None = None,
    name: str | None = None,
    allow_pickle: bool = False,
    message: str = "",
) -> EvaluationReport:
    """Evaluate ``model_ref`` on ``dataset_ref`` and store the report as an ``evaluation`` version.

    ``name`` is the evaluation artifact (default ``<model artifact>-eval``). Raises
    InvalidInput (missing target or slice column, mismatched features, non-unique
    key column, a dataset that is not a dataset), plus what loading raises.
    """
    from modelkeep.ml.flavors import load_model  # the flavor layer pulls in framework extras on use

    dataset_version = registry.get(dataset_ref)
    if dataset_version.kind is not Kind.DATASET:
        raise InvalidInput(f"{dataset_version.ref} is a {dataset_version.kind.value}, not a dataset")
    _, columns = _load_dataset(registry, dataset_version.ref)
    # Flavors that hand back files keep them in ``dest``: a folder of ours, removed when done.
    with tempfile.TemporaryDirectory(prefix="mk-eval-model-") as tmp:
        model = load_model(registry, model_ref, allow_pickle=allow_pickle, dest=tmp)
        mv: Version = model.version
        report = evaluate_predictions(
            model, columns, target=target, slice_by=slice_by, key=_declared_key(dataset_version), task=task,
            model_ref=mv.ref, data_ref=dataset_version.ref,
        )
    return store_report(registry, report, name=name or f"{mv.artifact}-eval", message=message)


def store_report(registry: Registry, report: EvaluationReport, *, name: str, message: str = "") -> EvaluationReport:
    """Push ``report`` as an ``evaluation`` version linked ``evaluated_on`` its dataset and its model."""
    metrics = {k: v for k, v in report.metrics.items() if v is not None}
    metrics.update({f"slice_gap.{k}": g["gap"] for k, g in report.gaps.items()})
    params = {"model": report.model, "dataset": report.dataset, "target": report.target, "task": report.task,
              "rows": report.rows, "slice_by": report.slice_by}
    with tempfile.TemporaryDirectory(prefix="mk-eval-") as tmp:
        Path(tmp, REPORT_FILE).write_text(json.dumps(report.to_json(), indent=2, sort_keys=True, default=_json) + "\n")
        v = registry.push(
            tmp, name, kind=Kind.EVALUATION, message=message or f"{report.model} on {report.dataset}",
            params=params, metrics=metrics, evaluated_on=[report.dataset, report.model],
        )
    return EvaluationReport(report.model, report.dataset, report.target, report.task, report.rows, report.metrics,
                            report.slice_by, report.slices, report.gaps, v)


def _json(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON")


# -- for promotion rules ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    reason: str
    details: dict[str, Any]


def evaluations_of(registry: Registry, model_ref: str, *, dataset: str | None = None) -> list[Version]:
    """Evaluation versions linked ``evaluated_on`` the model, newest first; only those on ``dataset`` when given.

    ``dataset`` is a ref; it is resolved first, so an alias like ``holdout@current`` works.
    """
    model = registry.get(model_ref)
    want = registry.get(dataset).ref if dataset is not None else None
    found = []
    for node in registry.lineage(model.ref, direction=Direction.DOWNSTREAM, depth=1):
        if node.kind is not Kind.EVALUATION or node.edge.type is not EdgeType.EVALUATED_ON:
            continue
        v = registry.get(str(node.version))
        if want is None or v.params.get("dataset") == want:
            found.append(v)
    return sorted(found, key=lambda v: v.created_at, reverse=True)


def _shared(registry: Registry, candidate: str, production: str) -> tuple[Version | None, Version | None, str]:
    prod = evaluations_of(registry, production)
    if not prod:
        return None, None, f"{registry.get(production).ref} has no evaluation to compare with"
    dataset = str(prod[0].params.get("dataset"))
    cand = evaluations_of(registry, candidate, dataset=dataset)
    if not cand:
        return None, prod[0], f"{registry.get(candidate).ref} has no evaluation on {dataset}, the dataset production was evaluated on"
    return cand[0], prod[0], ""


def check_evaluated_like(registry: Registry, candidate: str, production: str) -> Check:
    """The candidate has an evaluation on the dataset version of production's newest evaluation."""
    cand, prod, why = _shared(registry, candidate, production)
    if cand is None:
        return Check(False, why, {"production_evaluation": prod.ref if prod else None})
    assert prod is not None
    return Check(True, f"{cand.ref} and {prod.ref} both evaluated on {prod.params.get('dataset')}",
                 {"candidate_evaluation": cand.ref, "production_evaluation": prod.ref,
                  "dataset": prod.params.get("dataset")})


def check_slice_gap(
    registry: Registry, candidate: str, production: str, *, metric: str = "accuracy", tolerance: float = 0.0
) -> Check:
    """On the shared dataset version, the candidate's gap between slices for ``metric`` is at most production's + ``tolerance``."""
    cand, prod, why = _shared(registry, candidate, production)
    if cand is None or prod is None:
        return Check(False, why, {})
    key = f"slice_gap.{metric}"
    gc, gp = cand.metrics.get(key), prod.metrics.get(key)
    if gc is None or gp is None:
        return Check(False, f"no {metric} slice gap recorded on {cand.ref if gc is None else prod.ref} (evaluate with --slice-by)",
                     {})
    ok = float(gc) <= float(gp) + tolerance
    rel = "within" if ok else "above"
    return Check(ok, f"{metric} gap between slices {gc:.4g} for the candidate, {rel} production's {gp:.4g}"
                     + (f" + {tolerance:g}" if tolerance else ""),
                 {"candidate": gc, "production": gp, "candidate_evaluation": cand.ref, "production_evaluation": prod.ref})


def check_metric(
    registry: Registry, candidate: str, production: str, *, metric: str, tolerance: float = 0.0
) -> Check:
    """On the shared dataset version, the candidate's ``metric`` is not worse than production's by more than ``tolerance``."""
    cand, prod, why = _shared(registry, candidate, production)
    if cand is None or prod is None:
        return Check(False, why, {})
    mc, mp = cand.metrics.get(metric), prod.metrics.get(metric)
    if mc is None or mp is None:
        return Check(False, f"{metric} is not recorded on {cand.ref if mc is None else prod.ref}", {})
    worse = (float(mc) - float(mp)) if metric in LOWER_IS_BETTER else (float(mp) - float(mc))
    ok = worse <= tolerance
    return Check(ok, f"{metric} {mc:.4g} for the candidate against {mp:.4g} for production"
                     + ("" if ok else f" (worse by {worse:.4g})"),
                 {"candidate": mc, "production": mp})
