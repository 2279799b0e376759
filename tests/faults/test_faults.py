"""Faults end to end through the real `mk` command: corruption, kill -9 mid-push."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest


def mk(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env.update(MODELKEEP_HOME=str(home), MODELKEEP_USER="tester")
    cmd = [sys.executable, "-m", "modelkeep", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"mk {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_corrupt_pack_byte_is_found_by_fsck_and_fails_pull(home, tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    (src / "weights.bin").write_bytes(np.random.default_rng(1).bytes(400_000))
    (src / "config.json").write_text('{"layers": 2}')
    mk(home, "push", str(src), "team/fraud", "--kind", "model")
    assert mk(home, "fsck").returncode == 0

    packs = sorted((home / "store" / "packs").rglob("*.pack"), key=lambda p: p.stat().st_size)
    big = packs[-1]
    raw = bytearray(big.read_bytes())
    raw[100] ^= 0x01  # inside the first chunk of weights.bin
    big.write_bytes(bytes(raw))

    fsck = mk(home, "fsck", "--json", check=False)
    assert fsck.returncode == 5
    report = json.loads(fsck.stdout)
    assert report["problems"], report
    affects = [a for p in report["problems"] for a in p["affects"]]
    assert "team/fraud@1.0.0:weights.bin" in affects

    dest = tmp_path / "out"
    pull = mk(home, "pull", "team/fraud@1.0.0", str(dest), check=False)
    assert pull.returncode == 5
    assert "weights.bin" in pull.stderr and "corrupt" in pull.stderr
    assert pull.stderr.count("error:") == 1
    assert not (dest / "weights.bin").exists()  # bad bytes never reach the destination


_SLOW_PUSH = r"""
import sys, time
import modelkeep
mk = modelkeep.open(sys.argv[1])
mk.push(sys.argv[2], "team/big", kind="model", progress=lambda n: time.sleep(0.05))
"""


def test_push_killed_mid_way_leaves_no_version_and_its_chunks_are_reused(home, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(np.random.default_rng(2).bytes(96 * 1024 * 1024))
    mk(home, "init")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_PUSH, str(home), str(src)])
    deadline = time.time() + 90
    while time.time() < deadline and not list((home / "store" / "packs").rglob("*.pack")):
        time.sleep(0.02)
    assert proc.poll() is None, "the push finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert mk(home, "log", "team/big", check=False).returncode == 3  # no version, no artifact
    assert mk(home, "fsck").returncode == 0
    done = mk(home, "push", str(src), "team/big", "--kind", "model", "--json")
    version = json.loads(done.stdout)["version"]
    assert version["version"] == "1.0.0"
    assert 0 < version["new_bytes"] < src.stat().st_size  # the sealed packs were reused
    out = tmp_path / "out"
    mk(home, "pull", "team/big", str(out))
    assert (out / "big.bin").read_bytes() == src.read_bytes()
    shutil.rmtree(out)
