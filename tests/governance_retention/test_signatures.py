"""Ed25519 signatures over a version's identity: valid, invalid, wrong key, tampered payload."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from modelkeep.errors import InvalidKey, InvalidPath, SignatureExists
from modelkeep.registry import audit
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.signatures import (
    PREFIX,
    fingerprint,
    generate_keypair,
    has_valid_signature,
    payload,
    write_keypair,
)

from .conftest import MakeTree


def _two_versions(reg: EmbeddedRegistry, make_tree: MakeTree) -> None:
    reg.push(make_tree({"w.bin": b"first weights"}, name="a"), "team/fraud", kind="model")
    reg.push(make_tree({"w.bin": b"second weights"}, name="b"), "team/fraud", kind="model")


def _sql(reg: EmbeddedRegistry, stmt: str, **params: object) -> None:
    with reg._engine.begin() as conn:  # tampering with the database directly, as an attacker would
        conn.execute(text(stmt), params)


def test_payload_is_the_documented_format_1() -> None:
    d, f = "blake3:" + "ab" * 32, "blake3:" + "cd" * 32
    assert payload("team/fraud", "1.4.0", d, f) == (
        b"modelkeep-version-signature\n"
        b'{"artifact":"team/fraud","digest":"' + d.encode() + b'","files_digest":"' + f.encode()
        + b'","format":1,"version":"1.4.0"}'
    )
    assert payload("team/fraud", "1.4.0", d, f).startswith(PREFIX)
    assert payload("team/fraud", "1.4.1", d, f) != payload("team/fraud", "1.4.0", d, f)


def test_sign_then_verify_is_valid_and_audited(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _two_versions(registry, make_tree)
    private, public = generate_keypair()
    rec = registry.sign("team/fraud@1.1.0", private, reason="release review")
    assert rec.key_fingerprint == fingerprint(public)
    assert rec.signer == "alice" and rec.format == 1 and rec.reason == "release review"
    assert rec.public_key.encode() == public
    assert registry.signatures("team/fraud@1.1.0") == [rec]
    assert registry.signatures("team/fraud@1.0.0") == []

    checks = registry.verify("team/fraud@1.1.0")
    assert [(c.key_fingerprint, c.valid, c.detail) for c in checks] == [(rec.key_fingerprint, True, "valid")]
    assert registry.verify("team/fraud@1.1.0", [public])[0].valid
    events = registry._uow.read(lambda db: audit.events(db, artifact="team/fraud"))
    signed = [e for e in events if e.action == "signature.add"]
    assert len(signed) == 1 and signed[0].subject == "team/fraud@1.1.0" and signed[0].reason == "release review"


def test_several_signatures_and_the_wrong_key(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _two_versions(local, make_tree)
    k1, p1 = generate_keypair()
    k2, p2 = generate_keypair()
    _, stranger = generate_keypair()
    local.sign("team/fraud@1.0.0", k1)
    local.sign("team/fraud@1.0.0", k2)
    assert [c.valid for c in local.verify("team/fraud@1.0.0")] == [True, True]

    only = local.verify("team/fraud@1.0.0", [p2])
    assert len(only) == 1 and only[0].valid and only[0].key_fingerprint == fingerprint(p2)

    wrong = local.verify("team/fraud@1.0.0", [stranger])
    assert [(c.valid, c.detail, c.signature) for c in wrong] == [(False, "no signature by this key", None)]
    assert not has_valid_signature(local, local.get("team/fraud@1.0.0"), [stranger])
    assert has_valid_signature(local, local.get("team/fraud@1.0.0"), [stranger, p1])
    assert not has_valid_signature(local, "team/fraud@1.1.0", [p1])  # signed another version
    assert not has_valid_signature(local, "team/fraud@1.0.0", [])


def test_same_key_cannot_sign_twice(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _two_versions(local, make_tree)
    key, _ = generate_keypair()
    local.sign("team/fraud", key)
    with pytest.raises(SignatureExists, match="already signed"):
        local.sign("team/fraud@1.1.0", key)
    assert len(local.signatures("team/fraud")) == 1


def test_signature_moved_to_another_version_fails(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _two_versions(registry, make_tree)
    key, public = generate_keypair()
    registry.sign("team/fraud@1.0.0", key)
    # Copy the signature of 1.0.0 onto 1.1.0: it signs the other version's payload.
    _sql(
        registry,
        "INSERT INTO signatures (version_id, format, key_fingerprint, public_key, signature, signer, signed_at, reason) "
        "SELECT (SELECT id FROM versions WHERE minor = 1), format, key_fingerprint, public_key, signature, signer, "
        "signed_at, reason FROM signatures",
    )
    moved = registry.verify("team/fraud@1.1.0")
    assert [(c.valid, c.detail) for c in moved] == [(False, "the signature does not match this version")]
    assert not has_valid_signature(registry, "team/fraud@1.1.0", [public])
    assert registry.verify("team/fraud@1.0.0")[0].valid


def test_tampered_version_row_or_signature_fails(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _two_versions(registry, make_tree)
    key, public = generate_keypair()
    registry.sign("team/fraud@1.0.0", key)
    registry.sign("team/fraud@1.1.0", key)
    _sql(registry, "UPDATE versions SET files_digest = (SELECT files_digest FROM versions WHERE minor = 1) WHERE minor = 0")
    assert [c.valid for c in registry.verify("team/fraud@1.0.0")] == [False]
    assert registry._uow.read(lambda db: has_valid_signature(db, "team/fraud@1.0.0", [public])) is False

    good = registry.verify("team/fraud@1.1.0")[0]
    assert good.valid
    flipped = bytes([good_byte ^ 1 if i == 0 else good_byte for i, good_byte in enumerate(_signature_bytes(registry))])
    _sql(registry, "UPDATE signatures SET signature = :s WHERE version_id = (SELECT id FROM versions WHERE minor = 1)", s=flipped)
    assert [c.valid for c in registry.verify("team/fraud@1.1.0")] == [False]


def _signature_bytes(reg: EmbeddedRegistry) -> bytes:
    with reg._engine.connect() as conn:
        return bytes(
            conn.execute(
                text("SELECT signature FROM signatures WHERE version_id = (SELECT id FROM versions WHERE minor = 1)")
            ).scalar_one()
        )


def test_has_valid_signature_inside_a_transaction(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _two_versions(local, make_tree)
    key, public = generate_keypair()
    local.sign("team/fraud@1.1.0", key)
    version = local.get("team/fraud@1.1.0")
    assert local._uow.read(lambda db: has_valid_signature(db, version, [public]))
    assert local._uow.read(lambda db: has_valid_signature(db, version.key, [public]))
    assert not local._uow.read(lambda db: has_valid_signature(db, "team/fraud@1.0.0", [public]))


def test_bad_keys_are_refused(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    _two_versions(local, make_tree)
    private, public = generate_keypair()
    with pytest.raises(InvalidKey, match="public key was given|not a PEM private key"):
        local.sign("team/fraud", public)
    with pytest.raises(InvalidKey):
        local.sign("team/fraud", b"not a key")
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(InvalidKey, match="encrypted"):
        local.sign("team/fraud", encrypted)
    with pytest.raises(InvalidKey, match="private key was given"):
        local.verify("team/fraud", [private])
    assert local.signatures("team/fraud") == []


def test_write_keypair_modes_and_no_overwrite(tmp_path: Path) -> None:
    priv, pub = write_keypair(tmp_path / "release-key")
    assert pub == tmp_path / "release-key.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    before = priv.read_bytes()
    with pytest.raises(InvalidPath, match="already exists"):
        write_keypair(tmp_path / "release-key")
    assert priv.read_bytes() == before
    assert fingerprint(pub.read_bytes()).startswith("blake3:")
