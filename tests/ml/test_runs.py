"""Training runs: a version on success with everything that made it; a failure recorded, no version."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

import modelkeep
from modelkeep.errors import ArtifactNotFound, ConflictError, InvalidInput
from modelkeep.ml import environment
from modelkeep.ml.autolog import autolog
from modelkeep.ml.runs import run

pytest.importorskip("sklearn")
pytest.importorskip("skops")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    return X, (X[:, 0] > 0).astype(np.int64)


@pytest.fixture
def dataset(ml_registry, tmp_path):  # type: ignore[no-untyped-def]
    (tmp_path / "transactions.csv").write_text("id,amount\n1,2.0\n")
    return ml_registry.push(tmp_path / "transactions.csv", "transactions", kind="dataset")


def _git_repo(path: Path) -> Path:
    path.mkdir()
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"],
    ):
        subprocess.run(cmd, cwd=path, check=True)
    return path


def test_successful_run_makes_one_version_with_everything(ml_registry, data, dataset, tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, y = data
    repo = _git_repo(tmp_path / "repo")
    (repo / "train.py").write_text("print('uncommitted')\n")
    with run("fraud", registry=ml_registry, trained_on=dataset.ref, seed=7, workdir=repo) as r:
        assert random.random() == random.Random(7).random()  # the seed was set before the block
        r.log_params({"C": 0.5, "solver": "lbfgs"})
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            r.log_metrics({"loss": loss}, step=step)
        model = LogisticRegression(C=0.5).fit(X, y)
        r.log_metrics({"accuracy": float(model.score(X, y))})
        r.log_model(model, input_example=X[:4])
        assert r.version is None  # made on exit, not before
    v = r.version
    assert v is not None and v.ref == "fraud@1.0.0"
    assert v.params == {"C": 0.5, "solver": "lbfgs"}
    assert v.metrics["loss"] == 0.3 and 0.5 < v.metrics["accuracy"] <= 1.0
    assert [(str(e.type), str(e.target)) for e in v.edges] == [("trained_on", "transactions@1.0.0")]
    info = v.provenance["run"]
    assert info["status"] == "succeeded" and info["duration_s"] >= 0
    assert info["series"]["loss"] == [[0, 0.9, pytest.approx(info["series"]["loss"][0][2])], *info["series"]["loss"][1:]]
    assert [p[1] for p in info["series"]["loss"]] == [0.9, 0.5, 0.3]
    assert info["peak_rss_bytes"] > 1_000_000
    assert v.provenance["seeds"]["set"] == {"python": 7, "numpy": 7, **({"torch": 7} if "torch" in v.provenance["seeds"]["set"] else {})}
    git = v.provenance["git"]
    assert git["branch"] == "main" and git["dirty"] is True and git["diff_digest"].startswith("blake3:")
    for key in ("python", "packages", "os", "cpu"):
        assert key in v.provenance
    assert v.provenance["model"]["flavor"] == "sklearn"
    events = [e for e in ml_registry.history("fraud") if e.action.startswith("run.")]
    assert [(e.action, e.subject) for e in events] == [("run.succeeded", "fraud@1.0.0")]
    np.testing.assert_array_equal(ml_registry.load_model(v.ref).predict(X[:4]), model.predict(X[:4]))


def test_uncommitted_changes_change_the_diff_digest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = _git_repo(tmp_path / "repo")
    assert environment.git_state(repo)["diff_digest"] is None
    (repo / "a.py").write_text("1\n")
    first = environment.git_state(repo)["diff_digest"]
    (repo / "a.py").write_text("2\n")
    subprocess.run(["git", "add", "a.py"], cwd=repo, check=True)
    second = environment.git_state(repo)["diff_digest"]
    assert first and second and first != second


def test_failed_run_is_recorded_and_makes_no_version(ml_registry, data) -> None:  # type: ignore[no-untyped-def]
    X, y = data
    with pytest.raises(ZeroDivisionError):
        with run("fraud", registry=ml_registry) as r:
            r.log_params({"C": 1.0})
            r.log_metrics({"loss": 0.7}, step=0)
            r.log_model(LogisticRegression().fit(X, y))
            1 / 0  # noqa: B018
    with pytest.raises(ArtifactNotFound):
        ml_registry.versions("fraud")
    (event,) = ml_registry.history("fraud")
    assert event.action == "run.failed" and event.subject == "fraud"
    assert event.reason == "ZeroDivisionError: division by zero"
    assert event.data["params"] == {"C": 1.0} and event.data["run"]["series"]["loss"][0][:2] == [0, 0.7]
    assert "Traceback" in event.data["run"]["traceback"]


def test_a_run_that_logs_no_model_makes_no_version(ml_registry) -> None:  # type: ignore[no-untyped-def]
    with run("sweep", registry=ml_registry) as r:
        r.log_metrics({"loss": 1.0})
    assert r.version is None
    assert [e.action for e in ml_registry.history("sweep")] == ["run.succeeded"]


def test_bad_metrics_and_seeds_are_refused(ml_registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="finite number"):
        with run("m", registry=ml_registry) as r:
            r.log_metrics({"loss": float("nan")})
    with pytest.raises(InvalidInput, match="seed must be an integer"):
        with run("m", registry=ml_registry, seed=-1):
            pass


def test_run_as_a_method_of_the_opened_registry(tmp_path, data) -> None:  # type: ignore[no-untyped-def]
    X, y = data
    with modelkeep.open(tmp_path / "home", user="alice") as reg:
        with reg.run("fraud") as r:
            r.log_model(LogisticRegression().fit(X, y))
        assert reg.get("fraud").version == "1.0.0" and r.version.author == "alice"


def test_autolog_logs_the_outermost_fit_and_stops_cleanly(ml_registry, data, dataset) -> None:  # type: ignore[no-untyped-def]
    X, y = data
    original = LogisticRegression.fit
    with autolog(registry=ml_registry, name="auto", trained_on=dataset.ref) as log:
        assert LogisticRegression.fit is not original
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=2.0)).fit(X, y)
        LogisticRegression(C=3.0).fit(X, y)
    assert LogisticRegression.fit is original
    assert [v.version for v in log.versions] == ["1.0.0", "1.1.0"]  # a pipeline, then a bare estimator (same signature)
    first, second = (ml_registry.get(f"auto@{v.version}") for v in log.versions)
    assert first.params["estimator"] == "sklearn.pipeline.Pipeline"
    assert second.params["C"] == 3.0 and "training_score" in second.metrics
    assert [str(e.target) for e in second.edges] == ["transactions@1.0.0"]
    loaded = ml_registry.load_model("auto@1.0.0")
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))
    LogisticRegression().fit(X, y)  # after stop: nothing logged
    assert len(ml_registry.versions("auto")) == 2


def test_autolog_records_a_failing_fit_and_refuses_to_nest(ml_registry) -> None:  # type: ignore[no-untyped-def]
    with autolog(registry=ml_registry) as _:
        with pytest.raises(ConflictError, match="already active"):
            autolog(registry=ml_registry)
        with pytest.raises(ValueError):
            LogisticRegression().fit(np.zeros((4, 2)), np.zeros(4))  # one class only
    (event,) = ml_registry.history("sklearn-logisticregression")
    assert event.action == "run.failed" and "ValueError" in event.reason


def test_autolog_logs_a_sparse_fit_without_a_signature(ml_registry, data) -> None:  # type: ignore[no-untyped-def]
    from scipy import sparse

    X, y = data
    with autolog(registry=ml_registry, name="sparse") as log:
        LogisticRegression().fit(sparse.csr_matrix(X), y)
    (v,) = log.versions
    assert v.signature is None and v.metrics["training_score"] > 0.5
