"""Byte-plane grouping: the native helper and the numpy fallback give the same bytes."""

from __future__ import annotations

import numpy as np
import pytest

from modelkeep.store import planes


def _reference(data: bytes, e: int) -> bytes:
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, e).T.tobytes()


@pytest.fixture(params=["native", "numpy"])
def impl(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(planes, "NATIVE", False)
    return request.param


def test_native_helper_is_built():
    # The install builds modelkeep/store/_planes.c; losing it would only make pulls slower, so say so loudly.
    assert planes.NATIVE


@pytest.mark.parametrize("e", [2, 4, 8])
@pytest.mark.parametrize("n", [1, 7, 4096, 70_001])
def test_shuffle_and_unshuffle_round_trip(impl, e, n):
    data = np.random.default_rng(n * e).integers(0, 256, n * e, dtype=np.uint8).tobytes()
    dst = bytearray(n * e)
    planes.shuffle(data, e, dst)
    assert bytes(dst) == _reference(data, e)
    parts = [bytes(dst[i * n : (i + 1) * n]) for i in range(e)]
    out = bytearray(n * e)
    planes.unshuffle(parts, memoryview(out))
    assert bytes(out) == data


def test_bad_arguments_are_refused(impl):
    with pytest.raises(ValueError):
        planes.shuffle(b"abcdef", 4, bytearray(8))  # not whole elements
    with pytest.raises(ValueError):
        planes.shuffle(b"abcdefgh", 3, bytearray(8))  # element size
    with pytest.raises(ValueError):
        planes.shuffle(b"abcdefgh", 4, bytearray(4))  # destination too short
    with pytest.raises(ValueError):
        planes.unshuffle([b"ab", b"a"], bytearray(4))  # planes of unequal length
    with pytest.raises(ValueError):
        planes.unshuffle([b"ab", b"ab", b"ab"], bytearray(6))  # three planes


def test_shuffle_many_equals_shuffle_of_each(impl):
    rng = np.random.default_rng(5)
    items, expected = [], []
    for e, n in ((4, 10_000), (2, 3), (8, 777), (4, 0)):
        data = rng.integers(0, 256, n * e, dtype=np.uint8).tobytes()
        items.append((data, e, bytearray(n * e + 5)))  # a destination may be longer
        expected.append(_reference(data, e) if n else b"")
    planes.shuffle_many(items)
    for (_, _, dst), want in zip(items, expected):
        assert bytes(dst[: len(want)]) == want
    with pytest.raises(ValueError):
        planes.shuffle_many([(b"abc", 2, bytearray(4))])


def test_gather_copies_whole_parts_while_they_fit(impl):
    dst = bytearray(b"." * 12)
    parts = [b"abc", memoryview(b"--de--")[2:4], b"", bytearray(b"fgh"), b"this does not fit", b"x"]
    assert planes.gather(dst, 2, parts) == (10, 4)  # stops before the part that does not fit whole
    assert bytes(dst) == b"..abcdefgh.."
    assert planes.gather(dst, 10, parts[5:]) == (11, 1)
    assert planes.gather(dst, 12, [b"y"]) == (12, 0)  # full
    assert planes.gather(dst, 12, []) == (12, 0)
    assert bytes(dst) == b"..abcdefghx."
    with pytest.raises(ValueError):
        planes.gather(dst, 13, [b"z"])  # offset past the end
    with pytest.raises(ValueError):
        planes.gather(dst, -1, [b"z"])


def test_pack_stage_splits_a_part_across_its_buffers(tmp_path):
    # parts that straddle the end of a staging buffer: the pack holds them unchanged
    import os

    from modelkeep.store.packs import _Stage

    fd = os.open(tmp_path / "p", os.O_RDWR | os.O_CREAT, 0o644)
    stage = _Stage(fd)  # buffered (no O_DIRECT needed for the bytes to come out right)
    rng = np.random.default_rng(1)
    parts = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (3_000_000, 2_000_000, 5, 4 * 1024 * 1024 + 1, 7)]
    stage.write(parts[:2])
    stage.write(parts[2:])
    size = sum(map(len, parts))
    stage.finish()
    stage.free()
    os.ftruncate(fd, size)
    os.close(fd)
    assert (tmp_path / "p").read_bytes() == b"".join(parts)
