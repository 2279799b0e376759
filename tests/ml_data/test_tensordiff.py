"""Safetensors headers that lie are refused; tensor diff numbers match numpy; unchanged tensors are not read."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelkeep.errors import InvalidInput
from modelkeep.ml.compare import _tensor_diffs, compare
from modelkeep.ml.safetensors_header import parse_header, read_header
from modelkeep.ml.tensordiff import diff_files


def _file(header: dict, data: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (b"\x01\x02", "shorter than the 8-byte length prefix"),
        (struct.pack("<Q", 10**6) + b"{}", "runs past the end"),
        (struct.pack("<Q", 2**63) + b"{}", "exceeds the"),
        (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 4), "past the 4 bytes of data"),
        (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\x00" * 12), "overlap"),
        (_file({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, b"\x00" * 8), "needs"),
        (_file({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8), "needs 12 bytes, offsets give 8"),
        (_file({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8), "unknown dtype"),
        (_file({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\x00" * 8), "invalid shape"),
        (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\x00" * 8), "out of order"),
        (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}}, b"\x00" * 8), "invalid data_offsets"),
        (_file({"__metadata__": {"k": 1}}), "__metadata__ must map strings"),
        (_file([1, 2]), "not a JSON object"),  # type: ignore[arg-type]
        (struct.pack("<Q", 4) + b"{{{{", "not JSON"),
    ],
)
def test_lying_headers_are_refused(tmp_path, blob, why):
    p = tmp_path / "x.safetensors"
    p.write_bytes(blob)
    with open(p, "rb") as f, pytest.raises(InvalidInput, match="refusing a safetensors header that lies") as e:
        read_header(f, len(blob), where="x.safetensors")
    assert why in str(e.value)


def test_valid_header_parses(tmp_path):
    save_file({"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.int64)}, str(tmp_path / "m.safetensors"),
              metadata={"format": "np"})
    blob = (tmp_path / "m.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    h = parse_header(blob[8 : 8 + n], len(blob))
    assert {t.name: (t.dtype, t.shape, t.nbytes) for t in h} == {"a": ("F32", (2, 3), 24), "b": ("I64", (4,), 32)}
    assert h.metadata == {"format": "np"}


def _weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "enc.0.weight": rng.standard_normal((300, 200)).astype(np.float32),
        "enc.1.weight": rng.standard_normal((200, 200)).astype(np.float32),
        "emb": rng.standard_normal((512, 64)).astype(np.float16),
        "head.bias": rng.standard_normal(10).astype(np.float64),
        "steps": np.arange(6, dtype=np.int64),
        "gone": np.zeros(3, np.float32),
    }


def test_tensor_diff_numbers_match_numpy(reg, tmp_path):
    rng = np.random.default_rng(3)
    a = _weights(rng)
    b = {k: v.copy() for k, v in a.items()}
    b["enc.0.weight"][:, :7] += rng.standard_normal((300, 7)).astype(np.float32)
    b["emb"][3] = 0
    b["steps"][2] = 100
    b["head.bias"] = rng.standard_normal(12)  # reshaped
    del b["gone"]
    b["new.weight"] = np.ones((4, 4), np.float32)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_file(a, str(tmp_path / "a" / "model.safetensors"))
    save_file(b, str(tmp_path / "b" / "model.safetensors"))
    va = reg.push(tmp_path / "a", "net", kind="model")
    vb = reg.push(tmp_path / "b", "net", kind="model")
    td = _tensor_diffs(reg, va.ref, vb.ref, ["model.safetensors"])["model.safetensors"]
    by = {t.name: t for t in td.tensors}
    assert {n: t.status for n, t in by.items()} == {
        "emb": "changed", "enc.0.weight": "changed", "enc.1.weight": "unchanged", "gone": "removed",
        "head.bias": "reshaped", "new.weight": "added", "steps": "changed",
    }
    for name in ("enc.0.weight", "emb", "steps"):
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        t = by[name]
        assert t.changed_elements == int(np.count_nonzero(a[name] != b[name]))
        assert t.l2_diff == pytest.approx(np.linalg.norm(y - x), rel=1e-6)
        assert t.l2_a == pytest.approx(np.linalg.norm(x), rel=1e-6)
        assert t.relative_change == pytest.approx(np.linalg.norm(y - x) / np.linalg.norm(x), rel=1e-6)
    # the unchanged tensor was decided from chunk digests alone: never read
    assert by["enc.1.weight"].read is False and by["enc.1.weight"].relative_change == 0.0
    changed = 300 * 7 + int(np.count_nonzero(a["emb"][3])) + 1 + 12 + 16
    total_b = sum(v.size for v in b.values())
    assert td.params_changed == changed and td.params_b == total_b
    assert td.share_changed == pytest.approx(changed / total_b)
    assert td.bytes_read == 2 * (a["enc.0.weight"].nbytes + a["emb"].nbytes + a["steps"].nbytes)
    # the same numbers from local files (no chunk digests: every tensor read)
    local = diff_files(tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors", block_bytes=4096)
    assert [(t.name, t.status, t.changed_elements) for t in local.tensors] == [
        (t.name, t.status, t.changed_elements) for t in td.tensors
    ]
    assert {t.name: t.l2_diff for t in local.tensors} == pytest.approx({t.name: t.l2_diff for t in td.tensors})


def test_bf16_and_small_blocks(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(1000).astype(np.float32)
    y = x.copy()
    y[::10] *= 2
    bits_a = (x.view(np.uint32) >> 16).astype(np.uint16)
    bits_b = (y.view(np.uint32) >> 16).astype(np.uint16)
    for name, bits in (("a", bits_a), ("b", bits_b)):
        h = json.dumps({"w": {"dtype": "BF16", "shape": [1000], "data_offsets": [0, 2000]}}).encode()
        (tmp_path / f"{name}.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + bits.tobytes())
    td = diff_files(tmp_path / "a.safetensors", tmp_path / "b.safetensors", block_bytes=64)
    fa = (bits_a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    fb = (bits_b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    (t,) = td.tensors
    assert t.changed_elements == int(np.count_nonzero(bits_a != bits_b))
    assert t.l2_diff == pytest.approx(np.linalg.norm(fb - fa), rel=1e-6)


def test_lying_header_in_a_version_is_refused_before_reading_data(reg, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_file({"w": np.zeros(4, np.float32)}, str(tmp_path / "a" / "m.safetensors"))
    (tmp_path / "b" / "m.safetensors").write_bytes(
        _file({"w": {"dtype": "F32", "shape": [2**31, 2**31], "data_offsets": [0, 16]}}, b"\x00" * 16))
    va = reg.push(tmp_path / "a", "lie", kind="model")
    vb = reg.push(tmp_path / "b", "lie", kind="model")
    with pytest.raises(InvalidInput, match=r"lie@1.1.0:m.safetensors: refusing .* needs 18446744073709551616 bytes, offsets give 16"):
        compare(reg, [va.ref, vb.ref])
    # the comparison still works without the tensor diff
    assert compare(reg, [va.ref, vb.ref], tensors=False).pairs[0].tensors == {}
