"""Training-run capture: a ``with`` block whose successful end makes a version.

::

    with modelkeep.run("fraud", registry=reg, trained_on="transactions@2.1.0", seed=7) as run:
        run.log_params({"C": 1.0})
        model = LogisticRegression(C=1.0).fit(X, y)
        for epoch, loss in enumerate(losses):
            run.log_metrics({"loss": loss}, step=epoch)   # kept as a series
        run.log_metrics({"auc": 0.93})
        run.log_model(model, input_example=X[:5])

On a normal exit, the model given to ``log_model`` is pushed as a new version
(``log_model`` of ``ml/flavors``) with the params, the last value of every
metric, the lineage given to ``run`` and provenance ``run`` (start, end,
duration, peak memory, status, metric series), ``seeds``, ``git`` (with a
digest of uncommitted changes) and ``cuda``; every push also records python,
packages, OS, CPU and GPUs. The end is recorded in the audit trail
(``Registry.record_run``: action ``run.succeeded``).

When the block raises, no version is made; the run is recorded as
``run.failed`` with the error, params, metrics and environment, and the
exception propagates unchanged. A run that logged no model records its end
and makes no version.

Without ``registry=``, the run opens the registry :func:`modelkeep.open`
would (from the environment) and closes it at the end.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidInput
from modelkeep.ml import environment
from modelkeep.ml.flavors import log_model as _log_model
from modelkeep.registry.api import RefsLike, Registry
from modelkeep.registry.names import check_name
from modelkeep.registry.types import Version

__all__ = ["Run", "run"]


@dataclass
class _StagedModel:
    obj: Any
    options: dict[str, Any]


@dataclass
class Run:
    """The run in progress; :attr:`version` is set once the run has ended successfully with a model."""

    name: str
    started_at: datetime
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[list[float]]] = field(default_factory=dict)  # key -> [[step, value, seconds], ...]
    seeds: dict[str, Any] = field(default_factory=dict)
    version: Version | None = None
    _model: _StagedModel | None = field(default=None, repr=False)
    _clock: float = field(default_factory=time.monotonic, repr=False)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add hyperparameters (JSON values); a later value for the same key replaces the earlier one."""
        if not isinstance(params, Mapping):
            raise InvalidInput(f"params must be a mapping, got {type(params).__name__}")
        self.params.update({str(k): _plain(v) for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Record metric values; with ``step`` each value is also appended to that metric's series.

        The version keeps the last value of each metric; the series (step, value,
        seconds since the run started) go to its provenance under ``run.series``.
        """
        if not isinstance(metrics, Mapping):
            raise InvalidInput(f"metrics must be a mapping, got {type(metrics).__name__}")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
            raise InvalidInput(f"step must be an integer, got {step!r}")
        elapsed = round(time.monotonic() - self._clock, 6)
        for key, value in metrics.items():
            v = _plain(value)
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise InvalidInput(f"metric {key!r} must be a finite number, got {value!r}")
            self.metrics[str(key)] = v
            if step is not None:
                self.series.setdefault(str(key), []).append([step, v, elapsed])

    def log_model(self, obj: Any, **options: Any) -> None:
        """Stage the model to push when the run ends (keywords as for ``log_model``: flavor, input_example…).

        Logging again replaces the staged model: a run makes one version.
        """
        self._model = _StagedModel(obj, dict(options))


@contextmanager
def run(
    name: str,
    *,
    registry: Registry | None = None,
    trained_on: RefsLike = None,
    derived_from: RefsLike = None,
    seed: int | None = None,
    message: str = "",
    tags: Mapping[str, str] | None = None,
    workdir: str | Path | None = None,
) -> Iterator[Run]:
    """A training run of artifact ``name``; see the module docstring.

    ``seed`` seeds python, numpy and torch (when imported) before the block
    runs; without it the generator states are read and recorded. ``workdir``
    is where git state is read (default: the current directory).
    """
    check_name(name)
    owned = registry is None
    if registry is None:
        import modelkeep

        registry = modelkeep.open()
    try:
        seeds: dict[str, Any] = {"set": environment.set_seeds(seed)} if seed is not None else {}
        seeds.update(environment.seed_state())
        r = Run(name=name, started_at=datetime.now(UTC), seeds=seeds)
        where = Path(workdir) if workdir is not None else Path.cwd()
        try:
            yield r
            ended = datetime.now(UTC)
            if r._model is not None:
                r.version = _push_model(registry, r, ended, where, trained_on, derived_from, message, tags)
        except BaseException as exc:
            ended = datetime.now(UTC)
            registry.record_run(
                name,
                status="failed",
                started_at=r.started_at,
                ended_at=ended,
                error=_error_text(exc),
                data={"params": r.params, "metrics": r.metrics, "run": _run_info(r, ended, "failed", exc)},
            )
            raise
        info = _run_info(r, ended, "succeeded", None)
        registry.record_run(
            name,
            status="succeeded",
            started_at=r.started_at,
            ended_at=ended,
            version=r.version.ref if r.version is not None else None,
            data={"params": r.params, "metrics": r.metrics, "run": {k: v for k, v in info.items() if k != "series"}},
        )
    finally:
        if owned:
            registry.close()


def _push_model(
    registry: Registry,
    r: Run,
    ended: datetime,
    where: Path,
    trained_on: RefsLike,
    derived_from: RefsLike,
    message: str,
    tags: Mapping[str, str] | None,
) -> Version:
    assert r._model is not None
    prov: dict[str, Any] = {"run": _run_info(r, ended, "succeeded", None), "seeds": r.seeds}
    git = environment.git_state(where)
    if git is not None:
        prov["git"] = git
    cuda = environment.cuda_info()
    if cuda is not None:
        prov["cuda"] = cuda
    options = dict(r._model.options)
    return _log_model(
        registry,
        r._model.obj,
        r.name,
        params={**r.params, **(options.pop("params", None) or {})},
        metrics={**r.metrics, **(options.pop("metrics", None) or {})},
        trained_on=options.pop("trained_on", trained_on),
        derived_from=options.pop("derived_from", derived_from),
        message=options.pop("message", message),
        tags=options.pop("tags", tags),
        provenance={**prov, **(options.pop("provenance", None) or {})},
        **options,
    )


def _run_info(r: Run, ended: datetime, status: str, exc: BaseException | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "status": status,
        "started_at": r.started_at.isoformat(),
        "ended_at": ended.isoformat(),
        "duration_s": round((ended - r.started_at).total_seconds(), 6),
        "peak_rss_bytes": environment.peak_rss_bytes(),
        "series": r.series,
    }
    if exc is not None:
        info["error"] = _error_text(exc)
        info["traceback"] = "".join(traceback.format_exception(exc))[-8000:]
    return info


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _plain(value: Any) -> Any:
    """numpy scalars and arrays to Python values (JSON validation happens at push)."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return item()
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value
