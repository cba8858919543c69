"""`certnn verify`: verdict words, VNN-COMP result file, JSON, exit codes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from certnn.cli.main import main
from certnn.specs.vnnlib import load_vnnlib, property_violated, read_counterexample

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


@pytest.fixture()
def net(tmp_path):
    W = np.array([[1.0, 1.0], [1.0, -1.0]], dtype=np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                          initializer=[numpy_helper.from_array(W.T.copy(), "W")])
    p = tmp_path / "net.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return tmp_path, str(p)


def _spec(tmp, name, out_constraint):
    text = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
            "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
            f"(assert {out_constraint})\n")
    p = tmp / name
    p.write_text(text)
    return str(p)


def test_holds_writes_unsat(net, capsys):
    tmp, model = net
    spec = _spec(tmp, "safe.vnnlib", "(>= Y_0 2.5)")
    out, js = tmp / "res.txt", tmp / "r.json"
    rc = main(["verify", "--model", model, "--spec", spec, "--timeout", "5", "--out", str(out), "--json", str(js),
               "--quiet"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == "holds"
    assert out.read_text().strip() == "unsat"
    doc = json.loads(js.read_text())
    assert doc["schema_version"] == 1 and doc["command"] == "verify"
    assert doc["result"]["verdict"] == "holds" and doc["result"]["vnncomp"] == "unsat"


def test_violated_writes_checked_counterexample(net, capsys):
    tmp, model = net
    spec = _spec(tmp, "bad.vnnlib", "(or (and (>= Y_0 1.4) (>= Y_1 0.5)) (and (>= Y_0 5)))")
    out = tmp / "res.txt"
    rc = main(["verify", "--model", model, "--spec", spec, "--timeout", "5", "--out", str(out), "--quiet"])
    assert rc == 0 and capsys.readouterr().out.strip() == "violated"
    assert out.read_text().startswith("sat\n")
    x, y = read_counterexample(out)
    assert property_violated(load_vnnlib(spec), x, y)


def test_bad_spec_and_bad_model_exit_2(net, tmp_path):
    tmp, model = net
    bad = tmp / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (>= X_0 0)")
    assert main(["verify", "--model", model, "--spec", str(bad)]) == 2
    wrong_size = tmp / "w.vnnlib"
    wrong_size.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n"
                          "(assert (<= X_0 1))\n(assert (>= Y_0 0))\n")
    assert main(["verify", "--model", model, "--spec", str(wrong_size)]) == 2
    junk = tmp / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert main(["verify", "--model", str(junk), "--spec", _spec(tmp, "s.vnnlib", "(>= Y_0 2.5)")]) == 2
    assert main(["verify", "--model", model, "--spec", _spec(tmp, "s2.vnnlib", "(>= Y_0 2.5)"),
                 "--method", "nope"]) == 2


@pytest.mark.parametrize("command", [["certify", "--eps", "0.01"], ["radius", "--bisection-steps", "4"],
                                     ["attack", "--steps", "5", "--restarts", "1"]])
def test_onnx_model_in_other_commands(net, command):
    tmp, model = net
    x = np.random.default_rng(0).uniform(0, 1, size=(4, 2)).astype(np.float32)
    y = (x @ np.array([[1.0, 1.0], [1.0, -1.0]]).T).clip(min=0).argmax(1)
    np.savez(tmp / "d.npz", x=x, y=y)
    rc = main([command[0], "--model", model, "--data", str(tmp / "d.npz"), "--quiet", *command[1:]])
    assert rc == 0
