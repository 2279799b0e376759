"""Ed25519 signatures over a version's identity and manifest digest.

The signed payload (format 1) is the domain-separation prefix followed by the
canonical JSON (sorted keys, no spaces, UTF-8) of the version's identity::

    b"modelkeep-version-signature\\n"
    + {"artifact":"team/fraud","digest":"blake3:…","files_digest":"blake3:…","format":1,"version":"1.4.0"}

The prefix keeps a modelkeep signature from ever being valid for any other
message a key may sign; the format number lets a later payload shape coexist
with stored format-1 signatures. The version digest covers files, metadata,
provenance and lineage, ``files_digest`` the manifest, so a signature stands for
exactly one immutable version: it fails for any other version, and for this
one if its row is altered.

Keys are PEM: PKCS#8 private keys (unencrypted) and SubjectPublicKeyInfo public
keys. A key's fingerprint is ``blake3:<hex>`` of its raw 32 public bytes. Each
stored signature keeps the signer's public key, so ``verify`` without keys
checks every signature against the key that made it (integrity); trusting a
signer means passing its public key (``verify(ref, [pem])``,
:func:`has_valid_signature`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.db.models import ArtifactRow, SignatureRow, VersionRow
from modelkeep.errors import InvalidInput, InvalidKey, InvalidPath, SignatureExists, VersionNotFound
from modelkeep.registry import audit
from modelkeep.registry.names import VersionRef
from modelkeep.registry.types import SignatureCheck, SignatureRecord, Version, VersionKey
from modelkeep.registry.versions import canonical_json, find
from modelkeep.store.digest import hash_bytes

if TYPE_CHECKING:
    from modelkeep.registry.api import Registry

__all__ = [
    "FORMAT",
    "PREFIX",
    "fingerprint",
    "generate_keypair",
    "has_valid_signature",
    "load_private_key",
    "load_public_key",
    "payload",
    "add",
    "records",
    "sign_version",
    "verify",
    "write_keypair",
]

PREFIX = b"modelkeep-version-signature\n"
FORMAT = 1


def payload(artifact: str, version: str, digest: str, files_digest: str, *, format: int = FORMAT) -> bytes:
    """The exact bytes a signature of ``format`` signs. Raises InvalidInput for an unknown format."""
    if format != FORMAT:
        raise InvalidInput(f"unknown signed payload format {format} (this modelkeep knows format {FORMAT})")
    body = {
        "format": format,
        "artifact": artifact,
        "version": version,
        "digest": digest,
        "files_digest": files_digest,
    }
    return PREFIX + canonical_json(body)


# -- keys -------------------------------------------------------------------------------


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from unencrypted PKCS#8 PEM. Raises InvalidKey."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise InvalidKey("the private key is encrypted; modelkeep reads unencrypted PEM keys only") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = "a public key was given where the private key is needed" if b"PUBLIC KEY" in pem else None
        raise InvalidKey("not a PEM private key", hint=hint or "create one with: mk keys generate PATH") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey(f"not an Ed25519 private key ({type(key).__name__})")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from SubjectPublicKeyInfo PEM. Raises InvalidKey."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        if b"PRIVATE KEY" in pem:
            raise InvalidKey("a private key was given where a public key is expected (use the .pub file)") from None
        raise InvalidKey("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidKey(f"not an Ed25519 public key ({type(key).__name__})")
    return key


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fingerprint(key: Ed25519PublicKey | bytes) -> str:
    """``blake3:<hex>`` of the raw public key; ``key`` may be the key or its PEM."""
    if isinstance(key, bytes):
        key = load_public_key(key)
    return str(hash_bytes(_raw(key)))


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 keypair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private_pem, _pem(private.public_key()).encode()


def write_keypair(path: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new keypair: the private key at ``path`` (mode 0600), the public key at ``path.pub``.

    Refuses to replace existing files unless ``overwrite``. Raises InvalidPath.
    """
    private_path = Path(path).expanduser()
    public_path = private_path.with_name(private_path.name + ".pub")
    if not overwrite:
        for p in (private_path, public_path):
            if p.exists():
                raise InvalidPath(f"{p} already exists; refusing to replace a key")
    private_pem, public_pem = generate_keypair()
    try:
        _write(private_path, private_pem, 0o600)
        _write(public_path, public_pem, 0o644)
    except OSError as exc:
        raise InvalidPath(f"cannot write the keypair at {private_path}: {exc.strerror}") from None
    return private_path, public_path


def _write(path: Path, data: bytes, mode: int) -> None:
    # Created with its final mode: the private key is never readable by others, not even briefly.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- stored signatures ---------------------------------------------------------------------


def _version_payload(name: str, row: VersionRow, format: int = FORMAT) -> bytes:
    return payload(name, row.semver, row.digest, row.files_digest, format=format)


def sign_version(private_pem: bytes, version: Version) -> tuple[bytes, bytes]:
    """(public key PEM, signature) of ``version``'s format-1 payload, made here: the private key never leaves."""
    key = load_private_key(private_pem)
    message = payload(version.artifact, version.version, str(version.digest), str(version.files_digest))
    return _pem(key.public_key()).encode(), key.sign(message)


def add(
    session: Session,
    name: str,
    row: VersionRow,
    public_pem: bytes,
    signature: bytes,
    *,
    actor: str,
    at: datetime,
    reason: str,
) -> SignatureRecord:
    """Store a signature of version ``row`` made elsewhere, after checking it against the version as stored.

    Raises InvalidKey, InvalidInput (not a valid signature of this version), SignatureExists.
    """
    public = load_public_key(public_pem)
    fp = fingerprint(public)
    if not isinstance(signature, bytes | bytearray):
        raise InvalidInput(f"a signature is bytes, got {type(signature).__name__}")
    try:
        public.verify(bytes(signature), _version_payload(name, row))
    except InvalidSignature:
        raise InvalidInput(
            f"the signature is not a valid format-{FORMAT} signature of {name}@{row.semver} by key {fp}"
        ) from None
    taken = session.scalars(
        select(SignatureRow.id).where(SignatureRow.version_id == row.id, SignatureRow.key_fingerprint == fp)
    ).first()
    if taken is not None:
        raise SignatureExists(f"{name}@{row.semver} is already signed by key {fp}")
    sig = SignatureRow(
        version_id=row.id,
        format=FORMAT,
        key_fingerprint=fp,
        public_key=_raw(public),
        signature=bytes(signature),
        signer=actor,
        signed_at=at,
        reason=reason,
    )
    session.add(sig)
    session.flush()
    audit.record(
        session,
        action="signature.add",
        actor=actor,
        artifact=name,
        subject=f"{name}@{row.semver}",
        reason=reason,
        data={"key_fingerprint": fp, "format": FORMAT, "digest": row.digest},
        at=at,
    )
    return _record(sig, VersionKey(name, row.semver))


def records(session: Session, name: str, row: VersionRow) -> list[SignatureRecord]:
    """Signatures of version ``row``, oldest first."""
    key = VersionKey(name, row.semver)
    return [_record(s, key) for s in _rows(session, row.id)]


def verify(
    session: Session, name: str, row: VersionRow, public_pems: Sequence[bytes] | None = None
) -> list[SignatureCheck]:
    """Check every signature of ``row`` (or those of the given keys). Raises InvalidKey."""
    key = VersionKey(name, row.semver)
    sigs = _rows(session, row.id)
    if public_pems is None:
        return [_check(s, key, name, row) for s in sigs]
    by_fp = {s.key_fingerprint: s for s in sigs}
    out = []
    for pem in public_pems:
        fp = fingerprint(load_public_key(pem))
        s = by_fp.get(fp)
        if s is None:
            out.append(SignatureCheck(fp, False, "no signature by this key", None))
        else:
            out.append(_check(s, key, name, row))
    return out


def _rows(session: Session, version_id: int) -> list[SignatureRow]:
    stmt = select(SignatureRow).where(SignatureRow.version_id == version_id).order_by(SignatureRow.id)
    return list(session.scalars(stmt))


def _check(sig: SignatureRow, key: VersionKey, name: str, row: VersionRow) -> SignatureCheck:
    record = _record(sig, key)
    try:
        public = Ed25519PublicKey.from_public_bytes(sig.public_key)
    except ValueError:
        return SignatureCheck(sig.key_fingerprint, False, "the stored public key is not an Ed25519 key", record)
    if fingerprint(public) != sig.key_fingerprint:
        return SignatureCheck(sig.key_fingerprint, False, "the fingerprint does not match the stored public key", record)
    try:
        message = _version_payload(name, row, sig.format)
    except InvalidInput as exc:
        return SignatureCheck(sig.key_fingerprint, False, exc.message, record)
    try:
        public.verify(sig.signature, message)
    except InvalidSignature:
        return SignatureCheck(sig.key_fingerprint, False, "the signature does not match this version", record)
    return SignatureCheck(sig.key_fingerprint, True, "valid", record)


def _record(sig: SignatureRow, key: VersionKey) -> SignatureRecord:
    try:
        pem = _pem(Ed25519PublicKey.from_public_bytes(sig.public_key))
    except ValueError:
        pem = ""
    return SignatureRecord(
        version=key,
        key_fingerprint=sig.key_fingerprint,
        public_key=pem,
        format=sig.format,
        signer=sig.signer,
        signed_at=sig.signed_at,
        reason=sig.reason,
    )


# -- for promotion policies -------------------------------------------------------------------


def has_valid_signature(
    db_or_registry: Session | Registry,
    version: Version | VersionRow | VersionKey | str,
    allowed_public_keys: Sequence[bytes],
) -> bool:
    """True when ``version`` carries a valid signature by one of ``allowed_public_keys`` (PEM).

    ``db_or_registry`` is a Session inside the caller's transaction (a policy
    evaluated at the moment of a promotion) or a Registry. ``version`` is a
    Version record, a VersionRow (Session only), a VersionKey or a ref string.
    An empty ``allowed_public_keys`` is never satisfied. Raises InvalidKey for a
    key that is not an Ed25519 public key PEM, VersionNotFound.
    """
    if not allowed_public_keys:
        return False
    keys = list(allowed_public_keys)
    if not isinstance(db_or_registry, Session):
        ref = version.ref if isinstance(version, Version) else str(version)
        return any(c.valid for c in db_or_registry.verify(ref, keys))
    session = db_or_registry
    if isinstance(version, VersionRow):
        name = session.scalars(select(ArtifactRow.name).where(ArtifactRow.id == version.artifact_id)).one()
        row = version
    else:
        ref = version.ref if isinstance(version, Version) else str(version)
        name, row = find(session, VersionRef.parse(ref))
    if row.deleted_at is not None:
        raise VersionNotFound(f"{name}@{row.semver} was deleted")
    return any(c.valid for c in verify(session, name, row, keys))
