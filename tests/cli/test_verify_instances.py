"""`certnn verify --instances`: a VNN-COMP folder decided instance by instance, results CSV in the
csv's order, checkpoint and resume, bad rows exit 2 before any work."""
from __future__ import annotations

import numpy as np
import pytest

from certnn.cli.main import main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SPECS = {"safe": "(>= Y_0 2.5)", "bad": "(or (and (>= Y_0 1.4) (>= Y_1 0.5)) (and (>= Y_0 5)))", "safe2": "(>= Y_1 1.5)"}


@pytest.fixture()
def bench(tmp_path):
    W = np.array([[1.0, 1.0], [1.0, -1.0]], dtype=np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                          initializer=[numpy_helper.from_array(W.T.copy(), "W")])
    folder = tmp_path / "tiny"
    (folder / "onnx").mkdir(parents=True)
    (folder / "vnnlib").mkdir()
    (folder / "onnx" / "net.onnx").write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
                                               .SerializeToString())
    for name, out in SPECS.items():
        (folder / "vnnlib" / f"{name}.vnnlib").write_text(
            "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
            "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
            f"(assert {out})\n")
    rows = [f"onnx/net.onnx,vnnlib/{n}.vnnlib,20" for n in SPECS]
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_results_csv_in_order_and_resume(bench, tmp_path):
    res = tmp_path / "results.csv"
    assert main(["verify", "--instances", str(bench / "instances.csv"), "--results", str(res), "--quiet"]) == 0
    lines = [line.split(",") for line in res.read_text().splitlines()]
    assert [(r[0], r[1], r[2], r[4]) for r in lines] == [
        ("tiny", "onnx/net.onnx", "vnnlib/safe.vnnlib", "unsat"), ("tiny", "onnx/net.onnx", "vnnlib/bad.vnnlib", "sat"),
        ("tiny", "onnx/net.onnx", "vnnlib/safe2.vnnlib", "unsat")]
    assert all(float(r[3]) >= 0 and 0 < float(r[5]) < 20 for r in lines)
    ckpt = tmp_path / "results.csv.ckpt.jsonl"
    n_lines = len(ckpt.read_text().splitlines())
    # everything finished: a resumed run computes nothing and writes the same verdicts
    assert main(["verify", "--instances", str(bench / "instances.csv"), "--results", str(res), "--resume",
                 "--quiet"]) == 0
    assert len(ckpt.read_text().splitlines()) == n_lines
    assert [line.split(",")[4] for line in res.read_text().splitlines()] == ["unsat", "sat", "unsat"]


def test_two_worker_processes(bench, tmp_path):
    res = tmp_path / "r2.csv"
    assert main(["verify", "--instances", str(bench / "instances.csv"), "--results", str(res), "--workers", "2",
                 "--quiet"]) == 0
    assert [line.split(",")[4] for line in res.read_text().splitlines()] == ["unsat", "sat", "unsat"]


def test_bad_rows_exit_2_before_work(bench, tmp_path, capsys):
    bad = bench / "bad.csv"
    bad.write_text("onnx/net.onnx,vnnlib/missing.vnnlib,5\n")
    assert main(["verify", "--instances", str(bad), "--results", str(tmp_path / "x.csv")]) == 2
    assert "row 1" in capsys.readouterr().err and not (tmp_path / "x.csv.ckpt.jsonl").exists()
    bad.write_text("onnx/net.onnx,vnnlib/safe.vnnlib,soon\n")
    assert main(["verify", "--instances", str(bad), "--results", str(tmp_path / "x.csv")]) == 2
    assert main(["verify", "--spec", str(bench / "vnnlib" / "safe.vnnlib")]) == 2
