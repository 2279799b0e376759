"""scikit-learn models: stored with skops, loaded only after an explicit trusted-types check.

``skops`` records every type an object graph needs. Before loading, the types
it does not trust by default (anything outside scikit-learn, numpy and scipy's
known-safe set) are listed; loading is refused, naming them, unless each one
is in the caller's ``trusted`` list. Pickle and joblib files (saved with
``serialization="pickle"`` or ``"joblib"``) are loaded only with
``allow_pickle=True``: unpickling runs whatever code the file names.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelkeep.errors import CorruptData, InvalidInput, UnsafeModel
from modelkeep.ml.flavors.base import Flavor, ModelInfo, Saved, library_versions, require

__all__ = ["SklearnFlavor"]

_FILES = {"skops": "model.skops", "pickle": "model.pkl", "joblib": "model.joblib"}


class SklearnFlavor(Flavor):
    name = "sklearn"
    extra = "sklearn"

    def accepts(self, obj: Any) -> bool:
        base = sys.modules.get("sklearn.base")
        return base is not None and isinstance(obj, base.BaseEstimator)

    def save(self, obj: Any, dest: Path, options: Mapping[str, Any]) -> Saved:
        serialization = options.get("serialization", "skops")
        if serialization not in _FILES:
            raise InvalidInput(f"unknown serialization {serialization!r} for sklearn ({', '.join(_FILES)})")
        path = dest / _FILES[serialization]
        if serialization == "skops":
            sio = require("skops.io", "sklearn")
            sio.dump(obj, path)
            libs = library_versions("scikit-learn", "skops", "numpy", "scipy")
        elif serialization == "joblib":
            require("joblib", "sklearn").dump(obj, path)
            libs = library_versions("scikit-learn", "joblib", "numpy", "scipy")
        else:
            import pickle

            with open(path, "wb") as f:
                pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
            libs = library_versions("scikit-learn", "numpy", "scipy")
        return Saved({"path": path.name, "serialization": serialization, "class": _qualname(obj)}, libs)

    def load(self, root: Path, info: ModelInfo, *, allow_pickle: bool, options: Mapping[str, Any]) -> Any:
        serialization = info.data.get("serialization")
        rel = info.data.get("path")
        if serialization not in _FILES or rel != _FILES[serialization]:
            raise CorruptData(f"sklearn model file names {serialization!r} / {rel!r}, not one modelkeep writes")
        path = root / rel
        if serialization != "skops":
            if not allow_pickle:
                raise UnsafeModel(
                    f"{rel} is a {serialization} file: loading it runs any code it names",
                    hint="pass allow_pickle=True only for models you trust",
                )
            if serialization == "joblib":
                return require("joblib", "sklearn").load(path)
            import pickle

            with open(path, "rb") as f:
                return pickle.load(f)  # noqa: S301 - only with allow_pickle=True, by the caller's choice
        sio = require("skops.io", "sklearn")
        trusted = [str(t) for t in options.get("trusted", ())]
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as exc:  # skops raises many types for a damaged zip; name the file
            raise CorruptData(f"{rel} is not a readable skops file: {exc}") from exc
        refused = sorted(set(untrusted) - set(trusted))
        if refused:
            raise UnsafeModel(
                f"{rel} needs types that are not trusted: {', '.join(refused)}",
                hint="check them, then pass trusted=[...] naming them to load_model",
            )
        return sio.load(path, trusted=list(untrusted))

    def predict(self, model: Any, inputs: Any) -> Any:
        if not hasattr(model, "predict"):
            raise InvalidInput(f"{type(model).__name__} has no predict; use LoadedModel.raw")
        return model.predict(inputs)

    def predict_proba(self, model: Any, inputs: Any) -> Any:
        if not hasattr(model, "predict_proba"):
            raise InvalidInput(f"{type(model).__name__} has no predict_proba")
        return model.predict_proba(inputs)


def _qualname(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"
