"""One suite of Registry behaviour, run on every implementation (see conftest.py).

Whatever passes on the embedded registry must pass, unchanged, through the server:
same records, same version rules, and errors of the same classes.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import modelkeep
from modelkeep import (
    AliasNotFound,
    ArtifactNotFound,
    ConflictError,
    Direction,
    InvalidName,
    InvalidPath,
    InvalidRef,
    InvalidVersion,
    KindMismatch,
    TagNotFound,
    VersionExists,
    VersionNotFound,
)
from modelkeep.registry.api import Registry


def test_push_get_pull_round_trip(registry: modelkeep.Registry, ns: str, make_tree, tmp_path: Path) -> None:
    src = make_tree({"weights.bin": b"w" * 5000, "conf/config.json": '{"a": 1}'})
    v = registry.push(src, f"{ns}/fraud", kind="model", message="first", params={"lr": 0.1}, metrics={"auc": 0.9})
    assert (v.artifact, v.version, v.kind, v.author) == (f"{ns}/fraud", "1.0.0", modelkeep.Kind.MODEL, "tester")
    assert v.params == {"lr": 0.1} and v.metrics == {"auc": 0.9} and v.message == "first"
    assert v.size == 5000 + len('{"a": 1}') and v.file_count == 2
    assert registry.get(f"{ns}/fraud") == v
    assert registry.get(f"{ns}/fraud@1.0.0") == v
    assert registry.get(f"{ns}/fraud@{str(v.digest)[:13]}") == v
    assert registry.files(f"{ns}/fraud@1.0.0") == [("conf/config.json", 8), ("weights.bin", 5000)]
    got = registry.pull(f"{ns}/fraud@latest", tmp_path / "out")
    assert got == v
    assert (tmp_path / "out" / "weights.bin").read_bytes() == b"w" * 5000
    assert (tmp_path / "out" / "conf" / "config.json").read_text() == '{"a": 1}'
    version, manifest = registry.manifest(f"{ns}/fraud")
    assert version == v and sorted(f.path for f in manifest) == ["conf/config.json", "weights.bin"]


def test_version_rules(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    name = f"{ns}/m"
    v1 = registry.push(make_tree({"a": "1"}, name="a"), name)
    assert registry.push(make_tree({"a": "1"}, name="a"), name) == v1  # nothing changed: no new version
    v2 = registry.push(make_tree({"a": "2"}, name="b"), name)
    v3 = registry.push(make_tree({"a": "2"}, name="b"), name, params={"x": 1})
    v4 = registry.push(make_tree({"a": "2"}, name="b"), name, major=True)
    assert [v.version for v in (v1, v2, v3, v4)] == ["1.0.0", "1.1.0", "1.1.1", "2.0.0"]
    assert [v.version for v in registry.versions(name)] == ["2.0.0", "1.1.1", "1.1.0", "1.0.0"]
    assert [v.version for v in registry.versions(name, limit=2, offset=1)] == ["1.1.1", "1.1.0"]
    with pytest.raises(VersionExists):
        registry.push(make_tree({"a": "3"}, name="c"), name, version="2.0.0")
    with pytest.raises(InvalidVersion):
        registry.push(make_tree({"a": "3"}, name="c"), name, version="1.5.0")
    assert registry.push(make_tree({"a": "3"}, name="c"), name, version="3.0.0").version == "3.0.0"


def test_errors_keep_their_type(registry: modelkeep.Registry, ns: str, make_tree, tmp_path: Path) -> None:
    registry.push(make_tree({"a": "1"}), f"{ns}/m", kind="model")
    with pytest.raises(ArtifactNotFound):
        registry.get(f"{ns}/absent")
    with pytest.raises(ArtifactNotFound):
        registry.artifact(f"{ns}/absent")
    with pytest.raises(VersionNotFound):
        registry.get(f"{ns}/m@9.9.9")
    with pytest.raises(AliasNotFound):
        registry.get(f"{ns}/m@nowhere")
    with pytest.raises(InvalidName):
        registry.versions("Bad Name")
    with pytest.raises(InvalidRef):
        registry.get(f"{ns}/m@blake3:zz")
    with pytest.raises(KindMismatch):
        registry.push(make_tree({"a": "2"}, name="k"), f"{ns}/m", kind="dataset")
    with pytest.raises(InvalidPath):
        registry.push(tmp_path / "does-not-exist", f"{ns}/m")
    with pytest.raises(AliasNotFound):
        registry.remove_alias(f"{ns}/m", "production")
    try:
        registry.get(f"{ns}/absent")
    except ArtifactNotFound as exc:
        assert f"{ns}/absent" in exc.message and exc.exit_code == 3 and exc.code == "artifact_not_found"


def test_aliases_with_history(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    name = f"{ns}/m"
    registry.push(make_tree({"a": "1"}, name="a"), name)
    registry.push(make_tree({"a": "2"}, name="b"), name)
    before = datetime.now(UTC)
    move = registry.set_alias(name, "production", "1.0.0", reason="first")
    assert (move.alias, move.version, move.previous, move.actor, move.reason) == ("production", "1.0.0", None, "tester", "first")
    with pytest.raises(ConflictError):
        registry.set_alias(name, "production", "1.1.0", expected="")
    registry.set_alias(name, "production", f"{name}@1.1.0", expected="1.0.0")
    assert [(a.name, a.version) for a in registry.aliases(name)] == [("production", "1.1.0")]
    assert registry.alias_target(name, "production").version == "1.1.0"
    assert registry.get(f"{name}@production").aliases == ("production",)
    removed = registry.remove_alias(name, "production", reason="rollback")
    assert removed.version is None and removed.previous == "1.1.0"
    history = registry.alias_history(name, "production")
    assert [(m.version, m.previous) for m in history] == [("1.0.0", None), ("1.1.0", "1.0.0"), (None, "1.1.0")]
    assert registry.alias_at(name, "production", before - timedelta(seconds=5)) is None
    assert registry.alias_at(name, "production", history[0].at) == "1.0.0"
    with pytest.raises(InvalidName):
        registry.set_alias(name, "latest", "1.0.0")


def test_tags_with_history(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    ref = f"{ns}/m@1.0.0"
    registry.push(make_tree({"a": "1"}), f"{ns}/m")
    change = registry.set_tag(ref, "stage", "qa", reason="why")
    assert (change.key, change.value, change.previous, change.actor) == ("stage", "qa", None, "tester")
    registry.set_tag(ref, "stage", None)
    assert [(c.value, c.previous) for c in registry.tag_history(ref, "stage")] == [("qa", None), (None, "qa")]
    with pytest.raises(TagNotFound):
        registry.set_tag(ref, "stage", None)
    assert registry.get(ref).tags == {}


def test_lineage_and_diff(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    data = registry.push(make_tree({"rows.csv": "1,2"}, name="d"), f"{ns}/data", kind="dataset")
    base = registry.push(make_tree({"w": "base", "same": "s"}, name="b"), f"{ns}/base", kind="model", trained_on=data.ref)
    tuned = registry.push(
        make_tree({"w": "tuned!", "same": "s", "new": "n"}, name="t"),
        f"{ns}/tuned",
        kind="model",
        derived_from=[base.ref],
        params={"lr": 0.01},
    )
    up = registry.lineage(tuned.ref)
    assert [(str(n.version), n.depth, n.edge.type.value) for n in up] == [
        (base.ref, 1, "derived_from"),
        (data.ref, 2, "trained_on"),
    ]
    down = registry.lineage(data.ref, direction=Direction.DOWNSTREAM, depth=1)
    assert [str(n.version) for n in down] == [base.ref]
    assert [str(n.version) for n in registry.lineage(data.ref, direction="downstream")] == [base.ref, tuned.ref]
    d = registry.diff(base.ref, tuned.ref)
    assert [c.path for c in d.added] == ["new"] and [c.path for c in d.changed] == ["w"] and d.unchanged == 1
    assert [(p.key, p.old, p.new) for p in d.params] == [("lr", None, 0.01)]
    with pytest.raises(VersionNotFound):
        registry.push(make_tree({"x": "1"}, name="x"), f"{ns}/bad", derived_from=f"{ns}/base@7.0.0")


def test_artifacts_listing(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    registry.push(make_tree({"a": "1"}, name="a"), f"{ns}/one", kind="model")
    registry.push(make_tree({"a": "2"}, name="b"), f"{ns}/two", kind="dataset")
    arts = registry.artifacts(namespace=ns)
    assert [(a.name, a.kind.value, a.version_count, a.latest, a.created_by) for a in arts] == [
        (f"{ns}/one", "model", 1, "1.0.0", "tester"),
        (f"{ns}/two", "dataset", 1, "1.0.0", "tester"),
    ]
    assert [a.name for a in registry.artifacts(namespace=ns, kind="dataset")] == [f"{ns}/two"]
    assert registry.artifact(f"{ns}/one") == arts[0]
    assert {f"{ns}/one", f"{ns}/two"} <= {a.name for a in registry.artifacts()}


def test_storage_reports(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    registry.push(make_tree({"a": b"x" * 10000}), f"{ns}/m")
    du = registry.du()
    assert du.logical_bytes >= 10000 and du.chunks >= 1 and any(a.artifact == f"{ns}/m" for a in du.artifacts)
    report = registry.fsck()
    assert report.ok and report.chunks_checked >= 1
    gc = registry.gc(dry_run=True)
    assert gc.dry_run is True and gc.packs_deleted == 0


def test_audit_trail(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    registry.push(make_tree({"a": "1"}), f"{ns}/m")
    registry.set_alias(f"{ns}/m", "production", "1.0.0", reason="ship")
    events = registry.history(f"{ns}/m")
    assert [e.action for e in events][-1].startswith("alias")
    assert all(e.actor == "tester" for e in events)
    log = registry.audit_log(artifact=f"{ns}/m", limit=1)
    assert len(log) == 1 and log[0] == events[-1]
    assert registry.audit_verify().ok


def test_retention_holds(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    ref = f"{ns}/m@1.0.0"
    registry.push(make_tree({"a": "1"}), f"{ns}/m")
    hold = registry.hold(ref, reason="legal")
    assert hold.reason == "legal"
    assert [h.reason for h in registry.holds(f"{ns}/m")] == ["legal"]
    released = registry.release(ref, reason="done")
    assert len(released) == 1 and registry.holds(f"{ns}/m") == []
    rule = registry.set_retention(f"{ns}/m", keep_last=5, reason="policy")
    assert registry.retention(f"{ns}/m") == rule
    assert registry.retention_history(f"{ns}/m") == [rule]
    plan = registry.plan_retention(f"{ns}/m")
    assert plan.applied is False
    assert registry.tombstones(f"{ns}/m") == []


def test_signatures(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from cryptography.hazmat.primitives import serialization

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    ref = f"{ns}/m@1.0.0"
    registry.push(make_tree({"a": "1"}), f"{ns}/m")
    sig = registry.sign(ref, pem, reason="release")
    assert registry.signatures(ref) == [sig]
    checks = registry.verify(ref, [pub])
    assert len(checks) == 1 and checks[0].valid


def test_every_abstract_method_is_implemented() -> None:
    from modelkeep.client.remote import RemoteRegistry
    from modelkeep.registry.embedded import EmbeddedRegistry

    abstract = {n for n, f in inspect.getmembers(Registry) if getattr(f, "__isabstractmethod__", False)}
    assert abstract, "the Registry ABC declares abstract methods"
    assert not RemoteRegistry.__abstractmethods__
    assert not EmbeddedRegistry.__abstractmethods__
    for name in abstract:  # same parameters as the interface, so callers cannot tell them apart
        remote = inspect.signature(getattr(RemoteRegistry, name))
        if "kwargs" not in remote.parameters:
            assert remote.parameters.keys() == inspect.signature(getattr(Registry, name)).parameters.keys(), name


def test_governance_stages_policy_promotion_rollback_audit(registry: modelkeep.Registry, ns: str, make_tree) -> None:
    from modelkeep.errors import InvalidPolicy, PromotionRefused, TransitionNotAllowed
    from modelkeep.registry.types import Stage

    name = f"{ns}/gov"
    for n, acc in enumerate((0.90, 0.80, 0.93)):
        registry.push(make_tree({"w": str(n)}, name=f"g{n}"), name, metrics={"accuracy": acc})
        registry.transition(f"{name}@1.{n}.0", "staging", reason="candidate")
        registry.transition(f"{name}@1.{n}.0", Stage.VALIDATION)
    first = registry.promote(f"{name}@1.0.0", reason="first")
    assert first.stage is Stage.PRODUCTION and first.alias is not None and first.alias.version == "1.0.0"
    with pytest.raises(InvalidPolicy, match="line 2: unknown metric 'acc'"):
        registry.set_policy(name, "rules:\n  - acc >= 0.9\n")
    policy = registry.set_policy(name, "rules:\n  - accuracy >= production.accuracy - 0.005\n", reason="gate")
    assert policy.revision == 1 and registry.policy(name) == policy
    assert [p.revision for p in registry.policy_history(name)] == [1]
    assert not registry.check_policy(f"{name}@1.1.0").passed
    with pytest.raises(PromotionRefused, match="refuses"):
        registry.promote(f"{name}@1.1.0")
    with pytest.raises(TransitionNotAllowed):
        registry.set_alias(name, "production", "1.1.0")
    t = registry.promote(f"{name}@1.2.0", reason="better")
    assert t.archived == ("1.0.0",) and t.report is not None and t.report.passed
    assert registry.stages(name) == {"1.0.0": Stage.ARCHIVED, "1.1.0": Stage.VALIDATION, "1.2.0": Stage.PRODUCTION}
    back = registry.rollback(name, reason="error rate")
    assert back.rollback and back.version.version == "1.0.0"
    assert registry.get(f"{name}@production").version == "1.0.0"
    registry.request_approval(f"{name}@1.1.0", comment="please")
    assert [a.decision for a in registry.approvals(f"{name}@1.1.0")] == ["request"]
    assert [str(p.version) for p in registry.pending_approvals(name)] == [f"{name}@1.1.0"]
    actions = [e.action for e in registry.history(name)]
    assert actions.count("version.create") == 3 and "promotion.rollback" in actions and "policy.set" in actions
    assert registry.audit_verify().ok
