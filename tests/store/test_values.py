from __future__ import annotations

import pytest

from modelkeep.errors import InvalidInput, InvalidPath, InvalidURI
from modelkeep.store import Digest, hash_bytes, normalize_path
from modelkeep.store.backends import open_backend


def test_digest_round_trip():
    d = hash_bytes(b"hello")
    assert Digest.parse(str(d)) == d
    assert str(d).startswith("blake3:") and len(d.hex) == 64


_ODD_HEX = [
    "AB" * 32,  # upper case: bytes.fromhex takes it, a digest is lower case
    "ab " * 21 + "a",  # spaces: bytes.fromhex skips them
    "ab" * 31 + "a ",
    "ab" * 33,
    "ab" * 31 + "zz",
    "\u0661" * 64,  # digits of another script
    "",
]


@pytest.mark.parametrize(
    "text",
    ["sha256:" + "0" * 64, "blake3:" + "0" * 63, "blake3:" + "G" * 64, "blake3" + "0" * 64, "blake3:" + "0" * 64 + "\n", ""]
    + ["blake3:" + h for h in _ODD_HEX],
)
def test_bad_digests_are_refused(text):
    with pytest.raises(InvalidInput):
        Digest.parse(text)


@pytest.mark.parametrize("text", _ODD_HEX)
def test_bad_hex_digests_are_refused(text):
    with pytest.raises(InvalidInput):
        Digest.from_hex(text)
    assert Digest.from_hex("ab" * 32).raw == bytes([0xAB] * 32)


@pytest.mark.parametrize(
    "raw,norm",
    [("a/b.txt", "a/b.txt"), ("./a//b", "a/b"), ("a/./b/", "a/b"), ("weights.safetensors", "weights.safetensors")],
)
def test_paths_normalize(raw, norm):
    assert normalize_path(raw) == norm


@pytest.mark.parametrize("raw", ["", "/etc/passwd", "../x", "a/../../x", "a/..", "a\\b", "a\x00b", "C:/x", ".", "./"])
def test_bad_paths_are_refused(raw):
    with pytest.raises(InvalidPath):
        normalize_path(raw)


def test_unknown_store_scheme_is_an_error():
    with pytest.raises(InvalidURI, match="unknown store scheme 's4'"):
        open_backend("s4://bucket")
