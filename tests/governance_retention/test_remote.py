"""Signatures and retention through the remote client and a real server: the same interface, over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _servers import served
from modelkeep.errors import InvalidInput, VersionDeleted
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.operations import Role
from modelkeep.registry.signatures import generate_keypair, has_valid_signature, sign_version


def _tree(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "w.bin").write_bytes(os.urandom(100))
    return folder


def test_sign_verify_and_retention_over_http(tmp_path: Path) -> None:
    pytest.importorskip("httpx", reason="the remote client needs the client extra (httpx)")
    with served(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "store") as srv:
        token = srv.user("dana", {"*": Role.ADMIN})
        with srv.remote(token) as reg:
            for i in range(3):
                reg.push(_tree(tmp_path, f"v{i}"), "team/fraud")
            private, public = generate_keypair()
            rec = reg.sign("team/fraud@1.2.0", private, reason="release")
            assert rec.signer == "dana" and rec.version.version == "1.2.0"
            assert [c.valid for c in reg.verify("team/fraud@1.2.0", [public])] == [True]
            assert has_valid_signature(reg, "team/fraud@1.2.0", [public])
            forged = b"\x00" * 64
            with pytest.raises(InvalidInput, match="not a valid format-1 signature"):
                reg.add_signature("team/fraud@1.1.0", public, forged)

            reg.set_retention("team/fraud", keep_last=1, reason="cost")
            reg.hold("team/fraud@1.0.0", reason="case 7")
            plan = reg.plan_retention("team/fraud")
            assert [str(k) for k in plan.to_delete] == ["team/fraud@1.1.0"]
            assert reg.apply_retention("team/fraud", reason="cleanup").decisions == plan.decisions
            with pytest.raises(VersionDeleted, match="was deleted on"):
                reg.get("team/fraud@1.1.0")
            assert [t.version.version for t in reg.tombstones("team/fraud")] == ["1.1.0"]
            assert [h.reason for h in reg.release("team/fraud@1.0.0", reason="closed")] == ["case 7"]


def test_add_signature_refuses_a_signature_of_another_version(local: EmbeddedRegistry, tmp_path: Path) -> None:
    local.push(_tree(tmp_path, "a"), "fraud")
    local.push(_tree(tmp_path, "b"), "fraud")
    private, public = generate_keypair()
    _, sig_of_first = sign_version(private, local.get("fraud@1.0.0"))
    with pytest.raises(InvalidInput, match="not a valid format-1 signature of fraud@1.1.0"):
        local.add_signature("fraud@1.1.0", public, sig_of_first)
    assert local.signatures("fraud@1.1.0") == []
    assert local.add_signature("fraud@1.0.0", public, sig_of_first).key_fingerprint
    assert [c.valid for c in local.verify("fraud@1.0.0")] == [True]
