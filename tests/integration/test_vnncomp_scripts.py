"""vnncomp_scripts/: prepare_instance.sh and run_instance.sh on one generated instance (a tiny ONNX ReLU net and
VNN-LIB 1.0 properties), as the competition harness calls them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "vnncomp_scripts"


def _net(path: Path) -> Path:
    """y = W2 relu(W1 x + b1) + b2, 2 -> 4 -> 2, with y0 - y1 >= 1 on the whole box [-0.1, 0.1]^2."""
    w1 = np.array([[1.0, -1.0, 0.5, 0.0], [0.0, 1.0, -0.5, 1.0]], dtype=np.float32)
    b1 = np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32)
    w2 = np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    b2 = np.array([0.0, 0.0], dtype=np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "W1"), (b1, "b1"), (w2, "W2"), (b2, "b2"))]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["a"]), helper.make_node("Add", ["a", "b1"], ["b"]),
             helper.make_node("Relu", ["b"], ["r"]), helper.make_node("MatMul", ["r", "W2"], ["c"]),
             helper.make_node("Add", ["c", "b2"], ["y"])]
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString())
    return path


def _spec(path: Path, unsafe: str) -> Path:
    path.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                    "(declare-const Y_1 Real)\n(assert (>= X_0 -0.1))\n(assert (<= X_0 0.1))\n"
                    "(assert (>= X_1 -0.1))\n(assert (<= X_1 0.1))\n" + f"(assert {unsafe})\n")
    return path


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CERTNN_PYTHON": sys.executable,
           "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(["bash", str(SCRIPTS / name), *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_prepare_and_run_one_instance(tmp_path):
    onnx_file = _net(tmp_path / "net.onnx")
    holds = _spec(tmp_path / "holds.vnnlib", "(<= Y_0 Y_1)")  # never: y0 - y1 >= ~1 on the box
    violated = _spec(tmp_path / "violated.vnnlib", "(>= Y_0 Y_1)")  # everywhere
    for spec in (holds, violated):
        p = _script("prepare_instance.sh", "v1", "test", str(onnx_file), str(spec))
        assert p.returncode == 0, p.stderr
    out = tmp_path / "holds.txt"
    r = _script("run_instance.sh", "v1", "test", str(onnx_file), str(holds), str(out), "30")
    assert r.returncode == 0, r.stderr
    assert out.read_text().split()[0] == "unsat"
    out = tmp_path / "violated.txt"
    r = _script("run_instance.sh", "v1", "test", str(onnx_file), str(violated), str(out), "30")
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.split()[0] == "sat" and "X_0" in text and "Y_1" in text


def test_bad_version_and_unreadable_instance(tmp_path):
    onnx_file = _net(tmp_path / "net.onnx")
    assert _script("prepare_instance.sh", "v2", "test", str(onnx_file), "x.vnnlib").returncode == 1
    broken = tmp_path / "broken.vnnlib"
    broken.write_text("(assert (<= X_0\n")
    p = _script("prepare_instance.sh", "v1", "test", str(onnx_file), str(broken))
    assert p.returncode == 1 and "cannot prepare" in p.stderr
