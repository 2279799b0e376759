"""Comparison side by side, the self-contained HTML report, text diffs of prompts and configs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelkeep.ml.compare import compare, package_changes
from modelkeep.ml.report import render_html
from modelkeep.ml.textdiff import prompt_variables, unified


def _models(reg, tmp_path):
    rng = np.random.default_rng(8)
    w = {"l0": rng.standard_normal((64, 64)).astype(np.float32), "l1": rng.standard_normal((64, 64)).astype(np.float32)}
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
    save_file(w, str(tmp_path / "a" / "model.safetensors"))
    (tmp_path / "a" / "config.json").write_text('{"layers": 2}')
    w2 = {"l0": w["l0"], "l1": w["l1"] * 1.5}
    save_file(w2, str(tmp_path / "b" / "model.safetensors"))
    (tmp_path / "b" / "config.json").write_text('{"layers": 2}')
    (tmp_path / "b" / "notes.txt").write_text("fine-tuned\n")
    save_file(w, str(tmp_path / "c" / "model.safetensors"))
    d1 = reg.push(tmp_path / "a" / "config.json", "data-a", kind="dataset")
    d2 = reg.push(tmp_path / "b" / "notes.txt", "data-b", kind="dataset")
    va = reg.push(tmp_path / "a", "fraud", kind="model", params={"lr": 0.1, "depth": 3},
                  metrics={"auc": 0.9, "loss": 0.3}, trained_on=d1.ref)
    vb = reg.push(tmp_path / "b", "fraud", kind="model", params={"lr": 0.05, "depth": 3},
                  metrics={"auc": 0.93, "loss": 0.25}, trained_on=d2.ref, derived_from=va.ref)
    vc = reg.push(tmp_path / "c", "fraud", kind="model", params={"lr": 0.1, "depth": 3}, metrics={"auc": 0.88})
    return va, vb, vc, w, w2


def test_compare_metrics_params_lineage_files_tensors(reg, tmp_path):
    va, vb, vc, w, w2 = _models(reg, tmp_path)
    c = compare(reg, [va.ref, vb.ref, vc.ref])
    rows = {m.name: m for m in c.metrics}
    assert rows["auc"].values == (0.9, 0.93, 0.88)
    assert rows["auc"].deltas[1] == 0.93 - 0.9 and rows["auc"].deltas[2] == 0.88 - 0.9
    assert rows["loss"].values == (0.3, 0.25, None) and rows["loss"].deltas[2] is None
    assert c.params == {"lr": (0.1, 0.05, 0.1)}
    assert c.lineage == {
        "derived_from": ((), ("fraud@1.0.0",), ()),
        "trained_on": (("data-a@1.0.0",), ("data-b@1.0.0",), ()),
    }
    ab, ac = c.pairs
    assert [f.path for f in ab.files.added] == ["notes.txt"] and [f.path for f in ab.files.changed] == ["model.safetensors"]
    td = ab.tensors["model.safetensors"]
    by = {t.name: t for t in td.tensors}
    assert by["l0"].status == "unchanged" and not by["l0"].read
    assert by["l1"].status == "changed"
    assert by["l1"].relative_change == np.float64(0.5) or abs(by["l1"].relative_change - 0.5) < 1e-6
    assert td.share_changed == 0.5
    assert [f.path for f in ac.files.removed] == ["config.json"] and ac.tensors == {}  # identical weights: no diff
    assert ab.environment.empty  # same process, same packages
    doc = c.to_json()
    assert json.loads(json.dumps(doc))["pairs"][0]["tensors"]["model.safetensors"]["share_changed"] == 0.5


def test_environment_differences():
    a = {"packages": {"numpy": "1.26.0", "torch": "2.2.0", "old": "1"}, "python": {"version": "3.11.4"}}
    b = {"packages": {"numpy": "2.0.0", "torch": "2.2.0", "new": "0.1"}, "python": {"version": "3.12.1"}}
    e = package_changes(a, b)
    assert e.added == {"new": "0.1"} and e.removed == {"old": "1"} and e.changed == {"numpy": ("1.26.0", "2.0.0")}
    assert e.other == {"python.version": ("3.11.4", "3.12.1")}


def test_html_report_is_self_contained(reg, tmp_path):
    va, vb, vc, *_ = _models(reg, tmp_path)
    c = compare(reg, [va.ref, vb.ref, vc.ref])
    page = render_html(c)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<style>" in page and page.count("<svg") >= 3  # two metric charts + per-tensor relative change
    assert "relative change per tensor" in page and "l1" in page
    # no external asset of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|[a-z]+\.(css|js|png))""", page, re.I)
    assert "<script" not in page and "<link" not in page and "url(" not in page
    # registry text is escaped
    reg.push(tmp_path / "a", "fraud", kind="model", message="<script>alert(1)</script>", params={"x": 1})
    page = render_html(compare(reg, [va.ref, "fraud@latest"]))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_prompt_variables_and_text_diffs(reg, tmp_path, mk, write):
    assert prompt_variables("Hi {name}, {{ user.name | upper }} {{x}} {{-y-}} {count:>3} {{{{ escaped }}}} {0}") == [
        "name", "user", "x", "y", "count", "escaped"]
    assert prompt_variables("literal {{ }} braces and a {} slot") == []
    assert unified("a\nb\n", "a\nc\n", a="x", b="y") == "--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
    p1 = write("p1/prompt.txt", "You are {role}.\nAnswer {question}\n")
    p2 = write("p2/prompt.txt", "You are {role}.\nBe brief.\nAnswer {{ question }} for {user}\n")
    write("p2/logo.bin", b"\x00\x01\x02")
    v1 = reg.push(p1.parent, "qa-prompt", kind="prompt")
    v2 = reg.push(p2.parent, "qa-prompt", kind="prompt")
    c = compare(reg, [v1.ref, v2.ref])
    assert c.variables == {v1.ref: {"prompt.txt": ["role", "question"]}, v2.ref: {"prompt.txt": ["role", "question", "user"]}}
    texts = {t.path: t for t in c.pairs[0].texts}
    assert texts["logo.bin"].status == "binary"
    diff = texts["prompt.txt"].diff
    assert "-Answer {question}\n" in diff and "+Be brief.\n" in diff and "+Answer {{ question }} for {user}\n" in diff
    # the CLI shows the same diff in mk diff and mk compare, and writes the HTML report
    mk("push", str(p1.parent), "qa", "--kind", "prompt")
    mk("push", str(p2.parent), "qa")
    assert "prompt.txt: role, question, user" in mk("show", "qa@1.1.0").stdout
    out = mk("diff", "qa@1.0.0", "qa@1.1.0").stdout
    assert "+Be brief." in out and "--- logo.bin (binary)" in out
    html = tmp_path / "r.html"
    out = mk("compare", "qa@1.0.0", "qa@1.1.0", "--html", str(html)).stdout
    assert "variables of qa@1.1.0:prompt.txt: role, question, user" in out and "+Be brief." in out
    assert "+Be brief." in html.read_text()
    data = json.loads(mk("compare", "qa@1.0.0", "qa@1.1.0", "--json").stdout)
    assert data["variables"]["qa@1.0.0"] == {"prompt.txt": ["role", "question"]}


def test_cli_compare_weights(mk, tmp_path):
    rng = np.random.default_rng(1)
    w = {"a": rng.standard_normal(100).astype(np.float32)}
    for d, scale in (("x", 1.0), ("y", 2.0)):
        (tmp_path / d).mkdir()
        save_file({"a": w["a"] * np.float32(scale)}, str(tmp_path / d / "model.safetensors"))
        mk("push", str(tmp_path / d), "net", "--kind", "model", "--metric", f"acc={0.5 * scale}")
    out = mk("compare", "net@1.0.0", "net@1.1.0").stdout
    assert "1 of 1 differ" in out and "100 of 100 parameters changed (100.00%)" in out and "+0.5" in out
    bad = mk("compare", "net@1.0.0", ok=False)
    assert bad.exit_code == 2 and "at least two versions" in bad.stderr


def test_compare_over_a_remote_registry(tmp_path):
    from _servers import served

    from modelkeep.registry.operations import Role

    with served(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "store") as srv:
        token = srv.user("tester", {"*": Role.ADMIN})
        with srv.remote(token) as remote:
            _check_through_pulled_copies(remote, tmp_path)


def _check_through_pulled_copies(reg, tmp_path) -> None:
    """The same numbers through pulled copies (no chunk store access) as through the chunk store."""
    va, vb, _, w, w2 = _models(reg, tmp_path)
    td = compare(reg, [va.ref, vb.ref]).pairs[0].tensors["model.safetensors"]
    by = {t.name: t for t in td.tensors}
    assert by["l0"].status == "unchanged" and by["l0"].read  # no chunk digests remotely: read and compared
    assert by["l1"].relative_change == pytest.approx(0.5)
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "config.yaml").write_text("lr: 0.1\n")
    (tmp_path / "p2").mkdir()
    (tmp_path / "p2" / "config.yaml").write_text("lr: 0.2\n")
    c1 = reg.push(tmp_path / "p1", "train-config", kind="config")
    c2 = reg.push(tmp_path / "p2", "train-config", kind="config")
    (text,) = compare(reg, [c1.ref, c2.ref]).pairs[0].texts
    assert "-lr: 0.1\n+lr: 0.2\n" in text.diff
