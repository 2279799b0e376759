"""Impact analysis: key lookups over every dataset version, transitive lineage, flags usable by promotion rules."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from modelkeep.errors import ArtifactNotFound, InvalidInput
from modelkeep.ml.datasets import FENCE_EVERY, push_dataset
from modelkeep.ml.impact import KeyIndexCache, flag_impact, flag_key, impact, impact_flags, impact_violation


@pytest.fixture
def graph(reg, write):
    """transactions 1.0.0 {1,2}, 1.1.0 {2,3}; models, a fine-tune, a bundle, a variant, an unrelated model."""
    t1 = push_dataset(reg, write("t.csv", "customer_id,x\n1,1\n2,2\n1,3\n"), "transactions", key="customer_id")
    t2 = push_dataset(reg, write("t.csv", "customer_id,x\n2,1\n3,2\n"), "transactions", key="customer_id")
    feats = reg.push(write("f/feat.csv", "a\n1\n").parent, "features", kind="dataset", derived_from=t1.ref)
    m = reg.push(write("m/w.bin", b"m1").parent, "fraud", kind="model", trained_on=feats.ref)
    ft = reg.push(write("ft/w.bin", b"ft").parent, "fraud-ft", kind="model", derived_from=m.ref)
    bundle = reg.push(write("b/bundle.json", "{}").parent, "system", kind="bundle", contains=ft.ref)
    variant = reg.push(write("v/w.bin", b"int8").parent, "fraud-int8", kind="model", variant_of=ft.ref)
    other = reg.push(write("o/w.bin", b"o").parent, "other", kind="model", trained_on=t2.ref)
    return {"t1": t1, "t2": t2, "feats": feats, "m": m, "ft": ft, "bundle": bundle, "variant": variant, "other": other}


def test_impact_is_transitive_through_every_edge_type(reg, graph):
    r = impact(reg, "transactions", "customer_id", "1")
    assert [str(k) for k in r.containing] == ["transactions@1.0.0"]
    found = {str(a.version): (a.kind.value, a.edge.type.value, a.depth) for a in r.affected}
    assert found == {
        "features@1.0.0": ("dataset", "derived_from", 1),
        "fraud@1.0.0": ("model", "trained_on", 2),
        "fraud-ft@1.0.0": ("model", "derived_from", 3),
        "system@1.0.0": ("bundle", "contains", 4),
        "fraud-int8@1.0.0": ("model", "variant_of", 4),
    }
    assert r.checked == 2 and r.unindexed == ()
    both = impact(reg, "transactions", "customer_id", "2")
    assert {str(k) for k in both.containing} == {"transactions@1.0.0", "transactions@1.1.0"}
    assert "other@1.0.0" in {str(a.version) for a in both.affected}
    none = impact(reg, "transactions", "customer_id", "4")
    assert none.containing == () and none.affected == ()


def test_flags_are_visible_and_block_promotion(reg, graph, mk):
    r = impact(reg, "transactions", "customer_id", "1")
    flagged = flag_impact(reg, r, reason="erasure request 77")
    assert len(flagged) == 6
    ft = reg.get("fraud-ft@1.0.0")
    assert set(impact_flags(ft)) == {flag_key("customer_id", "1")}
    assert re.fullmatch(r"impact-[0-9a-f]{16}", r.flag) and r.flag != flag_key("customer_id", "2")
    reason = impact_violation(ft)
    assert reason is not None and reason.startswith("fraud-ft@1.0.0 is flagged by impact analysis: impact-")
    assert "via fraud-ft@1.0.0 derived_from fraud@1.0.0" in reason
    assert impact_violation(reg.get("other@1.0.0")) is None
    history = reg.tag_history("fraud-ft@1.0.0", r.flag)
    assert [h.reason for h in history] == ["erasure request 77"]


def test_unindexed_and_wrong_artifacts(reg, graph, write):
    with pytest.raises(InvalidInput, match="no version of transactions has a key index of column 'region'"):
        impact(reg, "transactions", "region", "eu")
    with pytest.raises(InvalidInput, match="fraud is a model, not a dataset"):
        impact(reg, "fraud", "customer_id", "1")
    with pytest.raises(ArtifactNotFound):
        impact(reg, "nope", "customer_id", "1")
    push_dataset(reg, write("t.csv", "customer_id,x\n1,1\n"), "transactions")  # a version without an index
    r = impact(reg, "transactions", "customer_id", "1")
    assert [str(k) for k in r.unindexed] == ["transactions@1.2.0"]


def test_embedded_lookups_read_one_block_not_the_index(reg, tmp_path):
    keys = np.arange(0, 3 * FENCE_EVERY * 10, 3, dtype=np.int64)  # 40960 keys: 10 blocks, 320 KiB of hashes
    (tmp_path / "k.csv").write_text("customer_id\n" + "\n".join(map(str, keys.tolist())) + "\n")
    v = push_dataset(reg, tmp_path / "k.csv", "keys", key="customer_id")
    reads: list[int] = []
    cache = KeyIndexCache()
    idx = cache.get(reg, v, v.params["dataset"]["keys"]["customer_id"]["index"])
    inner = idx.read
    counting = dataclasses.replace(idx, read=lambda off, n: reads.append(n) or inner(off, n))
    assert counting.contains("3000") and not counting.contains("3001")
    assert reads == [8 * FENCE_EVERY, 8 * FENCE_EVERY]  # one block per lookup, nothing else
    assert len(counting.fences) == 10 and len(counting.hashes) == len(keys)


def test_remote_registry_uses_the_disk_cache(tmp_path, write):
    from _servers import served

    from modelkeep.registry.operations import Role

    with served(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "store") as srv:
        token = srv.user("tester", {"*": Role.ADMIN})
        with srv.remote(token) as remote:
            push_dataset(remote, write("t.csv", "customer_id,x\n1,1\n2,2\n"), "transactions", key="customer_id")
            push_dataset(remote, write("t.csv", "customer_id,x\n2,1\n3,2\n"), "transactions", key="customer_id")
            remote.push(write("m/w.bin", b"m").parent, "fraud", kind="model", trained_on="transactions@1.1.0")
            cache_dir = tmp_path / "cache"
            first = impact(remote, "transactions", "customer_id", "3", cache=KeyIndexCache(cache_dir))
            assert [str(k) for k in first.containing] == ["transactions@1.1.0"]
            assert [str(a.version) for a in first.affected] == ["fraud@1.0.0"]
            cached = sorted(cache_dir.rglob("*.keys"))
            assert len(cached) == 2
            again = impact(remote, "transactions", "customer_id", "2", cache=KeyIndexCache(cache_dir))
            assert len(again.containing) == 2
            # a damaged cache file is refused, never trusted silently
            cached[0].write_bytes(b"garbage!" * 4)
            with pytest.raises(InvalidInput, match="not a modelkeep key index"):
                impact(remote, "transactions", "customer_id", "3", cache=KeyIndexCache(cache_dir))


def test_large_index_lookup_matches_numpy(reg, tmp_path):
    rng = np.random.default_rng(5)
    keys = rng.choice(10_000_000, size=50_000, replace=False)
    lines = ["customer_id,v"] + [f"{k},1" for k in keys]
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
    v = push_dataset(reg, tmp_path / "big.csv", "big", key="customer_id")
    present = set(keys.tolist())
    absent = [k for k in rng.integers(0, 10_000_000, 2000).tolist() if k not in present][:1000]
    cache = KeyIndexCache()
    index = cache.get(reg, v, v.params["dataset"]["keys"]["customer_id"]["index"])
    assert all(index.contains(str(k)) for k in keys[:1000].tolist())
    assert not any(index.contains(str(k)) for k in absent)
    assert impact(reg, "big", "customer_id", str(keys[-1]), cache=cache).containing == (v.key,)
    assert impact(reg, "big", "customer_id", str(absent[0]), cache=cache).containing == ()


def test_cli_impact_and_flag_shown(mk, write):
    mk("push", str(write("t.csv", "customer_id,x\n1,1\n")), "transactions", "--kind", "dataset", "--key", "customer_id")
    mk("push", str(write("m.bin", b"w")), "fraud", "--kind", "model", "--trained-on", "transactions@1.0.0")
    r = mk("impact", "transactions", "--key", "customer_id=1")
    assert "fraud@1.0.0" in r.stdout and "--flag" in r.stdout
    assert "impact flags" not in mk("log", "fraud").stdout  # the column appears only when needed
    r = json.loads(mk("impact", "transactions", "--key", "customer_id=1", "--flag", "--json").stdout)
    assert r["flagged"] == ["transactions@1.0.0", "fraud@1.0.0"]
    shown = mk("show", "fraud@1.0.0").stdout
    assert r["flag"] in shown
    listed = mk("log", "fraud").stdout
    assert "impact flags" in listed and r["flag"] in listed  # the version listing marks it too
    bad = mk("impact", "transactions", "--key", "customer_id", ok=False)
    assert bad.exit_code == 2 and "--key must be COLUMN=VALUE" in bad.stderr
