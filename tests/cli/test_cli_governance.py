"""mk stage / promote / policy / approve / reject / rollback / history / audit / alias at, through the real CLI."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

Invoke = Callable[..., Result]


@pytest.fixture
def fraud(mk: Invoke, tmp_path: Path) -> Path:
    """fraud 1.0.0 in production, 1.1.0 (worse) and 1.2.0 (better) in validation."""
    src = tmp_path / "m"
    src.mkdir()
    for n, (acc, lat) in enumerate(((0.90, 20), (0.80, 30), (0.93, 21))):
        (src / "w").write_text(str(n))
        mk("push", str(src), "fraud", "--metric", f"accuracy={acc}", "--metric", f"latency_p95_ms={lat}")
        mk("stage", f"fraud@1.{n}.0", "staging", "--reason", "candidate")
        mk("stage", f"fraud@1.{n}.0", "validation")
    mk("promote", "fraud@1.0.0", "--reason", "first")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        "  - accuracy >= production.accuracy - 0.005\n"
        "  - latency_p95_ms <= 1.10 * production.latency_p95_ms\n"
        "required_approvals: 1\n"
        "approvers: [alice]\n"
    )
    mk("policy", "set", "fraud", str(policy), "--reason", "gates")
    return tmp_path


def test_a_refused_promotion_prints_every_rule_and_moves_nothing(mk: Invoke, fraud: Path) -> None:
    r = mk("promote", "fraud@1.1.0", ok=False)
    assert r.exit_code == 4
    assert "accuracy >= production.accuracy - 0.005" in r.stdout
    assert "0.8 >= 0.895" in r.stdout and "30 <= 22" in r.stdout
    assert r.stdout.count("FAIL") == 3
    assert "error: policy r1 refuses fraud@1.1.0" in r.stderr
    assert mk("alias", "ls", "fraud", "--json").stdout.count('"1.0.0"') == 1
    data = json.loads(mk("promote", "fraud@1.1.0", "--json", ok=False).stdout)
    assert [x["status"] for x in data["results"]] == ["fail", "fail", "fail"]


def test_approve_then_promote_then_rollback(mk: Invoke, fraud: Path) -> None:
    mk("approve", "request", "fraud@1.2.0", "--comment", "better on holdout")
    r = mk("approve", "fraud@1.2.0", "--comment", "mine", ok=False)
    assert r.exit_code == 4 and "author" in r.stderr
    assert "fraud@1.2.0" in mk("approve", "pending").stdout
    r = mk("--user", "alice", "approve", "fraud@1.2.0", "--comment", "ok")
    assert "alice approved fraud@1.2.0" in r.stdout
    assert mk("approve", "pending").stdout.strip() == "no pending approvals"
    r = mk("promote", "fraud@1.2.0", "--reason", "approved")
    assert "fraud@production → 1.2.0 (was 1.0.0)" in r.stdout and "fraud@1.0.0 archived" in r.stdout
    r = mk("rollback", "fraud", ok=False)
    assert r.exit_code == 2  # --reason is required
    r = mk("rollback", "fraud", "--reason", "error rate")
    assert "fraud@production → 1.0.0 (was 1.2.0)" in r.stdout
    stages = json.loads(mk("stages", "fraud", "--json").stdout)
    assert stages == {"1.0.0": "production", "1.1.0": "validation", "1.2.0": "archived"}
    assert "production" in mk("show", "fraud@1.0.0").stdout
    assert "archived" in mk("log", "fraud").stdout


def test_reject_and_force(mk: Invoke, fraud: Path) -> None:
    mk("approve", "request", "fraud@1.2.0")
    mk("--user", "alice", "reject", "fraud@1.2.0", "--comment", "EU latency")
    r = mk("promote", "fraud@1.2.0", ok=False)
    assert "rejected by alice: EU latency" in r.stdout
    r = mk("promote", "fraud@1.1.0", "--force", ok=False)
    assert r.exit_code == 2 and "needs a reason" in r.stderr
    r = mk("promote", "fraud@1.1.0", "--force", "--reason", "incident 7")
    assert "by override" in r.stdout
    history = json.loads(mk("history", "fraud", "--json").stdout)
    assert "promotion.override" in [e["action"] for e in history]


def test_policy_errors_name_the_line(mk: Invoke, fraud: Path) -> None:
    bad = fraud / "bad.yaml"
    bad.write_text("rules:\n  - accuracy >= 0.9\n  - acuracy >= 0.9\n")
    r = mk("policy", "set", "fraud", str(bad), ok=False)
    assert r.exit_code == 2 and "line 3: unknown metric 'acuracy'" in r.stderr
    bad.write_text("rules:\n  - open('x') > 1\n")
    r = mk("policy", "set", "fraud", str(bad), ok=False)
    assert r.exit_code == 2 and "line 2" in r.stderr and "not allowed" in r.stderr
    assert "revision 1" in mk("policy", "show", "fraud").stdout
    assert len(json.loads(mk("policy", "history", "fraud", "--json").stdout)) == 1
    r = mk("policy", "check", "fraud@1.1.0", ok=False)
    assert r.exit_code == 4 and "would be refused" in r.stdout


def test_history_audit_log_export_and_alias_at(mk: Invoke, fraud: Path) -> None:
    out = mk("history", "fraud").stdout
    for action in ("version.create", "stage.change", "alias.set", "policy.set"):
        assert action in out
    events = json.loads(mk("audit", "log", "--artifact", "fraud", "--json").stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len(json.loads(mk("audit", "log", "--limit", "2", "--json").stdout)) == 2
    assert json.loads(mk("audit", "log", "--since", "2999-01-01T00:00:00Z", "--json").stdout) == []
    assert mk("audit", "log", "--since", "2020-01-01", ok=False).exit_code == 0
    assert mk("audit", "log", "--since", "2020-01-01T00:00:00", ok=False).exit_code == 2
    target = fraud / "audit.jsonl"
    mk("audit", "export", "--jsonl", str(target))
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == len(events) and lines[0]["previous"] == "blake3:" + "0" * 64
    assert lines[1]["previous"] == lines[0]["digest"]
    assert mk("audit", "export", "--jsonl").stdout.count("\n") == len(events)
    first = events[0]["at"]
    assert mk("alias", "at", "fraud", "production", first).stdout.strip().startswith("fraud@production pointed nowhere")
    assert mk("alias", "at", "fraud", "production", "2999-01-01T00:00:00Z").stdout.strip() == "1.0.0"


def test_audit_verify_catches_tampering_in_sqlite(mk: Invoke, fraud: Path, home: Path) -> None:
    r = mk("audit", "verify")
    assert r.stdout.startswith("audit chain ok:")
    conn = sqlite3.connect(home / "registry.db")
    with conn:
        conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    conn.close()
    r = mk("audit", "verify", ok=False)
    assert r.exit_code == 5
    assert "audit chain broken at event 3 (edited)" in r.stderr
    report = json.loads(mk("audit", "verify", "--json", ok=False).stdout)
    assert report["problem"]["seq"] == 3 and report["problem"]["kind"] == "edited"
