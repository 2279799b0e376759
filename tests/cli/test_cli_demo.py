"""The demo runs end to end and shows what it promises."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

Invoke = Callable[..., Result]


def test_demo_end_to_end(mk: Invoke, tmp_path: Path, home: Path) -> None:
    demo_home = tmp_path / "demo-home"
    r = mk("demo", str(demo_home))
    out = r.stdout
    assert "pushed as demo/classifier@1.0.0" in out
    assert "pushed as demo/classifier@1.1.0" in out
    assert "no change: demo/classifier@1.1.0" in out
    assert "production" in out
    assert "derived_from" in out and "trained_on" in out
    assert "dedup ratio" in out
    assert (demo_home / "registry.db").exists()
    assert not home.exists()  # the home from MODELKEEP_HOME was left alone


def test_demo_module_entry_point(tmp_path: Path) -> None:
    from modelkeep.demo import main

    assert main([str(tmp_path / "h")]) == 0
