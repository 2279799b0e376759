"""What every flavor provides, and the model description file written beside the model.

A flavor turns one kind of in-memory model into files (``save``) and those files
back into a model (``load``), and knows how to call it (``predict``). It imports
its framework only inside those functions, through :func:`require`, so a
missing framework is one line naming the extra to install.

Every logged model folder holds ``MODEL_FILE`` (``modelkeep-model.json``)::

    {"format": 1, "flavor": "sklearn", "data": {...flavor specific...},
     "libraries": {"scikit-learn": "1.5.2", "skops": "0.10.0"}}

``load_model`` reads it first, so the flavor is chosen by what was stored, never
guessed from file names at load time.
"""

from __future__ import annotations

import abc

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from modelkeep.errors import CorruptData, InvalidInput, MissingExtra

__all__ = ["MODEL_FILE", "FORMAT", "Flavor", "Saved", "ModelInfo", "require", "library_versions", "read_info"]

MODEL_FILE = "modelkeep-model.json"
FORMAT = 1


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingExtra naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra.of(extra, module.partition(".")[0]) from None


def library_versions(*dists: str) -> dict[str, str]:
    """Installed versions of the given distributions (absent ones are left out)."""
    out = {}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True, slots=True)
class Saved:
    """What ``Flavor.save`` reports: flavor-specific data for the model file, and library versions."""

    data: Mapping[str, Any]
    libraries: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The parsed ``modelkeep-model.json`` of a logged model."""

    flavor: str
    data: Mapping[str, Any] = field(default_factory=dict)
    libraries: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {"format": FORMAT, "flavor": self.flavor, "data": dict(self.data), "libraries": dict(self.libraries)}
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def read_info(root: Path) -> ModelInfo:
    """Read ``MODEL_FILE`` under ``root``. Raises InvalidInput when absent, CorruptData when malformed."""
    path = root / MODEL_FILE
    if not path.is_file():
        raise InvalidInput(f"{MODEL_FILE} is missing: this version was not logged with log_model")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptData(f"{MODEL_FILE} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("flavor"), str):
        raise CorruptData(f"{MODEL_FILE} has no flavor name")
    if doc.get("format") != FORMAT:
        raise CorruptData(f"{MODEL_FILE} has format {doc.get('format')!r}; this modelkeep reads format {FORMAT}")
    data = doc.get("data", {})
    libraries = doc.get("libraries", {})
    if not isinstance(data, dict) or not isinstance(libraries, dict):
        raise CorruptData(f"{MODEL_FILE}: 'data' and 'libraries' must be objects")
    return ModelInfo(doc["flavor"], data, libraries)


class Flavor(abc.ABC):
    """One way of storing models. Subclasses set ``name`` and ``extra`` and implement the abstract methods."""

    name: ClassVar[str]
    extra: ClassVar[str | None] = None  # the pip extra that installs the framework

    @abc.abstractmethod
    def accepts(self, obj: Any) -> bool:
        """True when ``obj`` is a model of this flavor (without importing the framework)."""

    @abc.abstractmethod
    def save(self, obj: Any, dest: Path, options: Mapping[str, Any]) -> Saved:
        """Write ``obj`` as files under the empty folder ``dest``."""

    @abc.abstractmethod
    def load(self, root: Path, info: ModelInfo, *, allow_pickle: bool, options: Mapping[str, Any]) -> Any:
        """Rebuild the model from the files under ``root`` (never unpickles unless ``allow_pickle``)."""

    def predict(self, model: Any, inputs: Any) -> Any:
        """Call the model on ``inputs``."""
        raise InvalidInput(f"{self.name} models have no predict; use LoadedModel.raw")

    def predict_proba(self, model: Any, inputs: Any) -> Any:
        raise InvalidInput(f"{self.name} models have no predict_proba; use LoadedModel.raw")
