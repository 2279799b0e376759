"""The retention and signature commands, through the real CLI in a temporary home."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from modelkeep.cli.main import app

Invoke = Callable[..., Result]


@pytest.fixture
def mk(tmp_path: Path) -> Invoke:
    runner = CliRunner(
        env={
            "MODELKEEP_HOME": str(tmp_path / "home"),
            "MODELKEEP_URI": None,
            "MODELKEEP_STORE": None,
            "MODELKEEP_USER": "carol",
            "COLUMNS": "200",
        }
    )

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, list(args), prog_name="mk")
        if result.exit_code != code:
            raise AssertionError(
                f"mk {' '.join(args)} exited {result.exit_code}, expected {code}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nexception: {result.exception!r}"
            )
        return result

    return invoke


def _push(mk: Invoke, tmp_path: Path, name: str, n: int) -> None:
    for i in range(n):
        src = tmp_path / f"src-{name}-{i}"
        src.mkdir()
        (src / "w.bin").write_bytes(os.urandom(64))
        mk("push", str(src), name, "-m", f"v{i}")


def test_keys_sign_verify(mk: Invoke, tmp_path: Path) -> None:
    _push(mk, tmp_path, "fraud", 2)
    gen = json.loads(mk("keys", "generate", str(tmp_path / "k"), "--json").stdout)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    mk("keys", "generate", str(tmp_path / "k"), code=2)  # never replaces a key silently
    mk("keys", "generate", str(tmp_path / "other"))

    assert "signed fraud@1.1.0" in mk("sign", "fraud@1.1.0", "--key", str(tmp_path / "k"), "-r", "reviewed").stdout
    mk("sign", "fraud@1.1.0", "--key", str(tmp_path / "k"), code=4)  # already signed by this key
    mk("sign", "fraud@1.1.0", "--key", str(tmp_path / "k.pub"), code=2)  # a public key cannot sign

    ok = json.loads(mk("verify", "fraud@1.1.0", "--json").stdout)
    assert ok["ok"] and ok["checks"][0]["key_fingerprint"] == gen["fingerprint"]
    assert ok["checks"][0]["signature"]["signer"] == "carol"
    assert "yes" in mk("verify", "fraud@1.1.0", "--key", str(tmp_path / "k.pub")).stdout

    wrong = mk("verify", "fraud@1.1.0", "--key", str(tmp_path / "other.pub"), "--json", code=5)
    assert json.loads(wrong.stdout)["checks"][0]["detail"] == "no signature by this key"
    assert "has no signatures" in mk("verify", "fraud@1.0.0", code=5).stdout
    fp = mk("keys", "fingerprint", str(tmp_path / "k.pub")).stdout.strip()
    assert fp == gen["fingerprint"]


def test_retention_set_hold_plan_apply_deleted(mk: Invoke, tmp_path: Path) -> None:
    _push(mk, tmp_path, "fraud", 4)
    mk("retention", "set", "fraud", code=2)  # keeps nothing: refused
    mk("retention", "set", "fraud", "--keep-last", "1", "--min-days", "0", code=2)
    assert "revision 1" in mk("retention", "set", "fraud", "--keep-last", "1", "-r", "cost").stdout
    mk("retention", "hold", "fraud@1.0.0", "--reason", "audit 2026")

    plan = json.loads(mk("retention", "plan", "fraud", "--json").stdout)
    assert [(d["version"]["version"], d["delete"]) for d in plan["decisions"]] == [
        ("1.3.0", False),
        ("1.2.0", True),
        ("1.1.0", True),
        ("1.0.0", False),
    ]
    human = mk("retention", "plan").stdout
    assert "legal hold: audit 2026" in human and "would delete 2, keep 2" in human

    applied = json.loads(mk("retention", "apply", "fraud", "--reason", "cleanup", "--json").stdout)
    assert applied["applied"] and applied["decisions"] == plan["decisions"]
    err = mk("show", "fraud@1.2.0", code=3)
    assert "was deleted on" in err.stderr and "by carol: cleanup" in err.stderr
    assert "1.2.0" not in mk("log", "fraud").stdout
    deleted = json.loads(mk("retention", "deleted", "fraud", "--json").stdout)
    assert sorted(d["version"]["version"] for d in deleted) == ["1.1.0", "1.2.0"]
    assert mk("gc", "--grace", "0").exit_code == 0

    shown = json.loads(mk("retention", "show", "fraud", "--json").stdout)
    assert shown["rule"]["keep_last"] == 1 and len(shown["holds"]) == 1
    mk("retention", "release", "fraud@1.0.0", "--reason", "closed")
    mk("retention", "release", "fraud@1.0.0", "--reason", "closed", code=3)
    assert json.loads(mk("retention", "holds", "--json").stdout) == []
    assert len(json.loads(mk("retention", "holds", "fraud", "--all", "--json").stdout)) == 1
