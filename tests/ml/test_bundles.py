"""Bundles pin exact member versions; variants are found through variant_of; both from the CLI too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelkeep.cli.main import app
from modelkeep.errors import InvalidInput, VersionNotFound
from modelkeep.ml.bundles import bundle, create_bundle, find_variant, resolve_bundle, update_bundle


def _push(reg, tmp_path: Path, name: str, content: str, kind: str = "model", **kw):  # type: ignore[no-untyped-def]
    f = tmp_path / f"{name}-{content}.txt"
    f.write_text(content)
    return reg.push(f, name, kind=kind, **kw)


def test_bundle_pins_members_until_asked_to_update(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _push(ml_registry, tmp_path, "fraud", "w1")
    ml_registry.set_alias("fraud", "production", "1.0.0")
    _push(ml_registry, tmp_path, "prompt", "p1", kind="prompt")
    _push(ml_registry, tmp_path, "cfg", "c1", kind="config")
    b1 = create_bundle(ml_registry, "fraud-system", ["fraud@production", "prompt", "cfg@1.0.0"], message="first")
    assert b1.kind.value == "bundle" and b1.version == "1.0.0"
    assert [v.ref for v in resolve_bundle(ml_registry, "fraud-system")] == ["fraud@1.0.0", "prompt@1.0.0", "cfg@1.0.0"]
    # a new member version changes nothing by itself
    _push(ml_registry, tmp_path, "fraud", "w2")
    assert [v.ref for v in ml_registry.resolve_bundle("fraud-system@1.0.0")][0] == "fraud@1.0.0"
    assert ml_registry.get("fraud-system").version == "1.0.0"
    # until asked
    b2 = update_bundle(ml_registry, "fraud-system", ["fraud@1.1.0"])
    assert b2.version == "1.1.0"
    assert [v.ref for v in resolve_bundle(ml_registry, b2.ref)] == ["fraud@1.1.0", "prompt@1.0.0", "cfg@1.0.0"]
    assert [v.ref for v in resolve_bundle(ml_registry, b1.ref)][0] == "fraud@1.0.0"
    b3 = update_bundle(ml_registry, "fraud-system", [], remove=["cfg"])
    assert [m.ref for m in bundle(ml_registry, b3.ref).members] == ["fraud@1.1.0", "prompt@1.0.0"]
    # the same members again: no new version
    assert create_bundle(ml_registry, "fraud-system", ["fraud@1.1.0", "prompt@1.0.0"]).version == b3.version
    downstream = {str(n.version) for n in ml_registry.lineage("fraud@1.0.0", direction="downstream")}
    assert "fraud-system@1.0.0" in downstream


def test_bundle_errors(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _push(ml_registry, tmp_path, "fraud", "w1")
    _push(ml_registry, tmp_path, "fraud", "w2")
    with pytest.raises(InvalidInput, match="two members of artifact 'fraud'"):
        create_bundle(ml_registry, "sys", ["fraud@1.0.0", "fraud@1.1.0"])
    with pytest.raises(InvalidInput, match="is a model, not a bundle"):
        resolve_bundle(ml_registry, "fraud")
    with pytest.raises(VersionNotFound):
        create_bundle(ml_registry, "sys", ["fraud@9.9.9"])
    create_bundle(ml_registry, "sys", ["fraud@1.0.0"])
    with pytest.raises(InvalidInput, match="has no member of nope"):
        update_bundle(ml_registry, "sys", [], remove=["nope"])


def test_variants_are_found_through_variant_of_and_their_name(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = _push(ml_registry, tmp_path, "fraud", "fp32")
    _push(ml_registry, tmp_path, "fraud-fp16", "fp16-a", variant_of=base.ref, params={"variant": "fp16"})
    newer = _push(ml_registry, tmp_path, "fraud-fp16", "fp16-b", variant_of=base.ref, params={"variant": "fp16"})
    edge = _push(ml_registry, tmp_path, "fraud-edge", "int8", variant_of=base.ref, tags={"variant": "int8-edge"})
    _push(ml_registry, tmp_path, "fraud-tuned", "tuned", derived_from=base.ref, params={"variant": "fp16"})
    assert find_variant(ml_registry, "fraud@1.0.0", "fp16").ref == newer.ref
    assert ml_registry.variant("fraud", "int8-edge").ref == edge.ref
    with pytest.raises(VersionNotFound, match=r"fraud@1\.0\.0 has no variant 'bf16' \(variants: fp16, int8-edge\)"):
        find_variant(ml_registry, "fraud", "bf16")


@pytest.fixture
def mk(tmp_path):  # type: ignore[no-untyped-def]
    runner = CliRunner(
        env={"MODELKEEP_HOME": str(tmp_path / "home"), "MODELKEEP_URI": None, "MODELKEEP_STORE": None, "MODELKEEP_USER": "tester", "COLUMNS": "200"}
    )

    def invoke(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, list(args), prog_name="mk")
        assert result.exit_code == code, f"{args}: {result.exit_code}\n{result.stdout}\n{result.stderr}"
        return result

    return invoke


def test_cli_bundle_variant_and_signature(mk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name, content in (("fraud", "a"), ("prompt", "p")):
        (tmp_path / f"{name}.txt").write_text(content)
        mk("push", str(tmp_path / f"{name}.txt"), name, "-q")
    out = mk("bundle", "create", "sys", "fraud", "prompt@1.0.0", "-m", "v1").stdout
    assert "sys@1.0.0" in out and "fraud@1.0.0" in out and "prompt@1.0.0" in out
    (tmp_path / "fraud.txt").write_text("b")
    mk("push", str(tmp_path / "fraud.txt"), "fraud", "-q")
    assert "fraud@1.0.0" in mk("bundle", "show", "sys").stdout
    shown = json.loads(mk("bundle", "update", "sys", "--member", "fraud@1.1.0", "--json").stdout)
    assert shown["ref"] == "sys@1.1.0"
    assert [m["ref"] for m in shown["members"]] == ["fraud@1.1.0", "prompt@1.0.0"]
    mk("bundle", "update", "sys", code=2)

    (tmp_path / "half.txt").write_text("fp16 weights")
    mk("push", str(tmp_path / "half.txt"), "fraud-fp16", "--variant-of", "fraud@1.1.0", "--param", "variant=fp16", "-q")
    out = mk("pull", "fraud@1.1.0", str(tmp_path / "dest"), "--variant", "fp16").stdout
    assert "fraud-fp16@1.0.0" in out
    assert (tmp_path / "dest" / "half.txt").read_text() == "fp16 weights"
    err = mk("pull", "fraud@1.1.0", str(tmp_path / "dest2"), "--variant", "int8", code=3).stderr
    assert "has no variant 'int8' (variants: fp16)" in err


def test_cli_show_displays_the_signature(mk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import modelkeep

    with modelkeep.open(tmp_path / "home", user="tester") as reg:
        (tmp_path / "w.bin").write_bytes(b"w")
        sig = {
            "inputs": {"form": "dataframe", "specs": [{"name": "amount", "dtype": "float64", "shape": [-1]}]},
            "outputs": {"form": "array", "specs": [{"name": None, "dtype": "int64", "shape": [-1]}]},
        }
        reg.push(tmp_path / "w.bin", "fraud", kind="model", signature=sig)
    out = mk("show", "fraud").stdout
    assert "signature" in out and "amount: float64[?]" in out and "output: int64[?]" in out
    assert json.loads(mk("show", "fraud", "--json").stdout)["signature"] == sig
