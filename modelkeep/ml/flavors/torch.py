"""PyTorch models: the ``state_dict`` as safetensors plus the module's import path.

Saving an ``nn.Module`` writes ``model.safetensors`` (every tensor of its
``state_dict``) and records ``module: "package.module:ClassName"`` and the JSON
``init_args`` given at log time. Loading imports that class, checks that it is
an ``nn.Module`` subclass (a stored file never names an arbitrary callable to
run), builds it with ``init_args`` and loads the weights strictly. Pass
``module=`` (a class or an instance) to load into your own module instead.

A mapping of tensors (a bare ``state_dict``, torch or numpy) is stored the same
way without a module, and loads back as a dict of torch tensors.

``torch.load`` of a pickle is used only for models saved with
``serialization="pickle"`` and only when the caller passes ``allow_pickle=True``.
The safetensors path itself needs only numpy (``_tensors.py``), so the file
format is tested without torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelkeep.errors import CorruptData, InvalidInput, UnsafeModel
from modelkeep.ml.flavors import _tensors
from modelkeep.ml.flavors.base import Flavor, ModelInfo, Saved, library_versions, require

__all__ = ["TorchFlavor", "WEIGHTS", "PICKLE"]

WEIGHTS = "model.safetensors"
PICKLE = "model.pt"

# torch dtype name -> safetensors dtype
_TORCH_TO_ST = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "float16": "F16",
    "bfloat16": "BF16",
    "int32": "I32",
    "uint32": "U32",
    "float32": "F32",
    "int64": "I64",
    "uint64": "U64",
    "float64": "F64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}
_ST_TO_TORCH = {v: k for k, v in _TORCH_TO_ST.items()}


class TorchFlavor(Flavor):
    name = "torch"
    extra = "torch"

    def accepts(self, obj: Any) -> bool:
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.nn.Module):
            return True
        return isinstance(obj, Mapping) and bool(obj) and all(_is_tensor(v) for v in obj.values())

    def save(self, obj: Any, dest: Path, options: Mapping[str, Any]) -> Saved:
        serialization = options.get("serialization", "safetensors")
        torch = sys.modules.get("torch")
        is_module = torch is not None and isinstance(obj, torch.nn.Module)
        data: dict[str, Any] = {"serialization": serialization}
        if serialization == "pickle":
            torch = require("torch", "torch")
            torch.save(obj, dest / PICKLE)
            data["path"] = PICKLE
            return Saved(data, library_versions("torch", "numpy"))
        if serialization != "safetensors":
            raise InvalidInput(f"unknown serialization {serialization!r} for torch (safetensors, pickle)")
        state = obj.state_dict() if is_module else obj
        _tensors.write(dest / WEIGHTS, ((str(k), _raw(v)) for k, v in state.items()))
        data["path"] = WEIGHTS
        if is_module:
            cls = type(obj)
            data["module"] = f"{cls.__module__}:{cls.__qualname__}"
            data["init_args"] = dict(options.get("init_args", {}))
        libs = library_versions("torch", "numpy") if torch is not None else library_versions("numpy")
        return Saved(data, libs)

    def load(self, root: Path, info: ModelInfo, *, allow_pickle: bool, options: Mapping[str, Any]) -> Any:
        if info.data.get("serialization") == "pickle":
            if not allow_pickle:
                raise UnsafeModel(
                    f"{PICKLE} is a torch pickle: loading it runs any code it names",
                    hint="pass allow_pickle=True only for models you trust",
                )
            return require("torch", "torch").load(root / PICKLE, weights_only=False)  # allow_pickle=True only
        if info.data.get("path") != WEIGHTS:
            raise CorruptData(f"torch model file names {info.data.get('path')!r}, not {WEIGHTS}")
        state = load_state_dict(root / WEIGHTS)  # validates the header before torch is even imported
        torch = require("torch", "torch")
        module = options.get("module")
        if module is None and "module" in info.data:
            module = _import_module_class(str(info.data["module"]), torch)
        if module is None:
            return state
        if isinstance(module, type):
            if not issubclass(module, torch.nn.Module):
                raise InvalidInput(f"module={module.__qualname__} is not a torch.nn.Module")
            module = module(**dict(info.data.get("init_args", {})))
        module.load_state_dict(state, strict=True)
        module.eval()
        return module

    def predict(self, model: Any, inputs: Any) -> Any:
        torch = require("torch", "torch")
        if not isinstance(model, torch.nn.Module):
            raise InvalidInput("this version holds a bare state_dict; load it into a module to predict")
        with torch.no_grad():
            if isinstance(inputs, Mapping):
                out = model(**{k: torch.as_tensor(v) for k, v in inputs.items()})
            else:
                out = model(torch.as_tensor(inputs))
        return out.numpy() if isinstance(out, torch.Tensor) else out


def load_state_dict(path: Path) -> dict[str, Any]:
    """Torch tensors from a safetensors file; the header is validated before anything is allocated."""
    _tensors.header(path)  # a lying header is refused even where torch is not installed
    torch = require("torch", "torch")
    h, raw = _tensors.read_raw(path)
    out = {}
    for t in h.tensors:
        dtype = getattr(torch, _ST_TO_TORCH[t.dtype])
        if t.numel == 0:
            out[t.name] = torch.empty(t.shape, dtype=dtype)
        else:
            out[t.name] = torch.frombuffer(raw[t.name], dtype=dtype).reshape(t.shape)
    return out


def _import_module_class(path: str, torch: Any) -> type:
    mod_name, _, qual = path.partition(":")
    if not mod_name or not qual:
        raise CorruptData(f"module path {path!r} is not 'package.module:ClassName'")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(
            f"cannot import the model's module {path}: {exc}",
            hint="install the code that defines it, or pass module=YourClass to load_model",
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        raise UnsafeModel(f"{path} is not a torch.nn.Module subclass; refusing to call it")
    return obj


def _is_tensor(v: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(v, torch.Tensor):
        return True
    np = sys.modules.get("numpy")
    return np is not None and isinstance(v, np.ndarray)


def _raw(v: Any) -> _tensors.RawTensor:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous()
        st = _TORCH_TO_ST.get(str(t.dtype).removeprefix("torch."))
        if st is None:
            raise InvalidInput(f"torch dtype {t.dtype} has no safetensors equivalent")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return _tensors.RawTensor(st, tuple(t.shape), data)
    return _tensors.from_numpy(v)
