"""Model signatures: names, dtypes and shapes of a model's inputs and outputs.

Inferred from an input example and the model's output on it::

    numpy array       one unnamed tensor; the first axis is the batch (stored as -1)
    pandas DataFrame  one column spec per column (name, dtype), shape [-1]
    dict of arrays    one named tensor per key

The signature is stored with the version (``Version.signature``, a JSON
document, see :meth:`ModelSignature.to_dict`). A changed signature makes the
next version a major bump (``registry/semver.py``). ``LoadedModel.predict``
calls :meth:`ModelSignature.check` first: inputs of another form, missing or
unexpected names, other non-batch shapes, or dtypes that do not convert
safely (int32 into int64 or float64 is fine; float into int is not) raise
SignatureMismatch listing every problem.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelkeep.errors import CorruptData, InvalidInput, SignatureMismatch

__all__ = ["TensorSpec", "ModelSignature", "infer_signature"]

ARRAY, DATAFRAME, DICT = "array", "dataframe", "dict"
_FORMS = (ARRAY, DATAFRAME, DICT)
BATCH = -1


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output: ``name`` (None for a lone array), numpy ``dtype`` name, ``shape`` (-1 = any)."""

    name: str | None
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        return cls(d.get("name"), str(d["dtype"]), tuple(int(x) for x in d["shape"]))

    def describe(self, unnamed: str = "input") -> str:
        """``amount: float64[?]``; ``unnamed`` stands for the name of a lone array."""
        dims = ", ".join("?" if d == BATCH else str(d) for d in self.shape)
        return f"{self.name or unnamed}: {self.dtype}[{dims}]"


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """Inputs (of one form: array, dataframe or dict) and outputs of a model."""

    input_form: str
    inputs: tuple[TensorSpec, ...]
    output_form: str | None = None
    outputs: tuple[TensorSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": {"form": self.input_form, "specs": [s.to_dict() for s in self.inputs]},
            "outputs": (
                {"form": self.output_form, "specs": [s.to_dict() for s in self.outputs]} if self.output_form else None
            ),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSignature:
        """Parse a stored signature. Raises CorruptData when it is malformed."""
        try:
            ins = d["inputs"]
            outs = d.get("outputs")
            sig = cls(
                str(ins["form"]),
                tuple(TensorSpec.from_dict(s) for s in ins["specs"]),
                str(outs["form"]) if outs else None,
                tuple(TensorSpec.from_dict(s) for s in outs["specs"]) if outs else (),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptData(f"stored signature is malformed: {exc!r}") from None
        if sig.input_form not in _FORMS or (sig.output_form is not None and sig.output_form not in _FORMS):
            raise CorruptData(f"stored signature has an unknown form {sig.input_form!r}/{sig.output_form!r}")
        return sig

    def describe(self) -> list[tuple[str, str]]:
        """(direction, spec) rows for display."""
        rows = [("input", s.describe("input")) for s in self.inputs]
        rows += [("output", s.describe("output")) for s in self.outputs]
        return rows

    def problems(self, inputs: Any) -> list[str]:
        """Every way ``inputs`` differs from the input signature (empty: it matches)."""
        form, specs = _describe(inputs)
        if form != self.input_form:
            return [f"expected {_FORM_TEXT[self.input_form]}, got {_FORM_TEXT[form]} ({type(inputs).__name__})"]
        want = {s.name: s for s in self.inputs}
        got = {s.name: s for s in specs}
        what = "column" if form == DATAFRAME else "input"
        out = [f"{what} {n!r} is missing" for n in want if n not in got]
        out += [f"{what} {n!r} is not in the signature" for n in got if n not in want]
        for name, w in want.items():
            g = got.get(name)
            if g is None:
                continue
            label = f"{what} {name!r}" if name is not None else "input"
            if len(g.shape) != len(w.shape) or any(a != b and b != BATCH for a, b in zip(g.shape, w.shape)):
                out.append(f"{label} has shape {_shape(g.shape)}, expected {_shape(w.shape)}")
            if not _converts(g.dtype, w.dtype):
                out.append(f"{label} has dtype {g.dtype}, expected {w.dtype}")
        return out

    def check(self, inputs: Any, *, model: str = "the model") -> None:
        """Raise SignatureMismatch listing every problem when ``inputs`` do not match."""
        found = self.problems(inputs)
        if found:
            raise SignatureMismatch(f"inputs do not match the signature of {model}: " + "; ".join(found))


_FORM_TEXT = {ARRAY: "an array", DATAFRAME: "a DataFrame", DICT: "a dict of arrays"}


def infer_signature(input_example: Any, output: Any = None) -> ModelSignature:
    """The signature of a model taking ``input_example`` and returning ``output`` (optional)."""
    form, specs = _describe(input_example)
    if output is None:
        return ModelSignature(form, specs)
    out_form, out_specs = _describe(output)
    return ModelSignature(form, specs, out_form, out_specs)


def _describe(value: Any) -> tuple[str, tuple[TensorSpec, ...]]:
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        return DATAFRAME, tuple(TensorSpec(str(c), _dtype_name(value[c].dtype), (BATCH,)) for c in value.columns)
    if pd is not None and isinstance(value, pd.Series):
        value = value.to_numpy()
    if isinstance(value, Mapping):
        if not value or not all(isinstance(k, str) for k in value):
            raise InvalidInput("a dict input example needs string keys and at least one entry")
        return DICT, tuple(_array_spec(str(k), v) for k, v in sorted(value.items()))
    return ARRAY, (_array_spec(None, value),)


def _array_spec(name: str | None, value: Any) -> TensorSpec:
    arr = _as_array(value)
    if arr.ndim == 0:
        return TensorSpec(name, _dtype_name(arr.dtype), ())
    return TensorSpec(name, _dtype_name(arr.dtype), (BATCH, *(int(d) for d in arr.shape[1:])))


def _as_array(value: Any) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Sequence | int | float | bool) and not isinstance(value, str | bytes):
        return np.asarray(value)
    raise InvalidInput(f"cannot infer a signature from {type(value).__name__} (numpy, pandas, dict of arrays)")


def _dtype_name(dtype: Any) -> str:
    return dtype.name if isinstance(dtype, np.dtype) else str(dtype)


def _converts(got: str, want: str) -> bool:
    if got == want:
        return True
    try:
        g, w = np.dtype(got), np.dtype(want)
    except TypeError:  # pandas extension dtypes ("category", "string"): equal names only
        return False
    if g.kind in "OSU" or w.kind in "OSU":
        return g.kind in "OSU" and w.kind in "OSU"
    return bool(np.can_cast(g, w, casting="safe"))


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join("?" if d == BATCH else str(d) for d in shape) + ")"
