"""Provenance captured at push: git state of the pushed path, and the process environment."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.provenance import capture, git_info

from .conftest import MakeTree


def test_outside_a_repository_there_is_no_git_section(make_tree: MakeTree) -> None:
    src = make_tree({"w": "x"})
    if git_info(src) is not None:
        pytest.skip("tmp_path is inside a git repository on this machine")
    prov = capture(src)
    assert "git" not in prov
    assert prov["python"]["version"] and prov["host"] and prov["cpu"]["count"]
    assert "sqlalchemy" in prov["packages"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_branch_dirty_and_remote(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    repo = make_tree({"model/w.bin": "v1"}, name="repo")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo, check=True, capture_output=True, text=True,
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("remote", "add", "origin", "https://example.com/team/repo.git")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    head = git("rev-parse", "HEAD")
    v = registry.push(repo / "model", "fraud")
    assert v.provenance["git"] == {
        "commit": head,
        "branch": "main",
        "dirty": False,
        "remote": "https://example.com/team/repo.git",
    }
    (repo / "model" / "w.bin").write_text("v2")
    assert registry.push(repo / "model", "fraud").provenance["git"]["dirty"] is True
