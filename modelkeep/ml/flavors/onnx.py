"""ONNX models: the ``.onnx`` file as is, run with onnxruntime.

``log_model`` takes an ``onnx.ModelProto`` or the path of a ``.onnx`` file.
``load_model`` returns an ``onnxruntime.InferenceSession`` on the CPU; ONNX is
a graph format, never pickle, so ``allow_pickle`` plays no part.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelkeep.errors import CorruptData, InvalidInput
from modelkeep.ml.flavors.base import Flavor, ModelInfo, Saved, library_versions, require

__all__ = ["OnnxFlavor"]

FILE = "model.onnx"


class OnnxFlavor(Flavor):
    name = "onnx"
    extra = "onnx"

    def accepts(self, obj: Any) -> bool:
        onnx = sys.modules.get("onnx")
        if onnx is not None and isinstance(obj, onnx.ModelProto):
            return True
        return isinstance(obj, str | Path) and Path(obj).suffix == ".onnx" and Path(obj).is_file()

    def save(self, obj: Any, dest: Path, options: Mapping[str, Any]) -> Saved:
        if isinstance(obj, str | Path):
            shutil.copyfile(obj, dest / FILE)
        else:
            require("onnx", "onnx").save_model(obj, str(dest / FILE))
        return Saved({"path": FILE}, library_versions("onnx", "onnxruntime"))

    def load(self, root: Path, info: ModelInfo, *, allow_pickle: bool, options: Mapping[str, Any]) -> Any:
        if info.data.get("path") != FILE:
            raise CorruptData(f"onnx model file names {info.data.get('path')!r}, not {FILE}")
        ort = require("onnxruntime", "onnx")
        return ort.InferenceSession(str(root / FILE), providers=["CPUExecutionProvider"])

    def predict(self, model: Any, inputs: Any) -> Any:
        names = [i.name for i in model.get_inputs()]
        if isinstance(inputs, Mapping):
            feed = dict(inputs)
        elif len(names) == 1:
            feed = {names[0]: inputs}
        else:
            raise InvalidInput(f"this ONNX model takes {len(names)} inputs ({', '.join(names)}): pass a dict")
        return model.run(None, feed)[0]
