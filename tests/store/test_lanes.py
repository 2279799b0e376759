"""BLAKE3 of many equal chunks in one call: the native helper gives plain BLAKE3."""

from __future__ import annotations

import os

import blake3
import pytest

from modelkeep.store import _lanes, digest


def _expected(data: bytes, cuts) -> list[bytes]:
    return [blake3.blake3(data[o : o + n]).digest() for o, n in cuts]


def test_native_helper_is_built_and_runs_here():
    # Built by the install from modelkeep/store/_lanes.c. It needs AVX-512F, which
    # the machines we measure on have; elsewhere hash_chunks uses the blake3 module
    # and the helper says why it cannot run.
    assert digest.LANES == _lanes.available()
    if _lanes.available():
        with pytest.raises(ValueError):
            _lanes.hash_equal(b"x" * 100, 64, 2, bytearray(64))  # source too short
        with pytest.raises(ValueError):
            _lanes.hash_equal(b"x" * 128, 64, 2, bytearray(63))  # output too short
        with pytest.raises(ValueError):
            _lanes.hash_list([b"x" * 64, b"y" * 63], bytearray(64))  # lengths differ
    else:
        with pytest.raises(RuntimeError):
            _lanes.hash_equal(b"x" * 64, 64, 1, bytearray(32))


@pytest.mark.parametrize(
    "length",
    # every shape of the BLAKE3 tree: empty, partial blocks, one chunk, chunk edges, deep trees
    [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 3072, 4097, 16 * 1024 + 5, 65536, 65536 + 100, 262144],
)
@pytest.mark.parametrize("count", [1, 15, 16, 17, 33])
def test_equal_chunks_hash_to_plain_blake3(length, count):
    # back-to-back chunks of one length: one native call where the CPU runs it
    data = os.urandom(length * count + 3)
    cuts = [(i * length, length) for i in range(count)]
    assert digest.hash_chunks(memoryview(data), cuts) == _expected(data, cuts)
    views = [memoryview(data)[o : o + n] for o, n in cuts]
    assert digest.hash_views(views * 8) == _expected(data, cuts) * 8  # enough of one length to fill lanes


@pytest.mark.parametrize("native", [True, False])
def test_hash_chunks_mixes_runs_and_odd_chunks(native, monkeypatch):
    if not native:
        monkeypatch.setattr(digest, "LANES", False)
    data = os.urandom(40 * 65536 + 5000)
    # a tensor's chunks (equal, back to back), a longer last one, then uneven ones and a gap
    cuts = [(i * 65536, 65536) for i in range(35)]
    cuts += [(35 * 65536, 65536 + 700), (36 * 65536 + 700, 1000), (36 * 65536 + 1700, 1000), (38 * 65536, 65536)]
    got = digest.hash_chunks(memoryview(data), cuts)
    assert got == _expected(data, cuts)
    assert digest.hash_chunks(memoryview(data), []) == []


_GUARD_CHILD = r"""
import faulthandler, mmap, os, sys
from modelkeep.store import _lanes
from modelkeep.store.digest import hash_chunks, hash_mapped
if sys.argv[2] == "faulthandler":
    faulthandler.enable()
path = sys.argv[1]
fd = os.open(path, os.O_RDONLY)
m = mmap.mmap(fd, 1 << 20, access=mmap.ACCESS_READ)
view = memoryview(m)
cuts = [(i, 65536) for i in range(0, 1 << 20, 65536)] + []
with open(path, "rb") as f:
    data = f.read()
assert hash_mapped(view, cuts) == hash_chunks(memoryview(data), cuts)
copy = bytearray(1 << 20)
assert _lanes.copy_mapped(copy, view) and copy == data
os.truncate(path, 4096)  # every page but the first is now past the end of the file
for _ in range(3):  # each time, not only the first (the signal mask is restored)
    assert hash_mapped(view, cuts) is None
    assert _lanes.copy_mapped(copy, view[8192:]) is False
assert _lanes.copy_mapped(copy, view[:4096]) is True  # the page still in the file reads
if sys.argv[2] == "faulthandler":
    faulthandler.enable()  # installed over ours: the next guarded call takes SIGBUS back
    assert _lanes.copy_mapped(copy, view[8192:]) is False
print("guarded", flush=True)
view[500000]  # an unguarded read: SIGBUS ends the process, as it always did
print("survived", flush=True)
"""


@pytest.mark.parametrize("handler", ["default", "faulthandler"])
def test_reads_of_a_mapping_survive_the_file_shrinking(tmp_path, handler):
    # A push hashes files through a mapping. A file truncated meanwhile would
    # raise SIGBUS on the next page read; the guarded reads answer "changed"
    # instead, and a fault anywhere else still ends the process (in a child
    # here, so a broken guard fails this test rather than killing the run).
    # Without the guarded reads (no native helper, no AVX-512F) no file is mapped.
    import signal
    import subprocess
    import sys

    from modelkeep.store.scan import map_range

    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(1 << 20))
    if not digest.MAPPED:
        with map_range(path, 0, 1 << 20) as mapped:
            assert mapped is None
        return
    proc = subprocess.run(
        [sys.executable, "-c", _GUARD_CHILD, str(path), handler], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["guarded"], proc.stderr
    assert proc.returncode == -signal.SIGBUS, (proc.returncode, proc.stderr)
    if handler == "faulthandler":
        assert "Bus error" in proc.stderr
