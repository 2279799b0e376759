"""Flavors, signatures and runs over the remote registry (a real uvicorn server on 127.0.0.1)."""

from __future__ import annotations

import numpy as np
import pytest

from modelkeep.errors import SignatureMismatch
from modelkeep.registry.operations import Role

pytest.importorskip("fastapi")
pytest.importorskip("sklearn")
pytest.importorskip("skops")

from _servers import served  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402


def test_log_load_and_run_through_the_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    with served(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "store") as srv:
        token = srv.user("tester", {"*": Role.ADMIN})
        with srv.remote(token) as reg:
            v1 = reg.log_model(LogisticRegression().fit(X, y), "fraud", input_example=X[:3])
            assert v1.signature is not None and v1.provenance["model"]["flavor"] == "sklearn"
            v2 = reg.log_model(LogisticRegression().fit(X[:, :2], y), "fraud", input_example=X[:3, :2])
            assert v2.version == "2.0.0"  # the signature changed
            loaded = reg.load_model("fraud@1.0.0")
            np.testing.assert_array_equal(loaded.predict(X), LogisticRegression().fit(X, y).predict(X))
            with pytest.raises(SignatureMismatch):
                loaded.predict(X[:, :2])
            with pytest.raises(RuntimeError):
                with reg.run("fraud") as r:
                    r.log_params({"C": 1.0})
                    raise RuntimeError("diverged")
            assert reg.history("fraud")[-1].action == "run.failed"
            with reg.run("fraud", seed=3) as r:
                r.log_model(LogisticRegression(C=0.5).fit(X, y), input_example=X[:3])
            assert r.version is not None and r.version.provenance["seeds"]["set"]["python"] == 3
            assert reg.history("fraud")[-1].action == "run.succeeded"
