"""ONNX models with float64 and float16 inputs (e.g. VNN-COMP's nn4sys: MatMul, Add, Relu in float64) import
with parity against onnxruntime, fed in their own element type; VNN-LIB verification checks counterexamples
at points of that type."""
from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from certnn.certify.verify import VerifyConfig, verify_property  # noqa: E402
from certnn.cli.main import main  # noqa: E402
from certnn.errors import ModelImportError  # noqa: E402
from certnn.graph.from_onnx import onnx_to_model, parity_tolerance  # noqa: E402
from certnn.specs.vnnlib import parse_vnnlib, property_violated  # noqa: E402

TYPES = {"float64": (TensorProto.DOUBLE, np.float64), "float16": (TensorProto.FLOAT16, np.float16),
         "float32": (TensorProto.FLOAT, np.float32)}


def nn4sys_like(dtype="float64", batch="N", seed=0, d=5, h=16, k=3):
    """MatMul, Add, Relu only, all in `dtype` (as VNN-COMP 2022 nn4sys)."""
    et, npdt = TYPES[dtype]
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((d, h)).astype(npdt) / 2, "W1"),
             numpy_helper.from_array(rng.standard_normal(h).astype(npdt) / 4, "b1"),
             numpy_helper.from_array(rng.standard_normal((h, k)).astype(npdt) / 2, "W2"),
             numpy_helper.from_array(rng.standard_normal(k).astype(npdt) / 4, "b2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("MatMul", ["r1", "W2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["y"])]
    g = helper.make_graph(nodes, "nn4sys_like", [helper.make_tensor_value_info("x", et, [batch, d])],
                          [helper.make_tensor_value_info("y", et, [batch, k])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("dtype", ["float64", "float16", "float32"])
def test_import_and_parity(dtype):
    m = nn4sys_like(dtype)
    om = onnx_to_model(m.SerializeToString())
    assert om.input_dtype == dtype and om.precision == dtype
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(-2, 2, size=(7, 5)).astype(TYPES[dtype][1])
    want = sess.run(None, {"x": x})[0].astype(np.float64)
    got = om.graph.forward(torch.as_tensor(x.astype(np.float64))).numpy()
    tol = parity_tolerance(dtype)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * (1 + np.abs(want).max()))
    assert om.onnx_input(x).dtype == TYPES[dtype][1]
    np.testing.assert_array_equal(om.run_onnxruntime(x.astype(np.float64)), want)


def test_torch_double_export(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).double()
    p = tmp_path / "d.onnx"
    torch.onnx.export(net, (torch.zeros(1, 4, dtype=torch.float64),), str(p), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}})
    om = onnx_to_model(str(p))
    assert om.input_dtype == "float64"
    x = torch.randn(3, 4, dtype=torch.float64)
    assert torch.allclose(om.graph.forward(x), net(x), atol=1e-12)


def test_parity_catches_a_wrong_model_in_float16():
    m = nn4sys_like("float16")
    om = onnx_to_model(m.SerializeToString())
    # a graph that differs by O(1) fails the check even at float16's tolerance
    bad = nn4sys_like("float16", seed=1)
    from certnn.graph.from_onnx import OnnxModel, check_onnx_parity
    wrong = OnnxModel(om.graph, bad.SerializeToString(), "x", om.onnx_input_shape, True, "float16", "float16",
                      "float16")
    with pytest.raises(ModelImportError, match="parity"):
        check_onnx_parity(wrong)


def test_non_float_inputs_are_refused_clearly():
    g = helper.make_graph([helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT),
                           helper.make_node("Relu", ["c"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(ModelImportError, match="element type int64.*floating-point inputs"):
        onnx_to_model(m.SerializeToString())


def _box_spec(lo, hi, ylo_rows):
    lines = [f"(declare-const X_{i} Real)" for i in range(5)] + [f"(declare-const Y_{j} Real)" for j in range(3)]
    lines += [f"(assert (>= X_{i} {lo}))\n(assert (<= X_{i} {hi}))" for i in range(5)]
    lines += ylo_rows
    return "\n".join(lines)


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_verify_rounds_counterexamples_to_the_input_type(dtype):
    m = nn4sys_like(dtype)
    om = onnx_to_model(m.SerializeToString())
    x0 = np.full((1, 5), 0.1)
    y0 = om.run_onnxruntime(x0)[0]
    # violated: Y_0 <= its value at the centre + 1 is reachable
    prop = parse_vnnlib(_box_spec(0.05, 0.15, [f"(assert (<= Y_0 {float(y0[0]) + 1.0!r}))"]))
    res = verify_property(om.graph, prop, VerifyConfig(timeout=10, input_dtype=dtype), om.run_onnxruntime)
    assert res.verdict == "violated"
    x = res.x
    assert np.array_equal(x.astype(TYPES[dtype][1]).astype(np.float64), x)  # representable in the input type
    assert property_violated(prop, x, om.run_onnxruntime(x[None])[0])
    # holds: outputs are bounded on a small box
    prop = parse_vnnlib(_box_spec(0.09, 0.11, [f"(assert (>= Y_0 {float(y0[0]) + 50.0!r}))"]))
    res = verify_property(om.graph, prop, VerifyConfig(timeout=10, input_dtype=dtype), om.run_onnxruntime)
    assert res.verdict == "holds"


def test_verify_cli_on_a_float64_model(tmp_path, capsys):
    m = nn4sys_like("float64")
    p = tmp_path / "nn4sys.onnx"
    p.write_bytes(m.SerializeToString())
    om = onnx_to_model(str(p))
    y0 = om.run_onnxruntime(np.full((1, 5), 0.1))[0]
    spec = tmp_path / "p.vnnlib"
    spec.write_text(_box_spec(0.05, 0.15, [f"(assert (<= Y_0 {float(y0[0]) + 1.0!r}))"]))
    out = tmp_path / "res.txt"
    assert main(["verify", "--model", str(p), "--spec", str(spec), "--timeout", "10", "--quiet", "--out",
                 str(out)]) == 0
    assert capsys.readouterr().out.strip() == "violated"
    assert out.read_text().startswith("sat")
