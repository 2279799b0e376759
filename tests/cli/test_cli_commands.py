"""The CLI end to end, in process, against a real embedded registry in a temp home."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

Invoke = Callable[..., Result]
NAME = "team/clf"


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


@pytest.fixture
def push_two(mk: Invoke, model_dir: Path, retrain: Callable[[Path], None]) -> None:
    """Versions 1.0.0 and 1.1.0 of NAME; 1.1.0 changes one tensor and derives from 1.0.0."""
    mk("push", str(model_dir), NAME, "--kind", "model", "-m", "first", "--param", "lr=0.001", "--metric", "acc=0.9")
    retrain(model_dir)
    mk(
        "push", str(model_dir), NAME, "-m", "retrained head",
        "--param", "lr=0.0005", "--metric", "acc=0.93", "--derived-from", f"{NAME}@1.0.0",
    )  # fmt: skip


def test_init_says_where_things_are(mk: Invoke, home: Path) -> None:
    r = mk("init")
    assert str(home) in r.stdout
    assert "database" in r.stdout and "store" in r.stdout


def test_push_pull_round_trip(mk: Invoke, model_dir: Path, tmp_path: Path) -> None:
    r = mk("push", str(model_dir), NAME, "--kind", "model", "-m", "first")
    assert f"pushed as {NAME}@1.0.0" in r.stdout
    assert "new," in r.stdout and "already stored" in r.stdout
    dest = tmp_path / "out"
    r = mk("pull", f"{NAME}@1.0.0", str(dest))
    assert f"pulled from {NAME}@1.0.0" in r.stdout
    for name in ("model.safetensors", "config.json"):
        assert (dest / name).read_bytes() == (model_dir / name).read_bytes()


def test_push_same_content_makes_no_version(mk: Invoke, model_dir: Path) -> None:
    mk("push", str(model_dir), NAME, "-m", "first")
    r = mk("push", str(model_dir), NAME, "-m", "first")
    assert r.stdout.strip() == f"no change: {NAME}@1.0.0 already holds these files and metadata"
    assert len(as_json(mk("log", NAME, "--json"))) == 1


def test_push_json_and_quiet(mk: Invoke, model_dir: Path, retrain: Callable[[Path], None]) -> None:
    data = as_json(mk("push", str(model_dir), NAME, "--json", "--tag", "team=risk"))
    assert data["created"] is True
    assert data["ref"] == f"{NAME}@1.0.0"
    assert data["version"]["digest"].startswith("blake3:")
    retrain(model_dir)
    assert mk("push", str(model_dir), NAME, "-q").stdout.strip() == f"{NAME}@1.1.0"


@pytest.mark.usefixtures("push_two")
def test_log_newest_first(mk: Invoke) -> None:
    r = mk("log", NAME)
    assert r.stdout.index("1.1.0") < r.stdout.index("1.0.0")
    assert "retrained head" in r.stdout
    versions = as_json(mk("log", NAME, "--json"))
    assert [v["version"] for v in versions] == ["1.1.0", "1.0.0"]
    assert [v["version"] for v in as_json(mk("log", NAME, "-n", "1", "--json"))] == ["1.1.0"]


@pytest.mark.usefixtures("push_two")
def test_show_json_parses(mk: Invoke) -> None:
    data = as_json(mk("show", NAME, "--json"))
    assert data["ref"] == f"{NAME}@1.1.0"
    assert data["digest"].startswith("blake3:")
    assert data["params"] == {"lr": 0.0005}
    assert data["metrics"] == {"acc": 0.93}
    assert sorted(f["path"] for f in data["files"]) == ["config.json", "model.safetensors"]
    assert data["edges"][0]["type"] == "derived_from"
    assert data["edges"][0]["target"] == {"artifact": NAME, "version": "1.0.0"}
    human = mk("show", f"{NAME}@1.0.0").stdout
    assert "model.safetensors" in human and "first" in human


@pytest.mark.usefixtures("push_two")
def test_alias_set_move_history(mk: Invoke) -> None:
    r = mk("alias", "set", NAME, "production", "1.0.0", "--reason", "first release")
    assert "production" in r.stdout
    mk("alias", "set", NAME, "production", "1.1.0", "--reason", "better acc")
    moves = as_json(mk("alias", "history", NAME, "production", "--json"))
    assert [(m["previous"], m["version"], m["reason"]) for m in moves] == [
        (None, "1.0.0", "first release"),
        ("1.0.0", "1.1.0", "better acc"),
    ]
    assert moves[0]["actor"] == "tester"
    assert [a["name"] for a in as_json(mk("alias", "ls", NAME, "--json"))] == ["production"]
    assert as_json(mk("show", f"{NAME}@production", "--json"))["version"] == "1.1.0"
    assert "better acc" in mk("alias", "history", NAME).stdout
    mk("alias", "rm", NAME, "production", "--reason", "rollback drill")
    assert as_json(mk("alias", "ls", NAME, "--json")) == []
    assert as_json(mk("alias", "history", NAME, "--json"))[-1]["version"] is None


@pytest.mark.usefixtures("push_two")
def test_tags_set_remove_history(mk: Invoke) -> None:
    mk("tag", "set", f"{NAME}@1.0.0", "owner=risk", "stage=qa", "--reason", "handover")
    assert as_json(mk("tag", "ls", f"{NAME}@1.0.0", "--json"))["tags"] == {"owner": "risk", "stage": "qa"}
    mk("tag", "rm", f"{NAME}@1.0.0", "stage")
    changes = as_json(mk("tag", "history", f"{NAME}@1.0.0", "--json"))
    assert [(c["key"], c["value"]) for c in changes][-1] == ("stage", None)
    assert "handover" in mk("tag", "history", f"{NAME}@1.0.0").stdout


@pytest.mark.usefixtures("push_two")
def test_diff(mk: Invoke) -> None:
    d = as_json(mk("diff", f"{NAME}@1.0.0", f"{NAME}@1.1.0", "--json"))
    assert [c["path"] for c in d["changed"]] == ["model.safetensors"]
    assert d["unchanged"] == 1
    assert {c["key"] for c in d["params"]} == {"lr"}
    human = mk("diff", f"{NAME}@1.0.0", f"{NAME}@1.1.0").stdout
    assert "model.safetensors" in human and "acc" in human


@pytest.mark.usefixtures("push_two")
def test_lineage(mk: Invoke) -> None:
    data = as_json(mk("lineage", f"{NAME}@1.1.0", "--json"))
    assert data["root"] == f"{NAME}@1.1.0"
    assert [(n["version"]["version"], n["edge"]["type"]) for n in data["nodes"]] == [("1.0.0", "derived_from")]
    assert "derived_from" in mk("lineage", f"{NAME}@1.1.0").stdout
    down = as_json(mk("lineage", f"{NAME}@1.0.0", "--direction", "downstream", "--json"))
    assert [n["version"]["version"] for n in down["nodes"]] == ["1.1.0"]


@pytest.mark.usefixtures("push_two")
def test_ls(mk: Invoke) -> None:
    arts = as_json(mk("ls", "--json"))
    assert [(a["name"], a["kind"], a["version_count"], a["latest"]) for a in arts] == [(NAME, "model", 2, "1.1.0")]
    assert as_json(mk("ls", "--kind", "dataset", "--json")) == []
    assert NAME in mk("ls", "team").stdout


@pytest.mark.usefixtures("push_two")
def test_du_dedups(mk: Invoke) -> None:
    u = as_json(mk("du", "--json"))
    assert u["logical_bytes"] > u["stored_bytes"] > 0
    assert u["dedup_ratio"] > 1.5  # the second version changed one small tensor
    assert u["artifacts"][0]["artifact"] == NAME
    assert "dedup ratio" in mk("du").stdout


@pytest.mark.usefixtures("push_two")
def test_fsck_clean_exits_zero(mk: Invoke) -> None:
    r = mk("fsck")
    assert "no problems" in r.stdout
    assert as_json(mk("fsck", "--json"))["ok"] is True


@pytest.mark.usefixtures("push_two")
def test_gc_dry_run(mk: Invoke) -> None:
    assert as_json(mk("gc", "--dry-run", "--json"))["dry_run"] is True
    assert mk("gc", "--grace", "0").exit_code == 0
    assert as_json(mk("fsck", "--json"))["ok"] is True


def test_digest_tells_whether_local_files_are_a_version(
    mk: Invoke, model_dir: Path, retrain: Callable[[Path], None]
) -> None:
    local = as_json(mk("digest", str(model_dir), "--json"))
    assert [f["path"] for f in local["files"]] == ["config.json", "model.safetensors"]
    v = as_json(mk("push", str(model_dir), NAME, "--kind", "model", "--json"))
    shown = as_json(mk("show", NAME, "--json"))
    assert local["files_digest"] == shown["files_digest"], (local, v)
    same = mk("digest", str(model_dir), "--against", NAME)
    assert "same files as" in same.stdout and local["files_digest"] in same.stdout
    retrain(model_dir)
    differs = mk("digest", str(model_dir), "--against", NAME, "--json", ok=False)
    assert differs.exit_code == 1
    assert as_json(differs)["against"] == {
        "ref": f"{NAME}@1.0.0", "same": False, "added": [], "removed": [], "changed": ["model.safetensors"], "unchanged": 1,
    }  # fmt: skip
    missing = mk("digest", str(model_dir / "nothing-here"), ok=False)
    assert missing.exit_code != 0 and "nothing-here" in missing.stderr


# -- errors -----------------------------------------------------------------------------------


def test_unknown_artifact_exits_3_with_one_error_line(mk: Invoke) -> None:
    r = mk("show", "nobody/nothing", ok=False)
    assert r.exit_code == 3
    lines = r.stderr.strip().splitlines()
    assert sum(line.startswith("error: ") for line in lines) == 1
    assert lines[0].startswith("error: ")
    assert "Traceback" not in r.output


def test_unknown_version_exits_3(mk: Invoke, model_dir: Path) -> None:
    mk("push", str(model_dir), NAME)
    assert mk("pull", f"{NAME}@9.9.9", "out", ok=False).exit_code == 3


def test_invalid_name_exits_2(mk: Invoke, model_dir: Path) -> None:
    r = mk("push", str(model_dir), "Not A Name!", ok=False)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ")


def test_bad_metric_exits_2(mk: Invoke, model_dir: Path) -> None:
    r = mk("push", str(model_dir), NAME, "--metric", "acc=high", ok=False)
    assert r.exit_code == 2
    assert "must be a number" in r.output
    assert mk("ls", "--json").stdout.strip() == "[]"  # nothing was pushed


def test_usage_error_exits_2(mk: Invoke) -> None:
    assert mk("lineage", "x", "--direction", "sideways", ok=False).exit_code == 2
    assert mk("no-such-command", ok=False).exit_code == 2


def test_home_option_beats_environment(mk: Invoke, home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    r = mk("--home", str(other), "init")
    assert str(other) in r.stdout
    assert (other / "registry.db").exists()
    assert not (home / "registry.db").exists()


def test_error_with_hint_and_exit_code(mk: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelkeep.cli import _context
    from modelkeep.errors import StorageError

    def unreachable(settings: object) -> None:
        raise StorageError("database unreachable", hint="check MODELKEEP_URI")

    monkeypatch.setattr(_context, "open_registry", unreachable)
    r = mk("ls", ok=False)
    assert r.exit_code == 6
    assert r.stderr.splitlines() == ["error: database unreachable", "hint: check MODELKEEP_URI"]


def test_ctrl_c_exits_130(mk: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelkeep.cli import _context

    def interrupted(settings: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_context, "open_registry", interrupted)
    r = mk("ls", ok=False)
    assert r.exit_code == 130
    assert "Traceback" not in r.output
