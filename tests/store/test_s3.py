"""The S3 backend against moto's HTTP server, and what a flaky S3 does to a push."""

from __future__ import annotations

import os
import threading
import time

import pytest

pytest.importorskip("boto3")

from modelkeep.errors import ChunkNotFound, InvalidPath, InvalidURI, StorageError, StoreLocked  # noqa: E402
from modelkeep.store import ChunkStore, open_store  # noqa: E402
from modelkeep.store.backends import open_backend  # noqa: E402
from modelkeep.store.backends.s3 import S3Backend  # noqa: E402


@pytest.fixture
def bucket(s3_endpoint) -> str:
    from s3_support import make_bucket

    return make_bucket(s3_endpoint)


@pytest.fixture
def proxy(s3_endpoint):
    from s3_support import FaultProxy

    p = FaultProxy(s3_endpoint)
    yield p
    p.close()


def test_objects_round_trip(s3_endpoint, bucket, tmp_path):
    b = open_backend(f"s3://{bucket}/some/prefix?endpoint={s3_endpoint}")
    try:
        assert b.url == f"s3://{bucket}/some/prefix"
        b.put("packs/ab/x.pack", b"0123456789")
        assert b.get("packs/ab/x.pack") == b"0123456789"
        assert b.get_range("packs/ab/x.pack", 3, 4) == b"3456"
        assert b.get_range("packs/ab/x.pack", 3, 0) == b""
        with pytest.raises(ChunkNotFound):
            b.get_range("packs/ab/x.pack", 8, 4)  # past the end
        assert b.stat("packs/ab/x.pack").size == 10 and b.exists("packs/ab/x.pack")
        with b.open_reader("packs/ab/x.pack") as r:
            r.seek(-3, os.SEEK_END)
            assert r.read() == b"789"
            r.seek(0)
            assert r.read(2) == b"01"
        assert [i.name for i in b.list("packs/")] == ["packs/ab/x.pack"]
        b.delete("packs/ab/x.pack")
        b.delete("packs/ab/x.pack")  # absent: not an error
        assert not b.exists("packs/ab/x.pack")
        for missing in (lambda: b.get("nope"), lambda: b.stat("nope"), lambda: b.get_range("nope", 0, 1)):
            with pytest.raises(ChunkNotFound):
                missing()
        for bad in ("../x", "/abs", "a\\b", "a\x00b"):
            with pytest.raises(InvalidPath):
                b.put(bad, b"")
    finally:
        b.close()


def test_bad_urls_and_missing_bucket(s3_endpoint):
    with pytest.raises(InvalidURI):
        open_backend("s3:///prefix")
    with pytest.raises(InvalidURI):
        open_backend("s3://b/p?region=x")
    b = open_backend(f"s3://no-such-bucket-mk/p?endpoint={s3_endpoint}")
    try:
        with pytest.raises(StorageError, match="does not exist"):
            b.put("x", b"1")
    finally:
        b.close()


def test_large_pack_goes_up_as_multipart(s3_endpoint, bucket, tmp_path):
    b = S3Backend(bucket, "p", endpoint_url=s3_endpoint, multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    try:
        src = tmp_path / "big.tmp"
        data = os.urandom(11 << 20)
        src.write_bytes(data)
        b.put_file("packs/aa/big.pack", str(src))
        assert not src.exists()  # the file belonged to the backend once handed over
        head = b._s3.head_object(Bucket=bucket, Key="p/packs/aa/big.pack")
        assert head["ETag"].strip('"').endswith("-3")  # three parts
        assert b.get_range("packs/aa/big.pack", (5 << 20) - 2, 4) == data[(5 << 20) - 2 : (5 << 20) + 2]
    finally:
        b.close()


def test_lock_protocol_push_vs_gc(s3_endpoint, bucket):
    a = S3Backend(bucket, "p", endpoint_url=s3_endpoint, lock_wait_seconds=5)
    b = S3Backend(bucket, "p", endpoint_url=s3_endpoint, lock_wait_seconds=5)
    try:
        with a.lock(False), b.lock(False):  # pushes share the store
            with pytest.raises(StoreLocked):
                with b.lock(True):
                    pass
        assert [i.name for i in a.list("locks/")] == []  # released and removed
        started = threading.Event()
        released = threading.Event()
        order: list[str] = []

        def gc() -> None:
            with a.lock(True):
                started.set()
                released.wait(5)
                order.append("gc done")

        t = threading.Thread(target=gc)
        t.start()
        started.wait(5)
        threading.Timer(0.5, released.set).start()
        with b.lock(False):  # waits for the running gc
            order.append("push")
        t.join()
        assert order == ["gc done", "push"]
    finally:
        a.close()
        b.close()


def test_stale_lock_of_a_dead_process_is_ignored(s3_endpoint, bucket):
    b = S3Backend(bucket, "p", endpoint_url=s3_endpoint, lock_stale_seconds=0.0)
    try:
        b.put("locks/push.deadbeef.lock", b"{}")  # left by a killed push
        time.sleep(1.1)  # S3 times have one-second resolution
        with b.lock(True):  # older than the stale timeout: gc proceeds
            pass
        b.lock_stale_seconds = 3600
        with pytest.raises(StoreLocked):
            with b.lock(True):
                pass
    finally:
        b.close()


def test_gc_sweeps_what_a_killed_push_left_locally_and_in_s3(s3_endpoint, bucket, tmp_path):
    temp = tmp_path / "packs-being-written"
    b = S3Backend(bucket, "p", endpoint_url=s3_endpoint, temp_dir=str(temp))
    store = ChunkStore(b)
    try:
        src = tmp_path / "w.bin"
        src.write_bytes(os.urandom(200_000))
        _push(store, src)
        assert b.local_temp_dir() == str(temp) and temp.is_dir() and not any(temp.iterdir())
        # what a push killed mid-way leaves: a pack file not uploaded, a multipart upload not completed
        left = temp / ".pack-dead.tmp"
        left.write_bytes(b"x" * 1000)
        os.utime(left, (time.time() - 3600, time.time() - 3600))
        dead = b._s3.create_multipart_upload(Bucket=bucket, Key="p/packs/ab/dead.pack")["UploadId"]
        b._s3.upload_part(Bucket=bucket, Key="p/packs/ab/dead.pack", UploadId=dead, PartNumber=1, Body=b"y" * 100)
        other = b._s3.create_multipart_upload(Bucket=bucket, Key="elsewhere/file")["UploadId"]

        def uploads() -> set[str]:
            return {u["UploadId"] for u in b._s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}

        assert {dead, other} <= uploads()
        # an upload begun after the cut-off is kept (moto dates every upload 2010-11-10,
        # so S3's side of the grace period is checked with a cut-off before that)
        assert b.sweep_incomplete(before=0.0) == 0 and dead in uploads()
        store.gc(set(), grace_seconds=7200)  # a temp file within the grace period: kept
        assert left.exists()
        store.gc(set(), grace_seconds=0)
        assert not left.exists()
        assert dead not in uploads() and other in uploads()  # only under the store's prefix
    finally:
        store.close()


def _push(store: ChunkStore, path):
    with store.session() as s:
        e = s.put_file(path, path.name)
        s.commit()
    return e, s.new_bytes


def test_transient_500_503_and_dropped_connections_are_retried(proxy, bucket, tmp_path):
    store = ChunkStore(S3Backend(bucket, "p", endpoint_url=proxy.endpoint))
    try:
        src = tmp_path / "blob.bin"
        src.write_bytes(os.urandom(2_000_000))
        proxy.inject(503, 500, 0, 503)
        e, new = _push(store, src)
        assert proxy.faults_served == 4 and new == 2_000_000
        proxy.inject(0, 503)
        fresh = open_store(f"s3://{bucket}/p?endpoint={proxy.endpoint}")
        try:
            fresh.read_file(e, tmp_path / "out")
        finally:
            fresh.close()
        assert (tmp_path / "out").read_bytes() == src.read_bytes()
    finally:
        store.close()


def test_push_fails_cleanly_while_s3_is_down_then_resumes(proxy, bucket, tmp_path, monkeypatch):
    import modelkeep.store.chunkstore as chunkstore

    monkeypatch.setattr(chunkstore, "PACK_TARGET", 512 * 1024)  # many small packs
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(4_000_000))
    store = ChunkStore(S3Backend(bucket, "p", endpoint_url=proxy.endpoint, max_attempts=2))
    seen_packs = threading.Event()
    real_put_file = store.backend.put_file

    def put_file(name: str, path: str) -> None:  # S3 goes down after three packs went up
        real_put_file(name, path)
        if sum(1 for _ in store.backend.list("packs/")) >= 3:
            proxy.fail_all = 503
            seen_packs.set()

    store.backend.put_file = put_file  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        _push(store, src)
    assert seen_packs.is_set()
    store.close()
    proxy.fail_all = None
    again = ChunkStore(S3Backend(bucket, "p", endpoint_url=proxy.endpoint))
    try:
        e, new = _push(again, src)
        assert 0 < new <= 4_000_000 - 3 * 400_000  # the sealed packs were not sent again
        again.read_file(e, tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == src.read_bytes()
    finally:
        again.close()


def test_sequential_chunk_reads_share_ranged_gets(proxy, bucket, tmp_path):
    store = ChunkStore(S3Backend(bucket, "p", endpoint_url=proxy.endpoint, read_window=1 << 20))
    try:
        src = tmp_path / "blob.bin"
        src.write_bytes(os.urandom(3_000_000))
        e, _ = _push(store, src)
        fresh = ChunkStore(S3Backend(bucket, "p", endpoint_url=proxy.endpoint, read_window=1 << 20))
        try:
            fresh.index  # noqa: B018 - load the index first, then count the reads
            before = proxy.requests
            fresh.read_file(e, tmp_path / "out")
            assert proxy.requests - before <= 8  # ~46 chunks, read in about 3 windows
        finally:
            fresh.close()
        assert (tmp_path / "out").read_bytes() == src.read_bytes()
    finally:
        store.close()
