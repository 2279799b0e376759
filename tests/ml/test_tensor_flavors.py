"""PyTorch (safetensors + module path) and ONNX flavors; safetensors headers that lie are refused early."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from modelkeep.errors import CorruptData, InvalidInput, SignatureMismatch, UnsafeModel
from modelkeep.ml.flavors import _tensors
from modelkeep.ml.flavors.base import MODEL_FILE



def _lying_file(path: Path, header: dict, data: bytes = b"\x00" * 64, *, claimed_len: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", claimed_len if claimed_len is not None else len(raw)) + raw + data)
    return path


# -- the safetensors path, with numpy only ----------------------------------------------------------


def test_state_dict_of_numpy_arrays_round_trips_through_safetensors(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = {
        "layer.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "layer.bias": np.array([1, -2, 3], dtype=np.int64),
        "scale": np.array(2.5, dtype=np.float64),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 4), dtype=np.float16),
    }
    v = ml_registry.log_model(state, "weights", flavor="torch")
    assert v.provenance["model"]["flavor"] == "torch"
    ml_registry.pull(v.ref, tmp_path / "out")
    back = _tensors.read_numpy(tmp_path / "out" / "model.safetensors")
    assert back.keys() == state.keys()
    for k, arr in state.items():
        assert back[k].dtype == arr.dtype and back[k].shape == arr.shape
        np.testing.assert_array_equal(back[k], arr)


def test_our_files_are_read_by_the_safetensors_library(tmp_path) -> None:  # type: ignore[no-untyped-def]
    st = pytest.importorskip("safetensors.numpy")
    arr = np.linspace(0, 1, 10, dtype=np.float32).reshape(2, 5)
    _tensors.write(tmp_path / "m.safetensors", [("w", _tensors.from_numpy(arr))])
    np.testing.assert_array_equal(st.load_file(str(tmp_path / "m.safetensors"))["w"], arr)


@pytest.mark.parametrize(
    ("header", "claimed_len", "message"),
    [
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 10_000, "runs past the end"),
        (
            {
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
            },
            None,
            "overlap",
        ),
        ({"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}, None, "needs"),
        ({"w": {"dtype": "F32", "shape": [2**31], "data_offsets": [0, 2**33]}}, None, "past the"),
        ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, None, "invalid shape"),
        ({"w": {"dtype": "X99", "shape": [4], "data_offsets": [0, 16]}}, None, "unknown dtype"),
    ],
    ids=["length-beyond-file", "overlapping-offsets", "absurd-shape", "huge-offsets", "negative-dim", "bad-dtype"],
)
def test_lying_headers_are_refused_before_allocation(tmp_path, header, claimed_len, message) -> None:  # type: ignore[no-untyped-def]
    path = _lying_file(tmp_path / "bad.safetensors", header, claimed_len=claimed_len)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match=message):
            _tensors.read_raw(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # nothing proportional to the claimed sizes was allocated


def test_load_model_refuses_a_lying_header_before_importing_torch(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "m"
    folder.mkdir()
    _lying_file(
        folder / "model.safetensors", {"w": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}}
    )
    (folder / MODEL_FILE).write_text(
        json.dumps({"format": 1, "flavor": "torch", "data": {"path": "model.safetensors", "serialization": "safetensors"}})
    )
    ml_registry.push(folder, "liar", kind="model")
    with pytest.raises(InvalidInput, match="refusing a safetensors header that lies"):
        ml_registry.load_model("liar")


# -- with torch --------------------------------------------------------------------------------------

class TinyNet(torch.nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, width)
        self.out = torch.nn.Linear(width, 2)
        self.register_buffer("steps", torch.tensor(7, dtype=torch.int64))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.out(torch.relu(self.fc(x)))


def test_torch_module_round_trips_through_its_import_path(ml_registry) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = TinyNet(width=5).eval()
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    v = ml_registry.log_model(net, "tiny", options={"init_args": {"width": 5}}, input_example=x)
    assert v.provenance["model"]["libraries"]["torch"] == torch.__version__
    assert v.signature["inputs"]["specs"] == [{"name": None, "dtype": "float32", "shape": [-1, 3]}]
    loaded = ml_registry.load_model("tiny")
    assert isinstance(loaded.raw, TinyNet) and loaded.raw is not net
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-6)
    assert int(loaded.raw.steps) == 7


def test_bfloat16_state_dict_round_trips(ml_registry) -> None:  # type: ignore[no-untyped-def]
    state = {"w": torch.randn(4, 4).to(torch.bfloat16)}
    ml_registry.log_model(state, "bf16")
    back = ml_registry.load_model("bf16").raw
    assert back["w"].dtype == torch.bfloat16
    assert torch.equal(back["w"], state["w"])


def test_torch_pickle_needs_allow_pickle(ml_registry) -> None:  # type: ignore[no-untyped-def]
    ml_registry.log_model(TinyNet(), "pickled", options={"serialization": "pickle"})
    with pytest.raises(UnsafeModel, match="torch pickle"):
        ml_registry.load_model("pickled")
    assert isinstance(ml_registry.load_model("pickled", allow_pickle=True).raw, TinyNet)


def test_module_path_that_is_not_a_module_class_is_refused(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "m"
    folder.mkdir()
    _tensors.write(folder / "model.safetensors", [("w", _tensors.from_numpy(np.zeros(2, np.float32)))])
    data = {"path": "model.safetensors", "serialization": "safetensors", "module": "os:system", "init_args": {}}
    (folder / MODEL_FILE).write_text(json.dumps({"format": 1, "flavor": "torch", "data": data}))
    ml_registry.push(folder, "evil", kind="model")
    with pytest.raises(UnsafeModel, match="not a torch.nn.Module subclass"):
        ml_registry.load_model("evil")


def test_torch_model_file_naming_another_path_is_corrupt(ml_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / MODEL_FILE).write_text(json.dumps({"format": 1, "flavor": "torch", "data": {"path": "../x"}}))
    ml_registry.push(folder, "odd", kind="model")
    with pytest.raises(CorruptData):
        ml_registry.load_model("odd")


# -- ONNX -----------------------------------------------------------------------------------------------


def test_onnx_model_runs_after_the_round_trip(ml_registry) -> None:  # type: ignore[no-untyped-def]
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    b = np.array([0.5, -1.0], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    x = np.ones((4, 3), dtype=np.float32)
    v = ml_registry.log_model(model, "affine", input_example=x)
    assert v.provenance["model"]["flavor"] == "onnx"
    loaded = ml_registry.load_model("affine")
    np.testing.assert_allclose(loaded.predict(x), x @ w + b)
    with pytest.raises(SignatureMismatch, match="dtype int64, expected float32"):
        loaded.predict(np.ones((4, 3), dtype=np.int64))


def test_without_torch_the_weights_stay_readable_and_load_says_which_extra(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A process where torch cannot be imported (sys.modules['torch'] = None), as on a machine without it."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["torch"] = None  # import torch now raises ImportError
import numpy as np, modelkeep
from modelkeep.ml.flavors import _tensors
with modelkeep.open({str(tmp_path / "home")!r}) as reg:
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = reg.log_model({{"w": w}}, "weights", flavor="torch")
    reg.pull(v.ref, {str(tmp_path / "out")!r})
    assert (_tensors.read_numpy(__import__("pathlib").Path({str(tmp_path / "out" / "model.safetensors")!r}))["w"] == w).all()
    try:
        reg.load_model("weights")
    except modelkeep.MissingExtra as e:
        print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "torch is not installed: pip install 'modelkeep[torch]'"
