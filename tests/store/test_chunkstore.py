from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from modelkeep.errors import CorruptData, StoreLocked
from modelkeep.store import Manifest, open_store
from modelkeep.store.backends.memory import MemoryBackend

from .conftest import model_tensors, write_safetensors


def push(store, *paths: Path):
    with store.session() as s:
        entries = [s.put_file(p, p.name) for p in paths]
        s.commit()
    return entries, s


def test_round_trip_and_dedup(store, tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(3_000_000))
    (e,), s1 = push(store, src)
    assert s1.new_bytes == 3_000_000 and e.size == 3_000_000
    out = tmp_path / "out.bin"
    store.read_file(e, out)
    assert out.read_bytes() == src.read_bytes()
    (e2,), s2 = push(store, src)
    assert e2 == e and s2.new_bytes == 0  # nothing stored twice
    assert store.missing(c.digest for c in e.chunks) == set()


def test_empty_and_tiny_files(store, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"x")
    (e0, e1), _ = push(store, empty, tiny)
    assert e0.size == 0 and e0.chunks == ()
    store.read_file(e0, tmp_path / "e0")
    store.read_file(e1, tmp_path / "e1")
    assert (tmp_path / "e0").read_bytes() == b"" and (tmp_path / "e1").read_bytes() == b"x"


def test_finetune_stores_only_changed_tensors(store, tmp_path):
    t = model_tensors(10, 256 * 1024)
    base = write_safetensors(tmp_path / "model.safetensors", t)
    push(store, base)
    t["layer3.weight"] = t["layer3.weight"] + 0.001
    ft_dir = tmp_path / "ft"
    ft_dir.mkdir()
    ft = write_safetensors(ft_dir / "model.safetensors", t)
    (e,), s = push(store, ft)
    tensor = 256 * 1024 * 4
    assert tensor <= s.new_bytes <= tensor + 64 * 1024  # the changed tensor and the header
    store.read_file(e, tmp_path / "check")
    assert (tmp_path / "check").read_bytes() == ft.read_bytes()


def test_grown_header_costs_only_the_header(store, tmp_path):
    t = model_tensors(8, 256 * 1024)
    push(store, write_safetensors(tmp_path / "a.safetensors", t))
    d = tmp_path / "b"
    d.mkdir()
    (_,), s = push(store, write_safetensors(d / "a.safetensors", t, metadata={"note": "x" * 100}))
    assert s.new_bytes < 64 * 1024


def test_float_tensors_are_stored_compressed(local_store, tmp_path):
    t = model_tensors(8, 256 * 1024)
    p = write_safetensors(tmp_path / "m.safetensors", t)
    push(local_store, p)
    st = local_store.stats()
    assert st.unique_bytes == p.stat().st_size
    assert st.stored_bytes < 0.92 * p.stat().st_size


def test_corrupt_pack_byte_fails_pull_and_fsck(local_store, tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(500_000))
    (e,), _ = push(local_store, src)
    (pack,) = (local_store.backend.root / "packs").rglob("*.pack")
    raw = bytearray(pack.read_bytes())
    raw[1000] ^= 0xFF
    os.chmod(pack, 0o644)
    pack.write_bytes(bytes(raw))
    local_store.backend.close()  # drop cached descriptors of the old file
    out = tmp_path / "out.bin"
    with pytest.raises(CorruptData, match="blob.bin"):
        local_store.read_file(e, out)
    assert not out.exists() and not list(tmp_path.glob(".out.bin*"))
    report = local_store.fsck([Manifest.of([e])])
    assert [p.kind for p in report.problems] == ["corrupt_chunk"]
    assert report.problems[0].file == e.digest


def test_index_is_rebuilt_from_packs(local_store, tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(800_000))
    (e,), _ = push(local_store, src)
    local_store.index.compact()
    root = local_store.backend.root
    assert list((root / "index").glob("*.idx"))
    for f in (root / "index").glob("*.idx"):
        f.unlink()
    fresh = open_store(f"file://{root}")
    assert fresh.missing(c.digest for c in e.chunks) == set()
    fresh.read_file(e, tmp_path / "again")
    assert (tmp_path / "again").read_bytes() == src.read_bytes()


def test_gc_removes_only_unreferenced_and_respects_grace(local_store, tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(os.urandom(400_000))
    b = tmp_path / "b.bin"
    b.write_bytes(os.urandom(400_000))
    (ea,), _ = push(local_store, a)
    (eb,), _ = push(local_store, b)
    live = {c.digest for c in ea.chunks}
    young = local_store.gc(live, grace_seconds=3600)
    assert young.packs_deleted == 0 and young.packs_kept_young == 1
    done = local_store.gc(live, grace_seconds=0)
    assert done.packs_deleted == 1 and done.bytes_freed > 300_000
    assert local_store.missing(c.digest for c in eb.chunks)
    local_store.read_file(ea, tmp_path / "a2")
    assert (tmp_path / "a2").read_bytes() == a.read_bytes()


def test_gc_repacks_mostly_dead_packs(local_store, tmp_path):
    files = []
    for i in range(5):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(os.urandom(300_000))
        files.append(p)
    entries, _ = push(local_store, *files)  # one pack holding all five
    keep = entries[0]
    report = local_store.gc({c.digest for c in keep.chunks}, grace_seconds=0)
    assert report.packs_repacked == 1
    assert local_store.stats().stored_bytes < 400_000
    local_store.read_file(keep, tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == files[0].read_bytes()


def test_gc_refuses_while_a_push_is_in_progress(store, tmp_path):
    with store.session():
        with pytest.raises(StoreLocked):
            store.gc(set(), grace_seconds=0)


_PUSHER = r"""
import sys, time
from pathlib import Path
from modelkeep.store import open_store
store = open_store(sys.argv[1])
def slow(n):
    time.sleep(0.02)
with store.session() as s:
    s.put_file(Path(sys.argv[2]), "big.bin", progress=slow)
    s.commit()
"""


def test_killed_push_leaves_store_clean_and_chunks_reusable(tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(np.random.default_rng(0).bytes(80 * 1024 * 1024))
    url = f"file://{tmp_path / 'store'}"
    proc = subprocess.Popen([sys.executable, "-c", _PUSHER, url, str(src)])
    store_root = tmp_path / "store"
    deadline = time.time() + 60
    while time.time() < deadline and not list((store_root / "packs").rglob("*.pack")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = open_store(url)
    assert store.fsck([]).problems == ()
    with store.session() as s:
        e = s.put_file(src, "big.bin")
        s.commit()
    assert 0 < s.new_bytes < src.stat().st_size  # what the killed push sealed is reused
    store.read_file(e, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert store.fsck([Manifest.of([e])]).problems == ()


def test_memory_backends_are_separate_spaces():
    a, b = MemoryBackend("x-space"), MemoryBackend("y-space")
    a.put("k", b"v")
    assert a.exists("k") and not b.exists("k")


def test_push_after_gc_in_another_process_does_not_trust_a_stale_index(tmp_path):
    url = f"file://{tmp_path / 'store'}"
    a = tmp_path / "a.bin"
    a.write_bytes(os.urandom(300_000))
    writer = open_store(url)
    (ea,), _ = push(writer, a)  # writer's index now names a's pack
    collector = open_store(url)
    assert collector.gc(set(), grace_seconds=0).packs_deleted == 1  # a is garbage for this gc
    (ea2,), s = push(writer, a)  # must store the chunks again, not dedup against the gone pack
    assert s.new_bytes == 300_000
    writer.read_file(ea2, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == a.read_bytes()


def test_a_failing_segment_fails_the_push_without_stalling_the_others(local_store, tmp_path, monkeypatch):
    # When a worker dies mid-segment, the other worker and the packer must be
    # released and the failure reported, not left waiting forever.
    import threading

    import modelkeep.store.scan as scan  # where a push's blocks are cut
    from modelkeep.store.chunking import segments

    src = write_safetensors(tmp_path / "m.safetensors", model_tensors(8, 2 * 1024 * 1024))
    with open(src, "rb") as f:
        victim = [s for s in segments(f, src.stat().st_size, src.name) if s.tensor][2].start
    real_cut = scan.cut

    def failing_cut(f, seg, block=None, **kwargs):
        for i, piece in enumerate(real_cut(f, seg, 1024 * 1024, **kwargs)):  # 1 MiB blocks: several a tensor
            if seg.start == victim and i == 1:  # the third tensor's read fails after its first block
                raise OSError("file changed while being read")
            yield piece

    monkeypatch.setattr(scan, "cut", failing_cut)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            push(local_store, src)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the push hung after a worker failed"
    assert isinstance(outcome[0], OSError), repr(outcome[0])
    # the store is still usable: the same file pushes cleanly once reads work
    monkeypatch.setattr(scan, "cut", real_cut)
    (e,), _ = push(local_store, src)
    out = tmp_path / "out.safetensors"
    local_store.read_file(e, out)
    assert out.read_bytes() == src.read_bytes()


def test_manifest_from_its_parsed_json_round_trips_and_refuses_bad_shapes():
    import json

    from modelkeep.errors import InvalidInput
    from modelkeep.store.digest import Digest
    from modelkeep.store.manifest import ChunkRef, FileEntry

    chunks = (ChunkRef(Digest(bytes(range(32))), 5), ChunkRef(Digest(bytes(32)), 3))
    m = Manifest.of([FileEntry.of_chunks("b/w.bin", chunks), FileEntry.of_chunks("a.txt", ())])
    doc = json.loads(m.to_bytes())
    assert doc["format"] == 2
    assert Manifest.from_doc(doc) == m == Manifest.from_bytes(m.to_bytes())
    # format 1 (whole-file digests) is read as stored: only the bytes could confirm its digests
    old = Manifest.of([FileEntry("b/w.bin", Digest(bytes([7] * 32)), 8, chunks)], format=1)
    assert json.loads(old.to_bytes())["format"] == 1
    assert Manifest.from_bytes(old.to_bytes()) == old
    lying = json.loads(m.to_bytes())
    lying["files"][1]["digest"] = str(Digest(bytes([7] * 32)))
    bad = [
        [],  # not an object
        {"format": 3, "files": []},
        {"format": True, "files": []},
        {"format": 1, "files": [{"path": "../x", "digest": str(Digest(bytes(32))), "size": 0, "chunks": []}]},
        {"format": 1, "files": [{"path": "x", "digest": "md5:00", "size": 0, "chunks": []}]},
        {"format": 1, "files": [{"path": "x", "digest": str(Digest(bytes(32))), "size": 4, "chunks": []}]},
        lying,  # a file digest that is not its chunk list's
    ]
    good = "ab" * 32 + ":5"
    for chunks in (
        good,  # not a list
        [good.upper()],  # digests are written in lower case
        ["ab" * 31 + ":5"],  # 62 hex digits
        ["ab" * 31 + "  :5"],  # spaces decode, but are not a digest
        ["ab" * 32 + "5"],  # no colon
        ["ab" * 32 + ":-5"],  # negative size
        ["ab" * 32 + ":five"],
        [["ab" * 32, 5]],  # not a string
    ):
        entry = {"path": "x", "digest": str(Digest(bytes(32))), "size": 5, "chunks": chunks}
        bad.append({"format": 1, "files": [entry]})
    for d in bad:
        with pytest.raises(InvalidInput):
            Manifest.from_doc(d)
    with pytest.raises(InvalidInput, match="not the digest of its chunk list"):
        Manifest.from_doc(lying)
    with pytest.raises(InvalidInput):
        Manifest.from_bytes(b"{not json")


def test_file_digest_is_blake3_derive_key_of_chunk_digests_then_lengths():
    import struct

    import blake3

    from modelkeep.store.digest import Digest
    from modelkeep.store.manifest import FILE_DIGEST_CONTEXT, ChunkRef, file_digest

    a, b = blake3.blake3(b"first").digest(), blake3.blake3(b"second").digest()
    chunks = [ChunkRef(Digest(a), 5), ChunkRef(Digest(b), 6)]
    # written out by hand from docs/storage-format.md, so a change of either shows
    expected = blake3.blake3(a + b + struct.pack("<QQ", 5, 6), derive_key_context=FILE_DIGEST_CONTEXT).digest()
    assert file_digest(chunks).raw == expected
    assert file_digest([]).raw == blake3.blake3(b"", derive_key_context=FILE_DIGEST_CONTEXT).digest()
    assert file_digest(chunks[::-1]) != file_digest(chunks)  # order matters
    assert file_digest([ChunkRef(Digest(a), 6), ChunkRef(Digest(b), 5)]) != file_digest(chunks)  # lengths too
    assert file_digest([ChunkRef(Digest(a), 5)]).raw != a  # never the chunk's own digest


def _tensor_file(path: Path, tensors: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_safetensors(path, tensors)


def test_pieces_already_stored_are_hashed_through_a_mapping(local_store, tmp_path, monkeypatch):
    # A fine-tune: tensors left as they were are hashed through a mapping (no
    # copy); a tensor whose first chunk is unchanged but whose tail changed is
    # met in a mapped piece, copied out and stored. Same chunks as reading.
    import contextlib

    import modelkeep.store.chunkstore as cs
    from modelkeep.store.digest import MAPPED

    t = model_tensors(6, 1024 * 1024)  # 4 MiB tensors: one piece each, two blocks
    base = _tensor_file(tmp_path / "a" / "model.safetensors", t)
    push(local_store, base)
    t["layer2.weight"] = t["layer2.weight"].copy()
    t["layer2.weight"][600_000:] += 0.5  # the tensor's second block only
    ft = _tensor_file(tmp_path / "b" / "model.safetensors", t)

    mapped_pieces = []
    real = cs.map_range

    @contextlib.contextmanager
    def counting(path, start, end):
        with real(path, start, end) as view:
            if view is not None:
                mapped_pieces.append(start)
            yield view

    monkeypatch.setattr(cs, "map_range", counting)
    (e,), s = push(local_store, ft)
    if MAPPED:
        assert len(mapped_pieces) == 6
    tail = 4 * 1024 * 1024 - (600_000 * 4 // 65536) * 65536  # the changed tensor's chunks from its first changed one
    assert tail <= s.new_bytes <= tail + 64 * 1024  # and the header
    out = tmp_path / "out"
    local_store.read_file(e, out)
    assert out.read_bytes() == ft.read_bytes()

    # the entry is the one reading every byte gives
    monkeypatch.setattr(cs, "map_range", lambda *a: contextlib.nullcontext())
    other = open_store(f"file://{tmp_path / 'other'}")
    push(other, base)
    (e_read,), _ = push(other, ft)
    assert e_read == e
    assert local_store.fsck([Manifest.of([e])]).problems == ()


@pytest.mark.parametrize("change", ["truncated", "rewritten"])
def test_a_file_changed_under_its_mapping_fails_the_push_cleanly(local_store, tmp_path, monkeypatch, change):
    # truncated: the next page read would raise SIGBUS; the guarded read reports it.
    # rewritten in place after hashing: the new chunk's bytes no longer match the
    # digest it was claimed under, and must not be stored under it. Where the
    # native helper does not run, files are read: a truncation is met by the
    # read, and a rewrite after a block was read cannot touch the bytes hashed.
    import modelkeep.store.chunkstore as cs
    from modelkeep.errors import InvalidPath
    from modelkeep.store import scan
    from modelkeep.store.digest import MAPPED

    hooked, hook = (scan, "hash_mapped") if MAPPED else (cs, "hash_chunks")
    t = model_tensors(4, 1024 * 1024)
    base = _tensor_file(tmp_path / "a" / "model.safetensors", t)
    push(local_store, base)
    t["layer1.weight"] = t["layer1.weight"].copy()
    t["layer1.weight"][600_000:] += 0.5
    ft = _tensor_file(tmp_path / "b" / "model.safetensors", t)
    real_hash = getattr(hooked, hook)

    meddled = []

    def meddling_hash(view, cuts):
        got = real_hash(view, cuts)
        if meddled:
            return got
        if change == "truncated":
            os.truncate(ft, 4096)
            meddled.append(True)
        elif any(d not in local_store.index for d in got or ()):  # a block with new chunks, before its copy
            with open(ft, "r+b") as f:
                f.seek(4096)
                f.write(os.urandom(ft.stat().st_size - 4096))
            meddled.append(True)
        return got

    monkeypatch.setattr(hooked, hook, meddling_hash)
    if change == "rewritten" and not MAPPED:
        push(local_store, ft)  # torn between two states, but every chunk stored is the bytes hashed
    else:
        with pytest.raises(InvalidPath, match="changed while being read"):
            push(local_store, ft)
    assert meddled
    monkeypatch.setattr(hooked, hook, real_hash)
    assert local_store.fsck([]).problems == ()  # nothing stored under a wrong digest


def test_scan_hashes_through_a_mapping_and_hands_over_the_same_bytes(tmp_path, monkeypatch):
    # mk digest and a remote push scan files: through a mapping where the native
    # helper runs, the entry and the chunk bytes handed on are those of reading.
    from modelkeep.errors import InvalidPath
    from modelkeep.store import scan
    from modelkeep.store.digest import copy_mapped

    src = _tensor_file(tmp_path / "m.safetensors", model_tensors(3, 5 * 1024 * 1024))  # 20 MiB tensors: two pieces

    def collect():
        got = []

        def keep(d, data, elem, phase, offset):
            own = bytearray(len(data))
            assert copy_mapped(own, data)
            got.append((d, bytes(own), elem, phase, offset))

        return scan.scan_file(src, "m.safetensors", keep), got

    mapped_entry, mapped_chunks = collect()
    monkeypatch.setattr(scan, "MAPPED", False)
    read_entry, read_chunks = collect()
    assert mapped_entry == read_entry and mapped_chunks == read_chunks
    data = src.read_bytes()
    assert b"".join(c[1] for c in read_chunks) == data
    assert all(data[offset : offset + len(b)] == b for _, b, _, _, offset in read_chunks)  # where a push sends from
    monkeypatch.undo()

    def truncating(d, data, elem, phase, offset):
        os.truncate(src, 4096)

    with pytest.raises(InvalidPath, match="changed while being read"):
        scan.scan_file(src, "m.safetensors", truncating)
