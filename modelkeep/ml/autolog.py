"""``autolog()``: scikit-learn ``fit`` calls become training runs without code changes.

Explicit opt-in, and reversible::

    with modelkeep.autolog(registry=reg, name="fraud", trained_on="transactions@2.1.0"):
        LogisticRegression(C=0.5).fit(X, y)        # -> fraud@1.0.0, with params and training score

    log = modelkeep.autolog(registry=reg)           # or without ``with``: until log.stop()

Mechanism: every estimator class that ``sklearn.utils.all_estimators()`` lists
at the moment ``autolog`` is called (plus ``classes=`` you pass, e.g. your
own estimators) that defines ``fit`` in its own ``__dict__`` gets that
``fit`` replaced by a wrapper; :meth:`Autolog.stop` puts every original back.
The wrapper runs the original ``fit`` inside :func:`modelkeep.ml.runs.run`
and logs the fitted estimator (skops), ``get_params(deep=False)``, the
training score when ``y`` is given, and a signature from the first rows of
``X``. Only the outermost ``fit`` of a call chain is logged (a ``Pipeline``
fitting its steps makes one version), and a failing ``fit`` is recorded as a
failed run. Only one autolog may be active at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from modelkeep.errors import ConflictError, InvalidInput
from modelkeep.ml.flavors.base import require
from modelkeep.ml.runs import run
from modelkeep.ml.signature import infer_signature
from modelkeep.registry.api import RefsLike, Registry

__all__ = ["Autolog", "autolog"]

_ACTIVE: list[Autolog] = []
_LOCK = threading.Lock()
_DEPTH = threading.local()


@dataclass
class Autolog:
    """An active autolog; :meth:`stop` (or leaving the ``with`` block) restores every patched ``fit``."""

    registry: Registry
    name: str | None
    trained_on: RefsLike
    example_rows: int
    patched: dict[type, Callable[..., Any]] = field(default_factory=dict)
    versions: list[Any] = field(default_factory=list)  # versions made, in order

    def stop(self) -> None:
        with _LOCK:
            for cls, original in self.patched.items():
                setattr(cls, "fit", original)  # noqa: B010 - restoring the attribute we replaced
            self.patched.clear()
            if self in _ACTIVE:
                _ACTIVE.remove(self)

    def __enter__(self) -> Autolog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _artifact(self, estimator: Any) -> str:
        return self.name or f"sklearn-{type(estimator).__name__.lower()}"


def autolog(
    *,
    registry: Registry,
    name: str | None = None,
    trained_on: RefsLike = None,
    classes: Iterable[type] = (),
    example_rows: int = 5,
) -> Autolog:
    """Patch scikit-learn estimators' ``fit`` so each outermost fit is a run; see the module docstring.

    ``name``: the artifact every fit logs to (default ``sklearn-<classname>``).
    Raises MissingExtra without scikit-learn, ConflictError when already active.
    """
    require("sklearn", "sklearn")
    base = require("sklearn.base", "sklearn")
    utils = require("sklearn.utils", "sklearn")
    with _LOCK:
        if _ACTIVE:
            raise ConflictError("autolog is already active; stop() it first")
        log = Autolog(registry, name, trained_on, example_rows)
        targets = [cls for _, cls in utils.all_estimators()] + list(classes)
        for cls in targets:
            if not (isinstance(cls, type) and issubclass(cls, base.BaseEstimator)):
                raise InvalidInput(f"{cls!r} is not a scikit-learn estimator class")
            original = cls.__dict__.get("fit")
            if original is None or cls in log.patched:
                continue
            log.patched[cls] = original
            setattr(cls, "fit", _wrap(original, log))  # noqa: B010
        _ACTIVE.append(log)
    return log


def _wrap(original: Callable[..., Any], log: Autolog) -> Callable[..., Any]:
    @wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(_DEPTH, "n", 0)
        if depth:  # an inner fit (a pipeline step, a CV clone): only the outermost is logged
            _DEPTH.n = depth + 1
            try:
                return original(self, *args, **kwargs)
            finally:
                _DEPTH.n = depth
        X = args[0] if args else kwargs.get("X")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        _DEPTH.n = 1
        try:
            with run(log._artifact(self), registry=log.registry, trained_on=log.trained_on) as r:
                r.log_params({"estimator": f"{type(self).__module__}.{type(self).__qualname__}"})
                r.log_params(_json_params(self))
                result = original(self, *args, **kwargs)
                if y is not None and hasattr(self, "score"):
                    r.log_metrics({"training_score": float(self.score(X, y))})
                r.log_model(self, input_example=_example(X, log.example_rows))
            if r.version is not None:
                log.versions.append(r.version)
            return result
        finally:
            _DEPTH.n = 0

    return fit


def _json_params(est: Any) -> dict[str, Any]:
    """``get_params(deep=False)`` with values that are not JSON scalars shown as their repr."""
    out: dict[str, Any] = {}
    for k, v in est.get_params(deep=False).items():
        out[k] = v if v is None or isinstance(v, bool | int | float | str) else repr(v)
    return out


def _example(X: Any, n: int) -> Any:
    """The first ``n`` rows of ``X`` when a signature can be inferred from them (not from sparse
    matrices, for example): autolog never fails a ``fit`` for want of a signature."""
    try:
        head = X.iloc[:n] if hasattr(X, "iloc") else X[:n]
        infer_signature(head)
    except (TypeError, IndexError, KeyError, InvalidInput):
        return None
    return head
