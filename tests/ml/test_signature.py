"""Signatures: inferred from examples, checked on predict, and a change is a major version."""

from __future__ import annotations

import numpy as np
import pytest

from modelkeep.errors import CorruptData, InvalidInput, SignatureMismatch
from modelkeep.ml.signature import ModelSignature, TensorSpec, infer_signature

pd = pytest.importorskip("pandas")


def test_inferred_from_numpy_with_a_variable_batch() -> None:
    sig = infer_signature(np.zeros((5, 3, 2), dtype=np.float32), np.zeros(5, dtype=np.int64))
    assert sig.inputs == (TensorSpec(None, "float32", (-1, 3, 2)),)
    assert sig.outputs == (TensorSpec(None, "int64", (-1,)),)
    assert sig.problems(np.ones((100, 3, 2), dtype=np.float32)) == []


def test_inferred_from_a_dataframe_and_a_dict() -> None:
    df = pd.DataFrame({"amount": [1.0, 2.0], "country": ["fr", "de"], "n": np.array([1, 2], dtype=np.int32)})
    sig = infer_signature(df)
    assert [(s.name, s.dtype) for s in sig.inputs] == [("amount", "float64"), ("country", str(df["country"].dtype)), ("n", "int32")]
    d = infer_signature({"ids": np.zeros((2, 8), dtype=np.int64), "mask": np.ones((2, 8), dtype=bool)})
    assert d.input_form == "dict" and [s.name for s in d.inputs] == ["ids", "mask"]


def test_round_trips_through_json() -> None:
    sig = infer_signature({"x": np.zeros((2, 4), np.float32)}, np.zeros((2, 1), np.float64))
    assert ModelSignature.from_dict(sig.to_dict()) == sig
    with pytest.raises(CorruptData):
        ModelSignature.from_dict({"inputs": {"form": "tensorish", "specs": []}})


def test_mismatches_are_listed_exactly() -> None:
    df = pd.DataFrame({"amount": [1.0], "age": np.array([30], dtype=np.int64)})
    sig = infer_signature(df)
    bad = pd.DataFrame({"age": [30.5], "extra": [1]})
    with pytest.raises(SignatureMismatch) as exc:
        sig.check(bad, model="fraud@1.0.0")
    msg = str(exc.value)
    assert msg.startswith("inputs do not match the signature of fraud@1.0.0: ")
    assert "column 'amount' is missing" in msg
    assert "column 'extra' is not in the signature" in msg
    assert "column 'age' has dtype float64, expected int64" in msg
    # widening conversions are fine
    assert sig.problems(pd.DataFrame({"amount": np.array([1], np.int32), "age": np.array([3], np.int16)})) == []


def test_shape_and_form_mismatches() -> None:
    sig = infer_signature(np.zeros((2, 4), np.float32))
    assert sig.problems(np.zeros((9, 5), np.float32)) == ["input has shape (?, 5), expected (?, 4)"]
    assert sig.problems({"x": np.zeros((2, 4))}) == ["expected an array, got a dict of arrays (dict)"]
    with pytest.raises(InvalidInput, match="cannot infer a signature from object"):
        infer_signature(object())


sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skops")
from sklearn.linear_model import LogisticRegression  # noqa: E402


def _fit(cols: list[str]) -> tuple[object, object]:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.standard_normal((60, len(cols))), columns=cols)
    y = (X.iloc[:, 0] > 0).astype(np.int64)
    return LogisticRegression().fit(X, y), X


def test_changed_signature_is_a_major_bump_same_signature_a_minor(ml_registry) -> None:  # type: ignore[no-untyped-def]
    m1, X1 = _fit(["a", "b"])
    v1 = ml_registry.log_model(m1, "fraud", input_example=X1.head())
    assert v1.version == "1.0.0"
    assert v1.signature is not None and ml_registry.get("fraud@1.0.0").signature == v1.signature
    m2, X2 = _fit(["a", "b"])
    m2.set_params(C=0.1).fit(X2, (X2.a > 0.1).astype(np.int64))
    assert ml_registry.log_model(m2, "fraud", input_example=X2.head()).version == "1.1.0"
    m3, X3 = _fit(["a", "b", "c"])
    v3 = ml_registry.log_model(m3, "fraud", input_example=X3.head())
    assert v3.version == "2.0.0"
    assert [s["name"] for s in v3.signature["inputs"]["specs"]] == ["a", "b", "c"]


def test_pushing_the_same_model_and_signature_again_makes_no_version(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sig = {"inputs": {"form": "array", "specs": [{"name": None, "dtype": "float32", "shape": [-1, 3]}]}, "outputs": None}
    (tmp_path / "w.bin").write_bytes(b"weights")
    v1 = ml_registry.push(tmp_path / "w.bin", "m", kind="model", signature=sig)
    assert ml_registry.push(tmp_path / "w.bin", "m", kind="model", signature=sig).version == v1.version
    other = {"inputs": {"form": "array", "specs": [{"name": None, "dtype": "float32", "shape": [-1, 4]}]}, "outputs": None}
    assert ml_registry.push(tmp_path / "w.bin", "m", kind="model", signature=other).version == "2.0.0"
    # omitting the signature is not a change of interface: metadata-only patch
    assert ml_registry.push(tmp_path / "w.bin", "m", kind="model").version == "2.0.1"
    assert ml_registry.get("m@2.0.1").signature is None


def test_predict_checks_the_stored_signature(ml_registry) -> None:  # type: ignore[no-untyped-def]
    m, X = _fit(["a", "b"])
    ml_registry.log_model(m, "fraud", input_example=X.head())
    loaded = ml_registry.load_model("fraud")
    assert list(loaded.predict(X.head(3))) == list(m.predict(X.head(3)))
    with pytest.raises(SignatureMismatch, match=r"fraud@1\.0\.0: column 'b' is missing"):
        loaded.predict(X[["a"]])
    with pytest.raises(SignatureMismatch, match="expected a DataFrame, got an array"):
        loaded.predict_proba(X.to_numpy())
