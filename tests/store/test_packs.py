"""Pack writing: direct (O_DIRECT) and buffered writes give the same pack, byte for byte."""

from __future__ import annotations

import errno
import os

import pytest

from modelkeep.errors import StorageError
from modelkeep.store import packs
from modelkeep.store.backends.local import LocalBackend
from modelkeep.store.packs import PackWriter, pack_name, read_header


def _write_pack(backend, sizes: list[int], seed: int) -> tuple[str, bool]:
    w = PackWriter(backend)
    direct = w.direct
    rnd = __import__("random").Random(seed)
    for i, n in enumerate(sizes):
        body = rnd.randbytes(n)
        # several parts per chunk, as encoded chunks have (table, planes, tail)
        parts = [body[: n // 3], memoryview(body)[n // 3 : n // 2], body[n // 2 :]]
        w.add_many([(i.to_bytes(32, "little"), 0, parts, n)])
    pack_id, _ = w.seal()
    return pack_id, direct


# chunk sizes that end packs on and off the 4 KiB grid and cross the 4 MiB stage
SIZES = [
    [1],
    [4096],
    [4095, 1, 4096],
    [65536] * 70,
    [100_000, 3, 4_194_304, 77_777],
]


@pytest.mark.parametrize("sizes", SIZES)
def test_direct_and_buffered_packs_are_identical(tmp_path, monkeypatch, sizes):
    direct_backend = LocalBackend(tmp_path / "direct")
    pack_id, direct = _write_pack(direct_backend, sizes, seed=len(sizes))
    # tmp_path is on the machine's disk, which takes O_DIRECT; tmpfs would not
    assert direct
    monkeypatch.setattr(packs._Stage, "open", classmethod(lambda cls, fd, where: None))
    buffered_backend = LocalBackend(tmp_path / "buffered")
    pack_id2, direct2 = _write_pack(buffered_backend, sizes, seed=len(sizes))
    assert not direct2
    assert pack_id == pack_id2
    name = pack_name(pack_id)
    assert direct_backend.get(name) == buffered_backend.get(name)
    assert [e.stored for e in read_header(direct_backend, name)] == sizes
    assert not list((tmp_path / "direct" / "tmp").iterdir())  # no temp file left behind


def test_a_filesystem_refusing_direct_writes_gets_buffered_ones(tmp_path, monkeypatch):
    real = os.pwrite

    def refuse(fd, data, offset):
        if os.O_DIRECT & __import__("fcntl").fcntl(fd, __import__("fcntl").F_GETFL):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", refuse)
    backend = LocalBackend(tmp_path)
    pack_id, direct = _write_pack(backend, [5000, 70_000], seed=1)
    assert not direct
    assert [e.stored for e in read_header(backend, pack_name(pack_id))] == [5000, 70_000]


def test_a_failing_direct_write_fails_the_seal(tmp_path, monkeypatch):
    backend = LocalBackend(tmp_path)
    w = PackWriter(backend)
    assert w.direct
    w.add_many([(b"\1" * 32, 0, [b"x" * 5000], 5000)])

    def broken(fd, data, offset):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(packs, "_pwrite_direct", broken)
    with pytest.raises(OSError):
        w.seal()
    w.discard()
    assert not list((tmp_path / "tmp").iterdir())
    assert not list(backend.list("packs/"))


def test_store_push_error_on_pack_write_is_a_storage_error(tmp_path, monkeypatch):
    from modelkeep.store import open_store

    store = open_store(str(tmp_path / "s"))
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(12 << 20))  # more than a staging buffer: fails while chunks are added

    def broken(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(packs, "_pwrite_direct", broken)
    with store.session() as s, pytest.raises(StorageError, match="No space left"):
        s.put_file(src, "f.bin")
        s.commit()


def test_a_forked_child_writes_packs_with_its_own_io_threads(tmp_path):
    backend = LocalBackend(tmp_path / "parent")
    _write_pack(backend, [70_000] * 100, seed=2)  # the parent's I/O threads now exist
    pid = os.fork()
    if pid == 0:  # the child: its pack must be written, not wait forever on the parent's threads
        code = 1
        try:
            child = LocalBackend(tmp_path / "child")
            pack_id, _ = _write_pack(child, [70_000] * 100, seed=3)
            code = 0 if len(read_header(child, pack_name(pack_id))) == 100 else 1
        finally:
            os._exit(code)
    deadline = __import__("time").monotonic() + 30
    while __import__("time").monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        __import__("time").sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the forked child hung writing a pack")


def test_a_read_hint_never_fails_and_changes_nothing(tmp_path, monkeypatch):
    backend = LocalBackend(tmp_path / "store")
    backend.put("packs/ab/x.pack", b"0123456789")
    advised = []
    real = os.posix_fadvise

    def spy(fd: int, off: int, n: int, advice: int) -> None:
        advised.append((off, n, advice))
        real(fd, off, n, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    backend.will_read("packs/ab/x.pack", 2, 5)
    assert advised == [(2, 5, os.POSIX_FADV_WILLNEED)]
    backend.will_read("packs/cd/missing.pack", 0, 10)  # gone (a repack): the read that follows says so
    monkeypatch.setattr(os, "posix_fadvise", lambda *a: (_ for _ in ()).throw(OSError(errno.ESPIPE, "no")))
    backend.will_read("packs/ab/x.pack", 0, 10)  # a filesystem without it: nothing happens
    view = memoryview(bytearray(5))
    backend.read_into("packs/ab/x.pack", 2, view)
    assert bytes(view) == b"23456"
