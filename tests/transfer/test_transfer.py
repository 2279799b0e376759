"""Chunk-level push and pull against a real server: dedup, verification, resume, cache."""

from __future__ import annotations

import os
import struct

import blake3
import pytest

from modelkeep.client import transfer
from modelkeep.client.cache import ChunkCache
from modelkeep.errors import ChunkNotFound, CorruptData, InvalidInput, StorageError
from modelkeep.store.digest import Digest
from modelkeep.store.manifest import ChunkRef, FileEntry, Manifest

from .conftest import tensors, write_safetensors


def model_dir(root, seed_change=None, n=8):
    root.mkdir(parents=True, exist_ok=True)
    t = tensors(n)
    if seed_change is not None:
        t[f"layer{seed_change}.weight"] = t[f"layer{seed_change}.weight"] + 0.001
    write_safetensors(root / "model.safetensors", t)
    (root / "config.json").write_text('{"layers": %d}' % n)
    return root


def test_push_pull_round_trip_and_dedup(served, tmp_path):
    src = model_dir(tmp_path / "m")
    r = transfer.upload(served.http, src, "team/llm", message="first", params={"lr": 0.1})
    assert r.version.version == "1.0.0" and r.version.author == "alice"
    assert r.sent_bytes == r.total_bytes and r.reused_bytes == 0
    assert r.version.new_bytes == r.sent_bytes
    assert r.version.provenance.get("python")  # captured on the client
    assert served.registry.get("team/llm@1.0.0").params == {"lr": 0.1}

    again = transfer.upload(served.http, src, "team/llm", message="same bytes", major=True)
    assert again.sent_bytes == 0 and again.reused_bytes == again.total_bytes and again.wire_bytes == 0

    cache = ChunkCache(tmp_path / "cache")
    out = transfer.download(served.http, "team/llm@1.0.0", tmp_path / "out", cache=cache)
    for f in ("model.safetensors", "config.json"):
        assert (tmp_path / "out" / f).read_bytes() == (src / f).read_bytes()
    assert out.cached_bytes == 0 and out.fetched_bytes == out.total_bytes


def test_variant_sends_and_fetches_only_new_chunks(served, tmp_path):
    cache = ChunkCache(tmp_path / "cache")
    base = transfer.upload(served.http, model_dir(tmp_path / "a"), "team/llm")
    transfer.download(served.http, "team/llm@1.0.0", tmp_path / "pulled-a", cache=cache)
    variant = transfer.upload(served.http, model_dir(tmp_path / "b", seed_change=3), "team/llm", variant_of="team/llm@1.0.0")
    tensor = 128 * 1024 * 4
    assert tensor <= variant.sent_bytes <= tensor + 64 * 1024  # one tensor and the small header/config
    assert variant.wire_bytes <= 1.15 * variant.sent_bytes
    assert variant.reused_bytes >= base.total_bytes - tensor - 64 * 1024
    pulled = transfer.download(served.http, "team/llm@1.1.0", tmp_path / "pulled-b", cache=cache)
    assert pulled.fetched_bytes == variant.sent_bytes or pulled.fetched_bytes <= tensor + 64 * 1024
    assert (tmp_path / "pulled-b" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def _body(*chunks: tuple[Digest, bytes], elem: int = 0) -> bytes:
    """An upload body: the count, the table, then the bytes."""
    table = b"".join(transfer.UP_FRAME.pack(d.raw, len(b), elem, 0) for d, b in chunks)
    return transfer.UP_COUNT.pack(len(chunks)) + table + b"".join(b for _, b in chunks)


def test_chunk_with_wrong_digest_is_rejected_and_never_stored(served):
    good = os.urandom(5000)
    liar = Digest(blake3.blake3(b"something else").digest())
    right = Digest(blake3.blake3(good).digest())
    post = lambda body: served.http.request("POST", "/api/v1/chunks", params={"name": "team/x"}, content=body)  # noqa: E731
    with pytest.raises(CorruptData):
        post(_body((right, good), (liar, good)))
    assert served.registry.store.missing([liar, right]) == {liar, right}  # not even the good one of the batch
    bad_bodies = [
        b"\x00" * 3,  # no count
        transfer.UP_COUNT.pack(2) + transfer.UP_FRAME.pack(right.raw, 5000, 0, 0),  # a table cut short
        _body((right, good))[:-1],  # a byte missing
        _body((right, good)) + b"x",  # a byte too many
        transfer.UP_COUNT.pack(1) + transfer.UP_FRAME.pack(right.raw, 10**6, 0, 0) + good,  # over a chunk's limit
        transfer.UP_COUNT.pack(1) + transfer.UP_FRAME.pack(right.raw, 5000, 3, 0) + good,  # no such element size
        transfer.UP_COUNT.pack(2**32 - 1),  # a count nothing backs
    ]
    for bad in bad_bodies:
        with pytest.raises(InvalidInput):  # 422/413, never 500
            post(bad)
    assert served.registry.store.missing([right]) == {right}
    assert post(_body((right, good))).json() == {"received": 1, "new_bytes": 5000}
    with pytest.raises(InvalidInput):
        served.http.request("POST", "/api/v1/chunks/missing", json={"name": "team/x", "digests": ["blake3:XYZ"]})
    with pytest.raises(InvalidInput):
        served.http.request("POST", "/api/v1/chunks/missing", content=b"{not json")


def test_commit_of_a_manifest_with_missing_chunks_names_them(served):
    d = Digest(blake3.blake3(b"never uploaded").digest())
    m = Manifest.of([FileEntry.of_chunks("a.bin", (ChunkRef(d, 14),))])
    with pytest.raises(ChunkNotFound, match=d.hex[:16]):
        served.http.request(
            "POST", "/api/v1/chunks/commit", json={"name": "team/x", "manifest": __import__("json").loads(m.to_bytes())}
        )
    assert served.registry.artifacts() == []


def test_commit_refuses_a_file_digest_its_chunks_do_not_give(served, tmp_path):
    # A client may not name bytes other than those it uploaded: the file digest
    # (and with it the version's) must follow from the chunk list.
    (tmp_path / "f.bin").write_bytes(os.urandom(50_000))
    transfer.upload(served.http, tmp_path, "team/x")
    _, m = served.registry.manifest("team/x")
    doc = __import__("json").loads(m.to_bytes())
    doc["files"][0]["digest"] = str(Digest(blake3.blake3(b"other bytes").digest()))
    with pytest.raises(InvalidInput, match="not the digest of its chunk list"):
        served.http.request("POST", "/api/v1/chunks/commit", json={"name": "team/x", "manifest": doc, "message": "lie"})
    assert [v.version for v in served.registry.versions("team/x")] == ["1.0.0"]


def test_fetch_serves_only_chunks_of_the_named_version(served, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(os.urandom(100_000))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "g").write_bytes(os.urandom(100_000))
    transfer.upload(served.http, tmp_path / "a", "ns1/a")
    transfer.upload(served.http, tmp_path / "b", "ns2/b")
    _, mb = served.registry.manifest("ns2/b")
    other = next(iter(mb.chunk_digests()))
    with pytest.raises(InvalidInput):
        served.http.request("POST", "/api/v1/chunks/fetch", json={"ref": "ns1/a@1.0.0", "digests": [str(other)]})


class Flaky:
    """An Http whose chunk uploads fail for good after ``ok`` of them (a client killed mid-push)."""

    def __init__(self, http, ok: int) -> None:
        self.http = http
        self.ok = ok
        self.uploads = 0

    def request(self, method, path, **kw):
        if path == "/api/v1/chunks":
            if self.uploads >= self.ok:
                raise KeyboardInterrupt  # not retried: the process is going away
            self.uploads += 1
        return self.http.request(method, path, **kw)


def test_interrupted_push_resumes_and_skips_what_arrived(served, tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    (src / "blob.bin").write_bytes(os.urandom(6_000_000))
    flaky = Flaky(served.http, ok=2)
    with pytest.raises(KeyboardInterrupt):
        transfer.upload(flaky, src, "team/big", batch_bytes=1_000_000, jobs=1)
    assert served.registry.artifacts() == []  # no partial version
    r = transfer.upload(served.http, src, "team/big", batch_bytes=1_000_000)
    assert 0 < r.sent_bytes <= 6_000_000 - 1_500_000  # the two acknowledged batches were not sent again
    assert r.version.version == "1.0.0"
    transfer.download(served.http, "team/big", tmp_path / "out", cache=ChunkCache(tmp_path / "c", max_bytes=0))
    assert (tmp_path / "out" / "blob.bin").read_bytes() == (src / "blob.bin").read_bytes()


class Counting:
    """An Http that counts the requests of each path."""

    def __init__(self, http) -> None:
        self.http = http
        self.calls: dict[str, int] = {}

    def request(self, method, path, **kw):
        self.calls[path] = self.calls.get(path, 0) + 1
        return self.http.request(method, path, **kw)


def test_a_new_model_goes_out_mostly_without_asking_first(served, tmp_path):
    src = tmp_path / "new"
    src.mkdir()
    data = os.urandom(40_000_000)
    (src / "blob.bin").write_bytes(data)
    http = Counting(served.http)
    r = transfer.upload(http, src, "team/new", batch_bytes=1_000_000, jobs=1)
    uploads, asks = http.calls["/api/v1/chunks"], http.calls.get("/api/v1/chunks/missing", 0)
    assert uploads >= 38 and asks <= transfer._ASK_AFTER + uploads // transfer._ASK_EVERY + 1
    assert r.sent_bytes == r.total_bytes and r.reused_bytes == 0
    assert r.version.new_bytes == r.total_bytes == len(data)

    # the same bytes again, then new ones after them: the known part is asked about and
    # not sent; at most a few batches past the point where the known bytes end go
    # out unasked (the server keeps only what it lacks, and says so)
    (src / "blob.bin").write_bytes(data + os.urandom(20_000_000))
    http = Counting(served.http)
    again = transfer.upload(http, src, "team/new", batch_bytes=1_000_000, jobs=1)
    assert again.sent_bytes <= 20_000_000 + 2_000_000
    assert again.version.new_bytes <= 20_000_000 + 300_000  # the boundary chunks are new
    assert again.reused_bytes >= len(data) - 300_000
    transfer.download(served.http, "team/new@latest", tmp_path / "out", cache=ChunkCache(tmp_path / "c", max_bytes=0))
    assert (tmp_path / "out" / "blob.bin").read_bytes() == (src / "blob.bin").read_bytes()

    # known bytes after a long new run: the unasked batches that turn out known are
    # stored once, counted as reused, and asking resumes
    (src / "blob.bin").write_bytes(os.urandom(20_000_000) + data)
    third = transfer.upload(served.http, src, "team/new", batch_bytes=1_000_000, jobs=1)
    assert third.version.new_bytes <= 20_000_000 + 300_000
    assert third.sent_bytes <= 20_000_000 + (transfer._ASK_EVERY + 1) * 1_100_000
    assert third.reused_bytes >= len(data) - 300_000


class Unreachable:
    """A server that answers 503 / drops the first ``n`` requests of each kind."""

    def __init__(self, http, n: int) -> None:
        self.http = http
        self.left = n

    def request(self, method, path, **kw):
        if self.left > 0:
            self.left -= 1
            raise StorageError("server unavailable (injected)")
        return self.http.request(method, path, **kw)


def test_transient_server_errors_are_retried(served, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer.time, "sleep", lambda s: None)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "f").write_bytes(os.urandom(300_000))
    r = transfer.upload(Unreachable(served.http, 3), tmp_path / "m", "team/f")
    assert r.version.version == "1.0.0"
    with pytest.raises(StorageError):
        transfer.upload(Unreachable(served.http, 100), tmp_path / "m", "team/g")


def test_pulled_chunks_are_verified(served, tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "f").write_bytes(os.urandom(200_000))
    transfer.upload(served.http, tmp_path / "m", "team/f")

    class Tamper:
        def request(self, method, path, **kw):
            resp = served.http.request(method, path, **kw)
            if path.endswith("/fetch"):
                body = bytearray(resp.content)
                body[-1] ^= 1
                resp._content = bytes(body)
            return resp

    with pytest.raises(CorruptData):
        transfer.download(Tamper(), "team/f", tmp_path / "out", cache=ChunkCache(tmp_path / "c"))
    assert not (tmp_path / "out" / "f").exists()


def test_cache_is_verified_and_size_bounded(tmp_path):
    cache = ChunkCache(tmp_path / "c", max_bytes=250_000)
    blobs = [os.urandom(100_000) for _ in range(4)]
    digests = [Digest(blake3.blake3(b).digest()) for b in blobs]
    for i, (d, b) in enumerate(zip(digests, blobs)):
        cache.put(d, b)
        os.utime(cache._path(d), (1000 + i, 1000 + i))
    assert cache.get(digests[0]) == blobs[0]  # now the most recently used
    cache.trim()
    assert cache.size() <= 250_000
    assert digests[0] in cache and digests[3] in cache and digests[1] not in cache
    path = cache._path(digests[3])
    path.write_bytes(b"damaged")
    assert cache.get(digests[3]) is None and not path.exists()


def test_put_chunks_encodes_chunks_that_continue_one_another_as_one_block(tmp_path, monkeypatch):
    import numpy as np

    from modelkeep.store import chunkstore, open_store

    encoded: list[list[tuple[int, int]]] = []  # per call: (block length, new chunks in it) of each block
    real = chunkstore._encode_blocks

    def spy(blocks):  # type: ignore[no-untyped-def]
        encoded.append([(len(b[0]), len(b[1])) for b in blocks])
        return real(blocks)

    monkeypatch.setattr(chunkstore, "_encode_blocks", spy)

    store = open_store(f"file://{tmp_path / 's'}")
    try:
        floats = (np.random.default_rng(1).standard_normal(40_000, dtype=np.float32) * 0.02).tobytes()
        data = floats + os.urandom(30_000)  # a float tensor, then opaque bytes
        cuts = [(0, 50_001, 4, 0), (50_001, 109_999, 4, 50_001 % 4), (160_000, 30_000, 0, 0)]  # the second starts mid-element
        chunks = [(blake3.blake3(data[a : a + n]).digest(), n, e, p) for a, n, e, p in cuts]
        with store.session() as s:
            assert s.put_chunks(data, chunks) == len(data)
            # the two float chunks continue one element grid: one block; the opaque bytes another
            assert encoded == [[(160_000, 2), (30_000, 1)]]
            assert s.put_chunks(data, chunks) == 0  # known: skipped, nothing encoded
            assert len(encoded) == 1
            extra = floats[:4_000]  # a new chunk after known ones: a block of its own
            more = (blake3.blake3(extra).digest(), len(extra), 4, 0)
            assert s.put_chunks(data + extra, [*chunks, more]) == len(extra)
            assert encoded[1:] == [[(4_000, 1)]]
            s.commit()
        for (digest, *_), (a, n, _, _) in zip(chunks, cuts):
            assert bytes(store.read_chunk(Digest(digest))) == data[a : a + n]
        assert bytes(store.read_chunk(Digest(more[0]))) == extra
        assert store.stats().stored_bytes < 0.95 * len(floats) + 30_100  # byte planes compressed
        for bad in ([(chunks[0][0], 50_001, 3, 0)], [(chunks[0][0], 50_000, 4, 0)]):  # no such element size; short
            with store.session() as s, pytest.raises(InvalidInput):
                s.put_chunks(data[:50_001], bad)
    finally:
        store.close()


def test_frames_match_the_server(served):
    from modelkeep.server.routes import chunks

    assert chunks.UP_FRAME.format == transfer.UP_FRAME.format and chunks.DOWN_FRAME.format == transfer.DOWN_FRAME.format
    assert chunks.UP_COUNT.format == transfer.UP_COUNT.format
    assert struct.calcsize(transfer.UP_FRAME.format) == 38


def test_a_body_is_its_table_then_its_chunks_spans_joined_where_they_touch(tmp_path):
    from modelkeep.client._sendfile import FileChanged, FileSpans

    data = bytes(range(256)) * 20_000  # 5.1 MB
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(data[::-1])
    a, b = transfer._Source(tmp_path / "a"), transfer._Source(tmp_path / "b")
    try:
        frames = [
            (b"1" * 32, a, 0, 10, 0, 0, b""),
            (b"2" * 32, a, 10, 3_000_000, 4, 2, b""),  # continues the first: one span
            (b"3" * 32, a, 4_000_000, 5, 0, 0, b""),
            (b"4" * 32, b, 4_000_005, 7, 0, 0, b""),  # where a's span ends, but in another file
            (b"5" * 32, None, 0, 3, 0, 0, b"abc"),  # chunks of small files, copied: joined
            (b"6" * 32, None, 0, 2, 0, 0, b"de"),
        ]
        spans = transfer._spans(frames)
        assert [s if isinstance(s, bytes) else (s[0].name, s[1], s[2]) for s in spans] == [
            (str(tmp_path / "a"), 0, 3_000_010), (str(tmp_path / "a"), 4_000_000, 5), (str(tmp_path / "b"), 4_000_005, 7),
            b"abcde",
        ]
        body = FileSpans(b"table", spans)
        expected = b"table" + data[:3_000_010] + data[4_000_000:4_000_005] + data[::-1][4_000_005:4_000_012] + b"abcde"
        assert len(body) == len(expected)
        assert b"".join(body) == expected and b"".join(body) == expected  # iterable again, for a retry
        assert all(len(part) <= 1024 * 1024 for part in body)
        with pytest.raises(FileChanged):  # a span past the end: the file shrank after its scan
            b"".join(FileSpans(b"", [(a.file, len(data) - 3, 10)]))
    finally:
        a.release()
        b.release()
    assert a.file.closed and b.file.closed


def test_push_and_pull_through_a_server_on_s3(s3_endpoint, tmp_path):
    """The same transfer with the server's store on S3 (moto over HTTP)."""
    from s3_support import make_bucket

    from .conftest import serve_registry

    store_url = f"s3://{make_bucket(s3_endpoint)}/registry?endpoint={s3_endpoint}"
    with serve_registry(f"sqlite:///{tmp_path / 'server.db'}", store_url) as served:
        cache = ChunkCache(tmp_path / "cache")
        base = transfer.upload(served.http, model_dir(tmp_path / "a"), "team/llm")
        transfer.download(served.http, "team/llm@1.0.0", tmp_path / "pulled-a", cache=cache)
        variant = transfer.upload(served.http, model_dir(tmp_path / "b", seed_change=5), "team/llm")
        assert variant.sent_bytes < base.sent_bytes / 4
        pulled = transfer.download(served.http, "team/llm@1.1.0", tmp_path / "pulled-b", cache=cache)
        assert pulled.fetched_bytes <= variant.sent_bytes + 64 * 1024
        for d, src in (("pulled-a", "a"), ("pulled-b", "b")):
            assert (tmp_path / d / "model.safetensors").read_bytes() == (tmp_path / src / "model.safetensors").read_bytes()
        assert sum(1 for _ in served.registry.store.backend.list("packs/")) >= 1


def test_cli_push_to_a_server_says_bytes_sent_and_reused(served, tmp_path):
    from typer.testing import CliRunner

    from modelkeep.cli.main import app

    runner = CliRunner(env={"MODELKEEP_URI": served.url, "MODELKEEP_HOME": str(tmp_path / "home"),
                            "MODELKEEP_CACHE_GB": "0", "COLUMNS": "200"})
    src = model_dir(tmp_path / "m")
    first = runner.invoke(app, ["push", str(src), "team/cli", "-m", "first"], prog_name="mk")
    assert first.exit_code == 0, first.output
    assert "4.20 MB sent, 0.00 MB reused" in first.stdout
    variant = runner.invoke(app, ["push", str(model_dir(tmp_path / "v", seed_change=2)), "team/cli"], prog_name="mk")
    assert variant.exit_code == 0, variant.output
    assert " MB sent, 3." in variant.stdout and "MB reused" in variant.stdout  # one tensor of eight sent
