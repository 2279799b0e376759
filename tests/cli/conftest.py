"""Drive the real CLI in process against a registry in a temporary home."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from modelkeep.cli.main import app
from modelkeep.demo import make_classifier, write_safetensors

Invoke = Callable[..., Result]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def mk(home: Path) -> Invoke:
    """``mk("push", ...)`` runs the CLI with MODELKEEP_HOME set to a fresh home."""
    runner = CliRunner(
        env={
            "MODELKEEP_HOME": str(home),
            "MODELKEEP_URI": None,
            "MODELKEEP_STORE": None,
            "MODELKEEP_USER": "tester",
            "COLUMNS": "200",
        }
    )

    def invoke(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(app, list(args), prog_name="mk")
        if ok and result.exit_code != 0:
            raise AssertionError(
                f"mk {' '.join(args)} exited {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
                f"\nexception: {result.exception!r}"
            )
        return result

    return invoke


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small model folder: a safetensors file and a config."""
    folder = tmp_path / "model"
    folder.mkdir()
    tensors = {k: v for k, v in list(make_classifier(seed=3).items())[1:]}  # skip the 2 MB embedding
    write_safetensors(folder / "model.safetensors", tensors)
    (folder / "config.json").write_text('{"hidden": 256}\n')
    return folder


@pytest.fixture
def retrain() -> Callable[[Path], None]:
    """Change one tensor of the model in a folder made by ``model_dir``, in place."""

    def change(folder: Path, seed: int = 4) -> None:
        tensors = {k: v for k, v in list(make_classifier(seed=3).items())[1:]}
        tensors["head.weight"] = np.random.default_rng(seed).standard_normal((256, 10), dtype=np.float32)
        write_safetensors(folder / "model.safetensors", tensors)

    return change
