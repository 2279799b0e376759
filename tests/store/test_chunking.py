from __future__ import annotations

import io
import os

import numpy as np
import pyfastcdc
import pytest

from modelkeep.store import codec
from modelkeep.store.chunking import (
    AVG_CHUNK,
    MAX_CHUNK,
    MIN_CHUNK,
    Segment,
    cut,
    pieces,
    segments,
    tensor_chunks,
)

from .conftest import model_tensors, write_safetensors


def test_cutting_by_blocks_equals_cutting_at_once():
    data = os.urandom(3 * 1024 * 1024 + 12345)
    seg = Segment(0, len(data), 0)
    got = []
    for base, view, cuts in cut(io.BytesIO(data), seg, block=512 * 1024):
        for off, ln in cuts:
            assert bytes(view[off : off + ln]) == data[base + off : base + off + ln]
            got.append((base + off, ln))
    cdc = pyfastcdc.FastCDC(AVG_CHUNK - MIN_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)
    assert got == [(c.offset, c.length) for c in cdc.cut_buf(data)]
    assert sum(ln for _, ln in got) == len(data)
    assert all(ln <= MAX_CHUNK for _, ln in got)


def test_safetensors_segments_follow_tensors(tmp_path):
    t = model_tensors(4, 10_000)
    p = write_safetensors(tmp_path / "m.safetensors", t)
    with open(p, "rb") as f:
        segs = segments(f, p.stat().st_size, p.name)
    assert segs[0].start == 0 and segs[0].elem == 0  # header
    tensor_segs = [s for s in segs[1:]]
    assert [s.end - s.start for s in tensor_segs] == [40_000] * 4
    assert all(s.elem == 4 for s in tensor_segs)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))
    assert segs[-1].end == p.stat().st_size


def test_lying_safetensors_header_falls_back_to_one_segment(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes((10**9).to_bytes(8, "little") + b"{}" + b"x" * 100)
    with open(p, "rb") as f:
        assert segments(f, p.stat().st_size, p.name) == [Segment(0, 110, 0)]


def test_plane_codec_round_trips_at_every_phase():
    rng = np.random.default_rng(1)
    data = (rng.standard_normal(40_000, dtype=np.float32) * 0.02).tobytes()
    view = memoryview(data)
    plan = codec.plan_for(view, 4)
    assert plan.elem == 4 and plan.planes[3]  # the sign/exponent plane pays
    planes = memoryview(np.frombuffer(view, dtype=np.uint8).reshape(-1, 4).T.tobytes())
    n = len(data) // 4
    for off in (0, 1, 2, 3, 1001):
        ln = 50_003
        first = off + ((0 - off) % 4)
        k0, k1 = first // 4, (off + ln) // 4
        kind, parts = codec.encode_planes(view, planes, n, plan, off, ln, first, k0, k1)
        blob = b"".join(bytes(p) for p in parts)
        assert kind == codec.PLANES and len(blob) < ln
        assert bytes(codec.decode(kind, blob, ln)) == data[off : off + ln]


def test_corrupt_blob_does_not_decode():
    import pytest

    from modelkeep.errors import CorruptData

    with pytest.raises(CorruptData):
        codec.decode(codec.ZSTD, b"not zstd at all", 100)
    with pytest.raises(CorruptData):
        codec.decode(codec.PLANES, b"\x04\x00\x00" + b"\x00" * 5, 100)
    with pytest.raises(CorruptData):
        codec.decode(9, b"x", 1)


def test_tensor_segments_are_cut_every_64k_from_the_tensor_start():
    assert tensor_chunks(3 * AVG_CHUNK) == [AVG_CHUNK] * 3
    assert tensor_chunks(3 * AVG_CHUNK + MIN_CHUNK) == [AVG_CHUNK] * 3 + [MIN_CHUNK]
    assert tensor_chunks(3 * AVG_CHUNK + 100) == [AVG_CHUNK] * 2 + [AVG_CHUNK + 100]  # a tiny tail joins
    assert tensor_chunks(100) == [100] and tensor_chunks(0) == []
    # the same tensor bytes at two file offsets give the same chunks
    payload = os.urandom(5 * AVG_CHUNK + 777)
    got = []
    for shift in (0, 104):
        data = b"h" * (8 + shift) + payload
        seg = Segment(8 + shift, len(data), 4, True)
        cuts = []
        for base, view, chunks in cut(io.BytesIO(data), seg, block=2 * AVG_CHUNK):
            for off, ln in chunks:
                assert bytes(view[off : off + ln]) == data[base + off : base + off + ln]
                cuts.append((base + off - seg.start, ln))
        got.append(cuts)
    assert got[0] == got[1]
    assert [ln for _, ln in got[0]] == tensor_chunks(len(payload))


@pytest.mark.parametrize("extra", [0, 1, MIN_CHUNK - 1, MIN_CHUNK, AVG_CHUNK - 1, AVG_CHUNK, AVG_CHUNK + 5])
@pytest.mark.parametrize("full", [0, 1, 3, 4, 5, 9])
def test_pieces_of_a_tensor_cut_into_the_tensors_own_chunks(full, extra):
    size = full * AVG_CHUNK + extra
    if not size:
        return
    seg = Segment(8, 8 + size, 4, True)
    parts = pieces(seg, 2 * AVG_CHUNK)
    assert parts[0].start == seg.start and parts[-1].end == seg.end
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    assert all((p.start - seg.start) % AVG_CHUNK == 0 and p.elem == 4 and p.tensor for p in parts)
    joined = [ln for p in parts for ln in tensor_chunks(p.end - p.start)]
    assert joined == tensor_chunks(size)
    if size >= 4 * AVG_CHUNK:
        assert len(parts) > 1


def test_opaque_segments_do_not_split():
    seg = Segment(0, 10 * AVG_CHUNK, 0)
    assert pieces(seg, 2 * AVG_CHUNK) == [seg]
    with pytest.raises(ValueError):
        pieces(Segment(0, 10 * AVG_CHUNK, 4, True), AVG_CHUNK + 1)


def _encoded_run():
    """Chunks of every codec back to back, as a pack holds them: (blob, desc, originals)."""
    from array import array

    rng = np.random.default_rng(7)
    floats = (rng.standard_normal(60_000, dtype=np.float32) * 0.03).tobytes()
    view = memoryview(floats)
    plan = codec.plan_for(view, 4)
    planes = memoryview(np.frombuffer(view, dtype=np.uint8).reshape(-1, 4).T.tobytes())
    n = len(floats) // 4
    chunks = []
    for off, ln in ((0, 65_536), (65_536, 50_001), (115_537, 3), (115_540, 70_000)):
        first = off + ((0 - off) % 4)
        kind, parts = codec.encode_planes(view, planes, n, plan, off, ln, first, first // 4, (off + ln) // 4)
        chunks.append((kind, b"".join(bytes(p) for p in parts), floats[off : off + ln]))
    text = b"modelkeep " * 5000
    chunks.append((codec.ZSTD, bytes(codec._codecs().whole.compress(text)), text))
    chunks.append((codec.RAW, b"raw bytes", b"raw bytes"))
    assert {k for k, _, _ in chunks} == {codec.RAW, codec.ZSTD, codec.PLANES}
    blob = b""
    desc = array("I")
    for kind, stored, raw in chunks:
        desc.extend((len(blob), len(stored), kind, len(raw)))
        blob += stored
    return bytearray(blob), desc, [raw for _, _, raw in chunks]


@pytest.fixture(params=["native", "python"])
def runs_impl(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(codec, "NATIVE_RUNS", False)
    else:
        assert codec.NATIVE_RUNS  # built by the install, with the system's libzstd
    return request.param


def test_decode_run_restores_every_codec(runs_impl):
    blob, desc, originals = _encoded_run()
    out = bytearray(sum(map(len, originals)))
    assert codec.decode_run(memoryview(blob), desc, memoryview(out)) is None
    assert bytes(out) == b"".join(originals)


@pytest.mark.parametrize(
    "damage",
    ["plane_length", "zstd_byte", "codec", "stored_length", "truncated"],
)
def test_decode_run_names_the_first_bad_chunk(runs_impl, damage):
    blob, desc, originals = _encoded_run()
    out = bytearray(sum(map(len, originals)))
    if damage == "plane_length":  # chunk 1: its first plane claims one byte more
        at = desc[4]
        blob[at + 4] += 1
        bad = 1
    elif damage == "zstd_byte":  # chunk 4: a zstd frame cut short
        desc[4 * 4 + 1] -= 10
        bad = 4
    elif damage == "codec":
        desc[2 * 4 + 2] = 9
        bad = 2
    elif damage == "stored_length":  # a raw chunk whose stored length disagrees
        desc[5 * 4 + 3] += 1
        out += b"\0"
        bad = 5
    else:  # the last chunk runs past the bytes read
        del blob[-3:]
        bad = 5
    got = codec.decode_run(memoryview(blob), desc, memoryview(out))
    assert got is not None and got[0] == bad and got[1]


def test_exponent_planes_are_stored_with_nib4():
    rng = np.random.default_rng(3)
    data = (rng.standard_normal(50_000, dtype=np.float32) * 0.05).tobytes()
    plan = codec.plan_for(memoryview(data), 4)
    assert plan.planes == (codec.RAW_PLANE, codec.RAW_PLANE, codec.RAW_PLANE, codec.NIB4)
    # a plane of one value: zstd's few bytes beat nib4's half
    zeros = codec.plan_for(memoryview(bytes(200_000)), 4)
    assert set(zeros.planes) == {codec.ZSTD_PLANE}


@pytest.mark.parametrize("seed", range(6))
def test_nib4_round_trips_between_native_and_numpy(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 70_000))
    values = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8)
    plane = values[rng.integers(0, len(values), n)]
    plane[rng.integers(0, n, n // 100)] = rng.integers(0, 256, n // 100, dtype=np.uint8)  # escapes
    raw = plane.tobytes()
    native = codec.nib4_planes([memoryview(raw)])[0]
    monkeypatch.setattr(codec, "_native_nib4", None)
    numpy = codec.nib4_planes([memoryview(raw)])[0]
    assert native is not None and numpy is not None and len(native) == len(numpy)
    assert bytes(codec._nib4_decode(native, n)) == raw  # numpy decodes the native encoding
    monkeypatch.undo()
    assert bytes(codec._nib4_decode(numpy, n)) == raw  # and the other way round


@pytest.mark.parametrize("impl", ["native", "numpy"])
def test_nib4_refuses_planes_with_many_values_and_bad_codes(impl, monkeypatch):
    if impl == "numpy":
        monkeypatch.setattr(codec, "_native_nib4", None)
    noise = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    assert codec.nib4_planes([memoryview(noise)]) == [None]
    plane = bytes([7, 9] * 500)
    enc = bytearray(codec.nib4_planes([memoryview(plane)])[0])
    assert enc[0] == 2 and len(enc) == 1 + 2 + 4 + 500
    enc[1 + 2 + 4] = 0x33  # code 3 with a table of 2 values
    with pytest.raises(ValueError):
        codec._nib4_decode(bytes(enc), 1000)
    with pytest.raises(ValueError):
        codec._nib4_decode(bytes(enc[:-1]), 1000)
