"""Flavors round-trip real models, and refuse to run code they were not allowed to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelkeep
from modelkeep.errors import CorruptData, InvalidInput, UnsafeModel
from modelkeep.ml.flavors import FLAVORS, detect, load_model, log_model
from modelkeep.ml.flavors.base import MODEL_FILE

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skops")

from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


class MajorityClassifier(ClassifierMixin, BaseEstimator):
    """A classifier defined outside scikit-learn: skops does not trust its type by default."""

    def fit(self, X, y):  # type: ignore[no-untyped-def]
        values, counts = np.unique(y, return_counts=True)
        self.majority_ = values[np.argmax(counts)]
        self.classes_ = values
        return self

    def predict(self, X):  # type: ignore[no-untyped-def]
        return np.full(len(X), self.majority_)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    return X, y


def test_sklearn_pipeline_round_trips_with_identical_predictions(ml_registry, data) -> None:  # type: ignore[no-untyped-def]
    X, y = data
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3)).fit(X, y)
    v = ml_registry.log_model(model, "fraud", input_example=X[:5], params={"C": 0.3})
    assert v.kind is modelkeep.Kind.MODEL
    assert v.provenance["model"]["flavor"] == "sklearn"
    assert v.provenance["model"]["libraries"]["scikit-learn"] == sklearn.__version__
    assert dict(ml_registry.files(v.ref)).keys() == {"model.skops", MODEL_FILE}
    loaded = ml_registry.load_model("fraud@1.0.0")
    assert loaded.flavor == "sklearn"
    assert type(loaded.raw) is type(model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_random_forest_round_trips(ml_registry, data) -> None:  # type: ignore[no-untyped-def]
    X, y = data
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    log_model(ml_registry, model, "forest")
    # skops trusts scikit-learn's estimators but not the Cython tree structure: the caller says so.
    with pytest.raises(UnsafeModel, match="sklearn.tree._tree.Tree"):
        load_model(ml_registry, "forest")
    loaded = load_model(ml_registry, "forest", trusted=["sklearn.tree._tree.Tree"])
    np.testing.assert_array_equal(loaded.raw.predict(X), model.predict(X))


def test_skops_file_with_untrusted_types_is_refused_listing_them(ml_registry, data) -> None:  # type: ignore[no-untyped-def]
    X, y = data
    ml_registry.log_model(MajorityClassifier().fit(X, y), "custom", flavor="sklearn")
    qualname = f"{MajorityClassifier.__module__}.MajorityClassifier"
    with pytest.raises(UnsafeModel, match=f"not trusted: {qualname}$") as exc:
        ml_registry.load_model("custom")
    assert "trusted=" in (exc.value.hint or "")
    loaded = ml_registry.load_model("custom", trusted=[qualname])
    assert loaded.raw.majority_ == np.bincount(y).argmax()


@pytest.mark.parametrize("serialization", ["pickle", "joblib"])
def test_pickle_is_never_loaded_without_allow_pickle(ml_registry, data, tmp_path, serialization) -> None:  # type: ignore[no-untyped-def]
    X, y = data
    model = LogisticRegression().fit(X, y)
    ml_registry.log_model(model, "pickled", options={"serialization": serialization})
    with pytest.raises(UnsafeModel, match=f"is a {serialization} file"):
        ml_registry.load_model("pickled")
    loaded = ml_registry.load_model("pickled", allow_pickle=True)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_pickle_that_runs_code_is_not_run_without_allow_pickle(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A hostile pickle uploaded as a model: refused, and the payload never runs."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "hostile"
    folder.mkdir()
    payload = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle, sys\n"
            "class P:\n"
            "    def __reduce__(self):\n"
            f"        return (exec, ({payload!r},))\n"
            f"pickle.dump(P(), open({str(folder / 'model.pkl')!r}, 'wb'))\n",
        ],
        check=True,
    )
    info = {"format": 1, "flavor": "sklearn", "data": {"path": "model.pkl", "serialization": "pickle"}}
    (folder / MODEL_FILE).write_text(json.dumps(info))
    ml_registry.push(folder, "hostile", kind="model")
    with pytest.raises(UnsafeModel):
        ml_registry.load_model("hostile")
    assert not marker.exists()


def test_files_flavor_returns_the_pulled_path(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "weights"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"\x00" * 100)
    (src / "sub" / "b.txt").write_text("hello")
    v = ml_registry.log_model(src, "plain")
    assert v.provenance["model"]["flavor"] == "files"
    loaded = ml_registry.load_model("plain", dest=tmp_path / "out")
    assert loaded.raw == (tmp_path / "out" / "files").resolve()
    assert (loaded.raw / "sub" / "b.txt").read_text() == "hello"
    with pytest.raises(InvalidInput, match="no predict"):
        loaded.predict(np.zeros(3))


def test_single_file_flavor(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "thresholds.json"
    f.write_text('{"t": 0.5}')
    ml_registry.log_model(f, "thresholds")
    path = ml_registry.load_model("thresholds", dest=tmp_path / "out").raw
    assert json.loads(path.read_text()) == {"t": 0.5}


def test_huggingface_folder_keeps_config_weights_and_tokenizer_only(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from modelkeep.ml.flavors import _tensors

    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    (src / "tokenizer.json").write_text('{"version": "1.0"}')
    (src / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (src / "training_args.txt").write_text("not part of a model folder")
    w = np.arange(16, dtype=np.float32).reshape(2, 8)
    _tensors.write(src / "model.safetensors", [("encoder.weight", _tensors.from_numpy(w))])
    v = ml_registry.log_model(src, "bert-tiny")
    assert v.provenance["model"]["flavor"] == "huggingface"
    names = {p for p, _ in ml_registry.files(v.ref)}
    assert names == {MODEL_FILE, "model/config.json", "model/tokenizer.json", "model/vocab.txt", "model/model.safetensors"}
    folder = ml_registry.load_model("bert-tiny", dest=tmp_path / "out").raw
    assert folder.config["hidden_size"] == 8
    np.testing.assert_array_equal(folder.tensors()["encoder.weight"], w)


def test_huggingface_folder_with_only_pickled_weights_is_refused(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "pytorch_model.bin").write_bytes(b"PK\x03\x04 pickled")
    with pytest.raises(UnsafeModel, match="only pickled weights"):
        ml_registry.log_model(src, "bert-pickled")
    with pytest.raises(modelkeep.ArtifactNotFound):
        ml_registry.get("bert-pickled")


def test_version_without_a_model_file_is_not_loadable(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "x.txt").write_text("x")
    ml_registry.push(tmp_path / "x.txt", "raw")
    with pytest.raises(InvalidInput, match="not logged with log_model"):
        ml_registry.load_model("raw")


def test_model_file_naming_a_path_outside_is_corrupt(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.skops").write_bytes(b"x")
    info = {"format": 1, "flavor": "sklearn", "data": {"path": "../../etc/passwd", "serialization": "skops"}}
    (folder / MODEL_FILE).write_text(json.dumps(info))
    ml_registry.push(folder, "sneaky", kind="model")
    with pytest.raises(CorruptData, match="not one modelkeep writes"):
        ml_registry.load_model("sneaky")


def test_unknown_objects_name_the_flavors() -> None:
    with pytest.raises(InvalidInput, match="no flavor stores a builtins.object"):
        detect(object())
    assert list(FLAVORS) == ["sklearn", "torch", "onnx", "huggingface", "files"]


def test_importing_modelkeep_ml_imports_no_framework() -> None:
    code = (
        "import sys, modelkeep, modelkeep.ml.flavors, modelkeep.ml.runs, modelkeep.ml.bundles, modelkeep.ml.autolog\n"
        "heavy = [m for m in ('sklearn', 'torch', 'onnx', 'onnxruntime', 'pandas', 'skops') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_missing_framework_is_one_line_naming_the_extra() -> None:
    from modelkeep.ml.flavors.base import require

    with pytest.raises(modelkeep.MissingExtra) as exc:
        require("modelkeep_no_such_framework.sub", "sklearn")
    assert str(exc.value) == "modelkeep_no_such_framework is not installed: pip install 'modelkeep[sklearn]'"
    assert "\n" not in str(exc.value)


def test_public_functions_and_methods_are_the_same(tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    X, y = data
    with modelkeep.open(tmp_path / "home", user="alice") as reg:
        v = modelkeep.log_model(reg, LogisticRegression().fit(X, y), "fraud")
        assert reg.load_model(v.ref).version == v
        assert modelkeep.load_model(reg, "fraud").flavor == "sklearn"


def test_log_model_records_the_git_state_of_the_working_directory(ml_registry, tmp_path, monkeypatch, data) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    X, y = data
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "exp"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
        cwd=repo,
        check=True,
    )
    monkeypatch.chdir(repo)  # the caller's working directory, not part of the unit under test
    v = ml_registry.log_model(LogisticRegression().fit(X, y), "fraud")
    assert v.provenance["git"]["branch"] == "exp" and v.provenance["git"]["dirty"] is False


class _PretrainedLike:
    """An object with save_pretrained, as transformers models and tokenizers have (transformers is not a test dependency)."""

    def __init__(self, weights: np.ndarray, *, pickled: bool = False) -> None:
        self.weights = weights
        self.pickled = pickled

    def save_pretrained(self, folder: str, safe_serialization: bool = False) -> None:
        from modelkeep.ml.flavors import _tensors

        root = Path(folder)
        (root / "config.json").write_text('{"model_type": "tiny"}')
        if safe_serialization and not self.pickled:
            _tensors.write(root / "model.safetensors", [("w", _tensors.from_numpy(self.weights))])
        else:
            (root / "pytorch_model.bin").write_bytes(b"pickled weights")


def test_objects_with_save_pretrained_are_saved_with_safe_serialization(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    w = np.ones((2, 2), dtype=np.float32)
    v = ml_registry.log_model(_PretrainedLike(w), "tiny-hf")
    assert v.provenance["model"]["flavor"] == "huggingface"
    folder = ml_registry.load_model("tiny-hf", dest=tmp_path / "out").raw
    np.testing.assert_array_equal(folder.tensors()["w"], w)
    with pytest.raises(UnsafeModel, match="only pickled weights"):
        ml_registry.log_model(_PretrainedLike(w, pickled=True), "tiny-hf-pickled")
