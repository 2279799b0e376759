"""Framework flavors: ``log_model`` writes a model as files and pushes them; ``load_model`` brings it back.

Flavors, tried in this order when ``flavor`` is not given::

    sklearn      scikit-learn estimators; skops, trusted-types check on load   (extra: sklearn)
    torch        nn.Module or a state_dict; safetensors + module import path   (extra: torch)
    onnx         onnx.ModelProto or a .onnx file; onnxruntime on load          (extra: onnx)
    huggingface  a save_pretrained folder or object; config + safetensors + tokenizer
    files        any file or folder, loaded back as a local path

The flavor, its data and the library versions are written to
``modelkeep-model.json`` among the version's files and recorded in the
version's provenance under ``model``, with ``git`` of the current directory
(commit, branch, digest of uncommitted changes). A signature (given, or inferred from
``input_example`` and the model's output on it) is stored with the version.
Nothing is ever unpickled unless the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidInput
from modelkeep.ml.flavors.base import MODEL_FILE, Flavor, ModelInfo, read_info
from modelkeep.ml.flavors.files import FilesFlavor
from modelkeep.ml.flavors.huggingface import HuggingFaceFlavor
from modelkeep.ml.flavors.onnx import OnnxFlavor
from modelkeep.ml.flavors.sklearn import SklearnFlavor
from modelkeep.ml.flavors.torch import TorchFlavor
from modelkeep.ml.environment import git_state
from modelkeep.ml.signature import ModelSignature, infer_signature
from modelkeep.registry.api import Registry
from modelkeep.registry.types import Kind, Version

__all__ = ["FLAVORS", "LoadedModel", "flavor_named", "log_model", "load_model", "save_model", "detect"]

FLAVORS: dict[str, Flavor] = {
    f.name: f for f in (SklearnFlavor(), TorchFlavor(), OnnxFlavor(), HuggingFaceFlavor(), FilesFlavor())
}


def flavor_named(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise InvalidInput(f"unknown flavor {name!r} ({', '.join(FLAVORS)})") from None


def detect(obj: Any) -> Flavor:
    """The first flavor that accepts ``obj``. Raises InvalidInput naming the type."""
    for f in FLAVORS.values():
        if f.accepts(obj):
            return f
    raise InvalidInput(
        f"no flavor stores a {type(obj).__module__}.{type(obj).__qualname__}; pass flavor= ({', '.join(FLAVORS)})"
    )


@dataclass(frozen=True)
class LoadedModel:
    """A model brought back by :func:`load_model`: the framework object in ``raw``, plus what it came with."""

    version: Version
    flavor: str
    raw: Any
    signature: ModelSignature | None
    libraries: Mapping[str, str]

    def predict(self, inputs: Any) -> Any:
        """Check ``inputs`` against the signature (SignatureMismatch), then call the model."""
        self._check(inputs)
        return flavor_named(self.flavor).predict(self.raw, inputs)

    def predict_proba(self, inputs: Any) -> Any:
        """Class probabilities (classifiers), after the same signature check."""
        self._check(inputs)
        return flavor_named(self.flavor).predict_proba(self.raw, inputs)

    def _check(self, inputs: Any) -> None:
        if self.signature is not None:
            self.signature.check(inputs, model=self.version.ref)


def save_model(
    obj: Any, dest: Path, *, flavor: str | None = None, options: Mapping[str, Any] | None = None
) -> ModelInfo:
    """Write ``obj`` and ``modelkeep-model.json`` into the empty folder ``dest``."""
    fl = flavor_named(flavor) if flavor else detect(obj)
    saved = fl.save(obj, dest, dict(options or {}))
    info = ModelInfo(fl.name, dict(saved.data), dict(saved.libraries))
    (dest / MODEL_FILE).write_text(info.to_json(), encoding="utf-8")
    return info


def log_model(
    registry: Registry,
    obj: Any,
    name: str,
    *,
    flavor: str | None = None,
    input_example: Any = None,
    signature: ModelSignature | None = None,
    options: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    **push: Any,
) -> Version:
    """Store ``obj`` as a new ``model`` version of ``name`` and return it.

    ``flavor`` picks the flavor (default: detected from ``obj``); ``options`` go
    to it (sklearn/torch ``serialization``, torch ``init_args``, huggingface
    ``tokenizer``). ``signature`` is stored as given, or inferred from
    ``input_example`` and the model's output on it. ``provenance`` adds to what
    the registry captures. Every other keyword (``message``, ``params``,
    ``metrics``, ``tags``, lineage refs, ``version``, ``major``) goes to
    :meth:`Registry.push`. A changed signature makes the version a major bump.
    """
    fl = flavor_named(flavor) if flavor else detect(obj)
    if signature is None and input_example is not None:
        signature = infer_signature(input_example, _output_on(fl, obj, input_example))
    push.setdefault("kind", Kind.MODEL)
    with tempfile.TemporaryDirectory(prefix="modelkeep-model-") as tmp:
        info = save_model(obj, Path(tmp), flavor=fl.name, options=options)
        prov = {**dict(provenance or {}), "model": {"flavor": info.flavor, "libraries": dict(info.libraries)}}
        if "git" not in prov:  # the push reads a temporary folder: the code is where the caller runs
            git = git_state(Path.cwd())
            if git is not None:
                prov["git"] = git
        return registry.push(
            tmp, name, signature=signature.to_dict() if signature else None, provenance=prov, **push
        )


def load_model(
    registry: Registry,
    ref: str,
    *,
    allow_pickle: bool = False,
    trusted: Sequence[str] = (),
    module: Any = None,
    dest: str | Path | None = None,
) -> LoadedModel:
    """Pull ``ref`` and rebuild its model with the flavor it was logged with.

    ``allow_pickle=True`` is required for pickle/joblib/torch-pickle files
    (UnsafeModel otherwise). ``trusted`` names extra types a skops file may use
    (UnsafeModel lists the untrusted ones). ``module`` is the torch module
    (class or instance) to load a state_dict into. Flavors that hand back files
    (``files``, ``huggingface``) keep them in ``dest`` (default: a new
    temporary folder, left for the caller); other flavors read them into memory
    and delete the copy. Raises MissingExtra when the framework is not installed.
    """
    version = registry.get(ref)
    keep = dest is not None
    root = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="modelkeep-load-"))
    try:
        registry.pull(version.ref, root)
        info = read_info(root)
        fl = flavor_named(info.flavor)
        options = {"trusted": tuple(trusted), "module": module}
        raw = fl.load(root, info, allow_pickle=allow_pickle, options=options)
        keep = keep or isinstance(fl, FilesFlavor | HuggingFaceFlavor)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return LoadedModel(
        version=version,
        flavor=info.flavor,
        raw=raw,
        signature=ModelSignature.from_dict(version.signature) if version.signature else None,
        libraries=dict(info.libraries),
    )


def _output_on(fl: Flavor, obj: Any, example: Any) -> Any:
    """The model's output on the example, for the output half of the signature (None when it has none)."""
    if isinstance(fl, SklearnFlavor):
        return fl.predict(obj, example) if hasattr(obj, "predict") else None  # transformers have no output here
    if isinstance(fl, TorchFlavor) and not isinstance(obj, Mapping):  # a bare state_dict cannot run
        return fl.predict(obj, example)
    return None
