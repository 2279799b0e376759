"""The audit trail: every mutation appends one hash-chained event; tampering is found."""

from __future__ import annotations

import sqlite3
import uuid
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelkeep.errors import ArtifactNotFound, InvalidInput
from modelkeep.registry import audit
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.store import open_store

from .conftest import MakeTree


def _push_three(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"w.bin": b"one"})
    registry.push(src, "team/fraud", metrics={"auc": 0.9}, tags={"team": "risk"})
    (src / "w.bin").write_bytes(b"two")
    registry.push(src, "team/fraud", message="retrained")
    registry.set_alias("team/fraud", "production", "1.0.0", reason="first")
    registry.set_alias("team/fraud", "production", "1.1.0", reason="better")
    registry.set_tag("team/fraud@1.1.0", "owner", "ana", reason="on call")
    registry.set_tag("team/fraud@1.1.0", "owner", None)
    registry.remove_alias("team/fraud", "production", reason="incident")


def test_every_mutation_appends_one_chained_event(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _push_three(registry, make_tree)
    events = registry.history("team/fraud")
    assert [(e.action, e.subject) for e in events] == [
        ("version.create", "team/fraud@1.0.0"),
        ("tag.set", "team/fraud@1.0.0"),
        ("version.create", "team/fraud@1.1.0"),
        ("alias.set", "team/fraud@production"),
        ("alias.move", "team/fraud@production"),
        ("tag.set", "team/fraud@1.1.0"),
        ("tag.remove", "team/fraud@1.1.0"),
        ("alias.remove", "team/fraud@production"),
    ]
    assert [e.seq for e in events] == list(range(1, 9))
    assert all(e.actor == "tester" for e in events)
    assert str(events[0].previous) == audit.GENESIS
    for before, after in zip(events, events[1:]):
        assert after.previous == before.digest
    assert events[2].reason == "retrained"
    assert events[4].data == {"alias": "production", "version": "1.1.0", "previous": "1.0.0"}
    assert events[4].reason == "better"
    assert events[1].data == {"key": "team", "value": "risk", "previous": None}
    report = registry.audit_verify()
    assert report.ok and report.events_checked == 8 and report.head_seq == 8
    assert str(report.head_digest) == str(events[-1].digest)


def test_unchanged_push_and_same_tag_value_record_nothing(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"w.bin": b"one"})
    registry.push(src, "m")
    registry.push(src, "m")
    registry.set_tag("m@1.0.0", "k", "v")
    registry.set_tag("m@1.0.0", "k", "v")
    assert [e.action for e in registry.history("m")] == ["version.create", "tag.set"]


def test_audit_log_filters(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _push_three(registry, make_tree)
    registry.push(make_tree({"x": "x"}, name="other"), "other")
    assert len(registry.audit_log()) == 9
    assert [e.artifact for e in registry.audit_log(artifact="other")] == ["other"]
    last_two = registry.audit_log(limit=2)
    assert [e.seq for e in last_two] == [8, 9]
    assert [e.seq for e in registry.audit_log(after=7)] == [8, 9]
    assert [e.seq for e in registry.audit_log(after=2, limit=3)] == [3, 4, 5]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert registry.audit_log(since=future) == []
    assert len(registry.audit_log(since=datetime(2000, 1, 1, tzinfo=UTC))) == 9
    with pytest.raises(ArtifactNotFound):
        registry.history("nope")


def test_record_checks_its_arguments(registry: EmbeddedRegistry) -> None:
    def append(**kw):  # type: ignore[no-untyped-def]
        args = dict(action="gc.run", actor="tester", artifact=None, subject="store")
        args.update(kw)
        return registry._uow.write(lambda db: audit.record(db, **args))

    with pytest.raises(InvalidInput, match="dotted lowercase"):
        append(action="Delete")
    with pytest.raises(InvalidInput, match="actor"):
        append(actor="")
    with pytest.raises(InvalidInput, match="timezone-aware"):
        append(at=datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="audit data"):
        append(data={"x": float("nan")})
    ev = append(data={"freed": (1, 2)}, reason="nightly")
    assert ev.seq == 1 and ev.data == {"freed": [1, 2]} and ev.artifact is None
    assert registry.audit_verify().ok


def test_a_failed_mutation_appends_nothing(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    registry.push(make_tree({"a": "a"}), "m")
    with pytest.raises(Exception):
        registry.set_alias("m", "production", "1.0.0", expected="9.9.9")
    assert [e.action for e in registry.audit_log()] == ["version.create"]


def test_concurrent_writers_keep_one_chain(db_url: str, tmp_path: Path) -> None:
    """Threads with registries of their own (own engines) append to one chain without forks or gaps."""
    store_url = f"file://{tmp_path / 'store'}"
    EmbeddedRegistry(db_url, store_url, "setup").close()
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    with EmbeddedRegistry(db_url, store_url, "setup") as reg:
        reg.push(src, "m")
    barrier = threading.Barrier(4)

    def writer(worker: int) -> None:
        with EmbeddedRegistry(db_url, store_url, f"w{worker}") as reg:
            barrier.wait()
            for i in range(5):
                reg.set_tag("m@1.0.0", f"k{worker}", str(i))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with EmbeddedRegistry(db_url, store_url, "check") as reg:
        events = reg.audit_log()
        assert [e.seq for e in events] == list(range(1, 22))
        report = reg.audit_verify()
        assert report.ok, report.problem


# -- tampering, directly in the SQLite file ---------------------------------------------------


@pytest.fixture
def tampered(tmp_path: Path, make_tree: MakeTree):  # type: ignore[no-untyped-def]
    """A SQLite registry with 8 events, and a function that runs SQL on it with sqlite3, then verifies."""
    db = tmp_path / "registry.db"
    store = open_store(f"memory://audit-tamper-{uuid.uuid4().hex}")
    reg = EmbeddedRegistry(f"sqlite:///{db}", store, "tester")
    _push_three(reg, make_tree)
    assert reg.audit_verify().ok

    def run(*sql: str, params: tuple = ()):  # type: ignore[no-untyped-def]
        conn = sqlite3.connect(db)
        with conn:
            for stmt in sql:
                conn.execute(stmt, params if "?" in stmt else ())
        conn.close()
        return reg.audit_verify()

    yield run
    reg.close()
    store.close()


def test_verify_finds_an_edited_event(tampered) -> None:  # type: ignore[no-untyped-def]
    report = tampered("UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 5")
    assert not report.ok
    assert (report.problem.seq, report.problem.kind) == (5, "edited")


def test_verify_finds_edited_data_and_actor(tampered) -> None:  # type: ignore[no-untyped-def]
    report = tampered("""UPDATE audit_events SET data = '{"alias":"production","previous":"1.0.0","version":"1.0.0"}' WHERE seq = 5""")
    assert (report.problem.seq, report.problem.kind) == (5, "edited")
    report = tampered("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    assert (report.problem.seq, report.problem.kind) == (2, "edited")


def test_verify_finds_an_event_edited_with_a_recomputed_digest(tampered, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(tmp_path / "registry.db")
    row = conn.execute("SELECT seq, at, actor, action, artifact, subject, reason, data, previous FROM audit_events WHERE seq = 3").fetchone()
    conn.close()
    import json

    at = datetime.fromisoformat(row[1]).replace(tzinfo=UTC)
    forged = audit.event_digest(row[0], at, row[2], row[3], row[4], row[5], "innocent", json.loads(row[7]), row[8])
    report = tampered("UPDATE audit_events SET reason = 'innocent', digest = ? WHERE seq = 3", params=(forged,))
    assert (report.problem.seq, report.problem.kind) == (3, "edited")


def test_verify_finds_a_deleted_event(tampered) -> None:  # type: ignore[no-untyped-def]
    report = tampered("DELETE FROM audit_events WHERE seq = 4")
    assert (report.problem.seq, report.problem.kind) == (4, "deleted")


def test_verify_finds_deleted_newest_events(tampered) -> None:  # type: ignore[no-untyped-def]
    report = tampered("DELETE FROM audit_events WHERE seq >= 7")
    assert (report.problem.seq, report.problem.kind) == (7, "deleted")
    assert "7..8" in report.problem.detail


def test_verify_finds_a_deletion_hidden_by_renumbering(tampered) -> None:  # type: ignore[no-untyped-def]
    report = tampered(
        "DELETE FROM audit_events WHERE seq = 4",
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq > 4",
        "UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000",
        "UPDATE audit_head SET seq = 7",
    )
    assert (report.problem.seq, report.problem.kind) == (4, "deleted")


def test_verify_finds_an_inserted_event(tampered) -> None:  # type: ignore[no-untyped-def]
    report = tampered(
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 4",
        "UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000",
        "INSERT INTO audit_events (seq, at, actor, action, artifact, subject, reason, data, previous, digest) "
        "SELECT 4, at, 'mallory', 'alias.move', artifact, subject, 'sneaky', '{}', digest, digest FROM audit_events WHERE seq = 3",
        "UPDATE audit_head SET seq = 9",
    )
    assert (report.problem.seq, report.problem.kind) == (4, "inserted")


def test_verify_finds_an_event_appended_behind_the_head(tampered) -> None:  # type: ignore[no-untyped-def]
    report = tampered(
        "INSERT INTO audit_events (seq, at, actor, action, artifact, subject, reason, data, previous, digest) "
        "SELECT 9, at, 'mallory', 'alias.move', artifact, subject, 'sneaky', '{}', digest, digest FROM audit_events WHERE seq = 8"
    )
    assert (report.problem.seq, report.problem.kind) == (9, "inserted")


def test_verify_finds_reordered_events(tampered) -> None:  # type: ignore[no-untyped-def]
    report = tampered(
        "UPDATE audit_events SET seq = 100 WHERE seq = 5",
        "UPDATE audit_events SET seq = 5 WHERE seq = 6",
        "UPDATE audit_events SET seq = 6 WHERE seq = 100",
    )
    assert (report.problem.seq, report.problem.kind) == (5, "reordered")


def test_verify_finds_a_reordering_of_timestamps(tampered) -> None:  # type: ignore[no-untyped-def]
    report = tampered("UPDATE audit_events SET at = '2020-01-01 00:00:00.000000' WHERE seq = 6")
    assert (report.problem.seq, report.problem.kind) == (6, "edited")


def test_events_survive_the_rows_they_describe(tampered, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # No foreign key from events to versions: removing version rows leaves the chain whole.
    report = tampered(
        "PRAGMA foreign_keys = OFF",
        "DELETE FROM tag_changes",
        "DELETE FROM tags",
        "DELETE FROM alias_moves",
        "DELETE FROM versions WHERE major = 1 AND minor = 1",
    )
    assert report.ok


def test_a_gc_run_is_recorded_but_not_a_dry_run(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    registry.push(make_tree({"a": "a"}), "m")
    registry.gc(dry_run=True, grace_seconds=0)
    registry.gc(grace_seconds=0)
    events = registry.audit_log()
    assert [e.action for e in events] == ["version.create", "gc.run"]
    assert events[-1].artifact is None and events[-1].subject == "store"
    assert set(events[-1].data) >= {"chunks_deleted", "bytes_freed"}
