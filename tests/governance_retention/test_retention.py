"""Retention: each rule, holds, aliases and lineage keep versions, tombstones, gc, plan == apply."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from modelkeep.db.models import ArtifactRow, VersionRow, utcnow
from modelkeep.errors import ArtifactNotFound, HoldNotFound, InvalidInput, VersionDeleted, VersionNotFound
from modelkeep.registry import audit
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.types import RetentionPlan

from .conftest import MakeTree


def _push(reg: EmbeddedRegistry, make_tree: MakeTree, name: str, n: int, *, size: int = 20, **kw: object) -> list[str]:
    """Push ``n`` versions of ``name`` with distinct random content; returns their semvers, oldest first."""
    out = []
    for _ in range(n):
        tree = make_tree({"w.bin": os.urandom(size)}, name=f"{name.replace('/', '_')}-{os.urandom(4).hex()}")
        out.append(reg.push(tree, name, **kw).version)  # type: ignore[arg-type]
    return out


def _age(reg: EmbeddedRegistry, name: str, version: str, days: float) -> None:
    """Make ``name@version`` look ``days`` old (the registry stamps versions with the current time)."""
    major, minor, patch = (int(p) for p in version.split("."))

    def run(db):  # type: ignore[no-untyped-def]
        row = db.scalars(
            select(VersionRow)
            .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
            .where(ArtifactRow.name == name, VersionRow.major == major, VersionRow.minor == minor, VersionRow.patch == patch)
        ).one()
        row.created_at = utcnow() - timedelta(days=days)

    reg._uow.write(run)


def _deleted(p: RetentionPlan) -> list[str]:
    return [str(k) for k in p.to_delete]


def _why(p: RetentionPlan, ref: str) -> tuple[str, ...]:
    return next(d.reasons for d in p.decisions if str(d.version) == ref)


def test_keep_last_with_hold_and_alias_then_tombstones(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    vs = _push(registry, make_tree, "team/fraud", 6)
    registry.set_alias("team/fraud", "staging", vs[1], reason="canary")
    registry.hold(f"team/fraud@{vs[0]}", reason="case 2026-17")
    registry.set_retention("team/fraud", keep_last=2, reason="keep the cost down")

    plan = registry.plan_retention("team/fraud")
    assert _deleted(plan) == [f"team/fraud@{v}" for v in (vs[3], vs[2])]
    assert _why(plan, f"team/fraud@{vs[5]}") == ("among the newest 2",)
    assert _why(plan, f"team/fraud@{vs[1]}") == ("alias staging points at it",)
    assert _why(plan, f"team/fraud@{vs[0]}") == ("legal hold: case 2026-17",)
    assert _why(plan, f"team/fraud@{vs[2]}") == (
        "not among the newest 2",
        "no alias, hold or lineage edge from a kept version",
    )
    assert registry.versions("team/fraud")[0].version == vs[5]  # plan changed nothing
    assert len(registry.versions("team/fraud")) == 6

    applied = registry.apply_retention("team/fraud", reason="quarterly clean-up")
    assert applied.applied and applied.decisions == plan.decisions
    assert [v.version for v in registry.versions("team/fraud")] == [vs[5], vs[4], vs[1], vs[0]]
    assert registry.artifact("team/fraud").version_count == 4

    with pytest.raises(VersionDeleted, match=rf"team/fraud@{vs[2]} was deleted on .* UTC by alice: quarterly clean-up"):
        registry.get(f"team/fraud@{vs[2]}")
    with pytest.raises(VersionNotFound):  # VersionDeleted is a VersionNotFound
        registry.pull(f"team/fraud@{vs[3]}", make_tree({}, name="dest"))
    digest = [t for t in registry.tombstones("team/fraud") if t.version.version == vs[2]][0].digest
    with pytest.raises(VersionDeleted):
        registry.get(f"team/fraud@{digest.hex[:10]}".replace("@", "@blake3:"))
    assert sorted(t.version.version for t in registry.tombstones("team/fraud")) == sorted([vs[2], vs[3]])

    events = registry._uow.read(lambda db: audit.events(db, artifact="team/fraud"))
    deletions = [e for e in events if e.action == "version.delete"]
    assert sorted(e.subject for e in deletions) == sorted(f"team/fraud@{v}" for v in (vs[2], vs[3]))
    assert {e.action for e in events} >= {"retention.rule", "retention.hold", "version.delete"}
    assert registry._uow.read(audit.verify).ok

    # A second run finds nothing more (keep_last counts live versions); a new push pushes 1.4.0
    # out of the newest 2 and it goes at the next run.
    assert _deleted(registry.apply_retention("team/fraud", reason="again")) == []
    assert _push(registry, make_tree, "team/fraud", 1) == ["1.6.0"]
    assert _deleted(registry.apply_retention("team/fraud", reason="again")) == [f"team/fraud@{vs[4]}"]


def test_holds_block_deletion_until_released(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    vs = _push(registry, make_tree, "fraud", 3)
    held = registry.hold(f"fraud@{vs[0]}", reason="litigation A")
    registry.hold(f"fraud@{vs[0]}", reason="litigation B")
    registry.set_retention("fraud", keep_last=1)
    assert _deleted(registry.apply_retention("fraud", reason="r")) == [f"fraud@{vs[1]}"]
    assert registry.get(f"fraud@{vs[0]}").version == vs[0]
    assert [h.reason for h in registry.holds("fraud")] == ["litigation A", "litigation B"]

    released = registry.release(f"fraud@{vs[0]}", reason="settled")
    assert [h.id for h in released][0] == held.id and all(not h.active for h in released)
    assert registry.holds("fraud") == [] and len(registry.holds("fraud", include_released=True)) == 2
    with pytest.raises(HoldNotFound):
        registry.release(f"fraud@{vs[0]}", reason="settled")
    assert _deleted(registry.apply_retention("fraud", reason="r")) == [f"fraud@{vs[0]}"]


def test_keep_days_and_min_days(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    vs = _push(local, make_tree, "m", 4)
    for v, days in zip(vs, (40, 20, 5, 1), strict=True):
        _age(local, "m", v, days)
    local.set_retention("m", keep_days=10)
    p = local.plan_retention("m")
    assert _deleted(p) == [f"m@{vs[1]}", f"m@{vs[0]}"]
    assert _why(p, f"m@{vs[2]}") == ("younger than 10 days",)
    assert _why(p, f"m@{vs[0]}")[0] == "older than 10 days"

    local.set_retention("m", keep_last=1, min_days=30, reason="compliance: 30 days minimum")
    p = local.plan_retention("m")
    assert _deleted(p) == [f"m@{vs[0]}"]
    assert _why(p, f"m@{vs[1]}") == ("inside the minimum retention period of 30 days",)
    assert [(r.revision, r.keep_days, r.min_days) for r in local.retention_history("m")] == [(1, 10, None), (2, None, 30)]
    assert local.retention("m") == local.retention_history("m")[-1]

    # keep_days alone may delete the newest version; numbers are never reused.
    local.set_retention("m", keep_days=3)
    assert _deleted(local.apply_retention("m", reason="r")) == [f"m@{vs[2]}", f"m@{vs[1]}", f"m@{vs[0]}"]
    _age(local, "m", vs[3], 9)
    local.apply_retention("m", reason="r")
    assert local.versions("m") == []
    with pytest.raises(VersionNotFound, match="no versions yet"):
        local.get("m")
    again = local.push(make_tree({"w.bin": b"fresh"}, name="fresh"), "m")
    assert again.version not in vs and again.version > vs[3]


def test_keep_production_uses_the_alias_history(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    vs = _push(local, make_tree, "fraud", 5)
    local.set_alias("fraud", "production", vs[0])
    local.set_alias("fraud", "production", vs[2])
    local.remove_alias("fraud", "production")
    local.set_retention("fraud", keep_last=1, keep_production=True)
    p = local.apply_retention("fraud", reason="r")
    assert _deleted(p) == [f"fraud@{vs[3]}", f"fraud@{vs[1]}"]
    assert _why(p, f"fraud@{vs[0]}") == ("reached production",)
    assert _why(p, f"fraud@{vs[2]}") == ("reached production",)
    assert "never reached production" in _why(p, f"fraud@{vs[1]}")


def test_lineage_and_bundles_keep_their_targets(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    data = _push(registry, make_tree, "data", 4, kind="dataset")
    base = _push(registry, make_tree, "base", 2)
    registry.push(make_tree({"m.bin": b"model"}, name="mdl"), "model", trained_on=f"data@{data[0]}", derived_from=f"base@{base[0]}")
    # A chain inside one artifact: 1.2.0 derived from 1.1.0 derived from 1.0.0.
    chain = [registry.push(make_tree({"c.bin": b"c0"}, name="c0"), "chain").version]
    for i in (1, 2):
        chain.append(
            registry.push(make_tree({"c.bin": f"c{i}".encode()}, name=f"c{i}"), "chain", derived_from=f"chain@{chain[-1]}").version
        )
    bundle = registry.push(make_tree({"b.txt": "b"}, name="bundle"), "bundle", kind="bundle", contains=f"data@{data[1]}")
    for name in ("data", "base", "chain"):
        registry.set_retention(name, keep_last=1)
    registry.set_retention("bundle", keep_last=1)

    p = registry.plan_retention()
    assert _why(p, f"data@{data[0]}") == ("trained_on edge from kept model@1.0.0",)
    assert _why(p, f"data@{data[1]}") == (f"member of bundle {bundle.ref}",)
    assert _why(p, f"base@{base[0]}") == ("derived_from edge from kept model@1.0.0",)
    assert _why(p, f"chain@{chain[0]}") == (f"derived_from edge from kept chain@{chain[1]}",)
    assert _why(p, f"chain@{chain[1]}") == (f"derived_from edge from kept chain@{chain[2]}",)
    # Every artifact with a rule is in the plan; the model (no rule) keeps everything it points at.
    assert _deleted(p) == [f"data@{data[2]}"]
    assert registry.apply_retention(reason="r").decisions == p.decisions
    assert registry.get(f"data@{data[0]}").version == data[0]
    assert {d.version.artifact for d in p.decisions} == {"base", "bundle", "chain", "data"}
    assert [d.version.artifact for d in p.decisions] == sorted(d.version.artifact for d in p.decisions)


def test_lineage_from_a_deleted_version_keeps_nothing(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    data = _push(local, make_tree, "data", 2, kind="dataset")
    model = [local.push(make_tree({"m": b"1"}, name="m1"), "model", trained_on=f"data@{data[0]}").version]
    model += _push(local, make_tree, "model", 1)
    local.set_retention("model", keep_last=1)
    local.set_retention("data", keep_last=1)
    p = local.plan_retention()
    # model@1.0.0 goes, so the edge to data@1.0.0 no longer keeps it: both go in one run.
    assert sorted(_deleted(p)) == sorted([f"model@{model[0]}", f"data@{data[0]}"])
    assert local.apply_retention(reason="r").decisions == p.decisions
    assert local.lineage(f"data@{data[1]}", direction="downstream") == []


def test_no_rule_means_nothing_is_deleted(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    vs = _push(local, make_tree, "free", 3)
    assert local.retention("free") is None
    p = local.plan_retention("free")
    assert p.to_delete == () and _why(p, f"free@{vs[0]}") == ("no retention rule for free",)
    assert local.plan_retention().decisions == ()  # without a name: only artifacts that have a rule
    assert local.apply_retention(reason="r").decisions == ()


def test_bad_rules_and_holds_are_refused_and_change_nothing(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    vs = _push(local, make_tree, "fraud", 2)
    with pytest.raises(InvalidInput, match="must keep something"):
        local.set_retention("fraud", min_days=7)
    with pytest.raises(InvalidInput, match="keep_last must be a whole number"):
        local.set_retention("fraud", keep_last=0)
    with pytest.raises(InvalidInput, match="keep_days"):
        local.set_retention("fraud", keep_days=-3)
    with pytest.raises(InvalidInput, match="needs a reason"):
        local.hold(f"fraud@{vs[0]}", reason="  ")
    with pytest.raises(InvalidInput, match="needs a reason"):
        local.apply_retention("fraud", reason="")
    with pytest.raises(ArtifactNotFound):
        local.set_retention("nope", keep_last=1)
    with pytest.raises(ArtifactNotFound):
        local.plan_retention("nope")
    assert local.retention_history("fraud") == [] and local.holds() == []
    events = local._uow.read(lambda db: audit.events(db, artifact="fraud"))
    assert not [e for e in events if e.action.startswith("retention.")]


def test_gc_after_apply_frees_bytes_and_kept_versions_pull_identical(
    registry: EmbeddedRegistry, make_tree: MakeTree, tmp_path: Path
) -> None:
    contents = [os.urandom(200_000) for _ in range(4)]
    for i, blob in enumerate(contents):
        registry.push(make_tree({"w.bin": blob, "shared.txt": "same in every version"}, name=f"v{i}"), "fraud")
    before = registry.du()
    registry.set_retention("fraud", keep_last=2)
    assert registry.gc(grace_seconds=0).bytes_freed == 0  # nothing deleted yet: nothing to free
    registry.apply_retention("fraud", reason="r")
    assert registry.du().logical_bytes < before.logical_bytes
    report = registry.gc(grace_seconds=0)
    assert report.bytes_freed >= 300_000, report
    assert registry.du().stored_bytes < before.stored_bytes
    for i in (2, 3):
        dest = tmp_path / f"out{i}"
        registry.pull(f"fraud@1.{i}.0", dest)
        assert (dest / "w.bin").read_bytes() == contents[i]
        assert (dest / "shared.txt").read_text() == "same in every version"
    assert registry.fsck().ok  # tombstoned manifests are not checked against freed chunks


def test_a_manifest_shared_with_a_live_version_stays_live(local: EmbeddedRegistry, make_tree: MakeTree, tmp_path: Path) -> None:
    blob = os.urandom(100_000)
    local.push(make_tree({"w.bin": blob}, name="a"), "one")
    local.push(make_tree({"w.bin": blob}, name="b"), "two")  # same manifest, other artifact
    local.push(make_tree({"w.bin": os.urandom(10)}, name="c"), "one")
    local.set_retention("one", keep_last=1)
    assert _deleted(local.apply_retention("one", reason="r")) == ["one@1.0.0"]
    local.gc(grace_seconds=0)
    local.pull("two@1.0.0", tmp_path / "two")
    assert (tmp_path / "two" / "w.bin").read_bytes() == blob
