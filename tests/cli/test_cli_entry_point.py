"""The installed console scripts, run for real in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _script(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name!r} is not installed; run: pip install -e .")
    return found


def test_mk_help() -> None:
    r = subprocess.run([_script("mk"), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    for command in ("push", "pull", "log", "alias", "lineage", "fsck", "demo"):
        assert command in r.stdout


def test_modelkeep_entry_point_runs_commands(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env["MODELKEEP_HOME"] = str(tmp_path / "home")
    run = [_script("modelkeep")]
    r = subprocess.run([*run, "init"], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert r.returncode == 0, r.stderr
    (tmp_path / "weights.bin").write_bytes(os.urandom(100_000))
    r = subprocess.run(
        [*run, "push", str(tmp_path / "weights.bin"), "x/weights", "-m", "one"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "pushed as x/weights@1.0.0" in r.stdout
    r = subprocess.run([*run, "show", "x/missing"], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert r.returncode == 3
    assert r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr
