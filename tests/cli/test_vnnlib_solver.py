"""The VNN-LIB standard's solver interface (chapter 5): --name / --version, every mandatory capability of
`supports` in its response format, `verify` answers (sat with the command-line and serialised assignment
formats, unsat, unknown, timed-out) and every error condition of section 5.3.2 (exit 2, one line on stderr,
nothing on stdout)."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("vnnlib")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from certnn.cli.main import main as certnn_main  # noqa: E402
from certnn.cli.vnnlib_solver import CAPABILITIES, main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TYPES = {"float32": (TensorProto.FLOAT, np.float32), "float64": (TensorProto.DOUBLE, np.float64)}


def model(path: Path, dtype="float32", in_shape=("N", 2), seed=0) -> Path:
    """y = W2 relu(W1 x + b1) + b2, 2 -> 6 -> 2."""
    et, npdt = TYPES[dtype]
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((2, 6)).astype(npdt), "W1"),
             numpy_helper.from_array(rng.standard_normal(6).astype(npdt), "b1"),
             numpy_helper.from_array(rng.standard_normal((6, 2)).astype(npdt), "W2"),
             numpy_helper.from_array(rng.standard_normal(2).astype(npdt), "b2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["a"]), helper.make_node("Add", ["a", "b1"], ["b"]),
             helper.make_node("Relu", ["b"], ["r"]), helper.make_node("MatMul", ["r", "W2"], ["c"]),
             helper.make_node("Add", ["c", "b2"], ["y"])]
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", et, list(in_shape))],
                          [helper.make_tensor_value_info("y", et, [in_shape[0], 2])], inits)
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString())
    return path


def query(path: Path, out_rows: str, etype="real", lo="-0.5", hi="0.5", shape="[1,2]", net="f", extra="") -> Path:
    idx = "0," if "," in shape else ""
    path.write_text(f"""(vnnlib-version <2.0>)
(declare-network {net}
    (declare-input  X {etype} {shape})
    (declare-output Y {etype} [1,2])
)
{extra}
(assert (>= X[{idx}0] {lo}))
(assert (<= X[{idx}0] {hi}))
(assert (>= X[{idx}1] {lo}))
(assert (<= X[{idx}1] {hi}))
(assert {out_rows})
""")
    return path


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def net(tmp_path):
    return model(tmp_path / "net.onnx")


def _outputs(path, x):
    from certnn.graph.from_onnx import onnx_to_model
    return onnx_to_model(str(path)).run_onnxruntime(np.asarray(x, dtype=np.float64).reshape(1, 2))[0]


# ---------------------------------------------------------------- global options and supports

def test_name_and_version(capsys):
    from certnn import __version__
    assert run(["--name"], capsys) == (0, "certnn\n", "")
    assert run(["--version"], capsys) == (0, f"{__version__}\n", "")
    code, out, err = run(["--name", "supports", "--vnnlib-versions"], capsys)
    assert code == 2 and out == "" and "global options" in err


def _check_format(cap: str, out: str) -> None:
    """The response formats of section 5.4 (as vnnlib-satisfactory's compliance checks read them)."""
    assert out.endswith("\n") and "\r" not in out
    lines = out[:-1].split("\n")
    if cap == "--onnx-opset-versions":
        assert len(lines) == 2 and all(re.fullmatch(r"[0-9]+", v) for v in lines) and int(lines[0]) <= int(lines[1])
    elif cap == "--vnnlib-versions":
        assert len(lines) == 2 and all(re.fullmatch(r"[0-9]+\.[0-9]+", v) for v in lines)
        assert tuple(map(int, lines[0].split("."))) <= tuple(map(int, lines[1].split(".")))
    elif cap in ("--optimised-disjunctive-reasoning", "--serialise-assignments"):
        assert lines in (["true"], ["false"])
    elif cap == "--onnx-element-types":
        assert lines == ["real"]  # certnn's soundness is over the reals (section 5.4.1)
    elif cap == "--onnx-operators":
        assert {"Gemm", "MatMul", "Relu", "Conv", "LSTM", "GRU", "RNN"} <= set(lines)
        assert all(re.fullmatch(r"[A-Za-z]+( [a-z0-9]+)*", v) for v in lines)
    else:
        legal = {"--hidden-node-theories": {"NH", "H"}, "--multiple-input-output-theories": {"SIO", "MIO"},
                 "--multiple-network-theories": {"SNET", "MNET", "MENET", "MINET"},
                 "--multiple-node-comparison-theories": {"SNC", "MNC"},
                 "--arithmetic-complexity-theories": {"BND", "OUTC", "LIN", "POLY"}}[cap]
        assert lines and set(lines) <= legal


@pytest.mark.parametrize("cap", CAPABILITIES)
def test_every_mandatory_capability_is_answered_in_its_format(cap, capsys):
    code, out, err = run(["supports", cap], capsys)
    assert code == 0 and err == ""
    _check_format(cap, out)
    # the command is also spelled 'capabilities' (section 5.1)
    assert run(["capabilities", cap], capsys)[1] == out


def test_capability_answers(capsys):
    ans = {c: run(["supports", c], capsys)[1] for c in CAPABILITIES}
    assert ans["--hidden-node-theories"] == "NH\n"
    assert ans["--multiple-input-output-theories"] == "SIO\n"
    assert ans["--multiple-network-theories"] == "SNET\n"
    assert ans["--multiple-node-comparison-theories"] == "SNC\n"
    assert ans["--arithmetic-complexity-theories"] == "BND\nOUTC\n"
    assert ans["--vnnlib-versions"] == "1.0\n2.0\n"
    assert ans["--serialise-assignments"] == "true\n"
    assert run(["supports", "--multiple-inputs-output-theories"], capsys)[1] == "SIO\n"  # the 5.4.2 example


@pytest.mark.parametrize("argv", [["supports"], ["supports", "--nope"], ["supports", "--onnx-e"],
                                  ["supports", "--onnx-operators", "--vnnlib-versions"], [], ["verify"]])
def test_usage_errors_exit_2_with_nothing_on_stdout(argv, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "" and err


# ---------------------------------------------------------------- verify: answers and assignments

ASSIGN = re.compile(r"([A-Za-z][A-Za-z0-9_]*) ([a-z0-9]+) \[([0-9,]*)\]\Z")


def parse_assignment(text: str) -> dict:
    """The command-line assignment format of section 5.3.1."""
    lines = text.split("\n")
    assert lines[-1] == ""
    vals, i = {}, 0
    lines = lines[:-1]
    while i < len(lines):
        m = ASSIGN.match(lines[i])
        assert m, lines[i]
        shape = tuple(int(s) for s in m.group(3).split(",")) if m.group(3) else ()
        n = int(np.prod(shape)) if shape else 1
        vals[m.group(1)] = (m.group(2), np.array([float(v) for v in lines[i + 1:i + 1 + n]]).reshape(shape))
        i += 1 + n
    return vals


def test_sat_prints_a_checked_assignment(net, tmp_path, capsys):
    y0 = _outputs(net, [0.0, 0.0])
    q = query(tmp_path / "q.vnnlib", f"(<= Y[0,0] {float(y0[0]) + 0.5!r})")
    code, out, err = run(["verify", str(q), "--network", f"f={net}", "--timeout", "30"], capsys)
    assert code == 0, err
    assert out.startswith("sat\n")
    vals = parse_assignment(out[len("sat\n"):])
    assert list(vals) == ["X", "Y"] and vals["X"][0] == "real" and vals["X"][1].shape == (1, 2)
    x, y = vals["X"][1], vals["Y"][1]
    assert (np.abs(x) <= 0.5).all() and y[0, 0] <= y0[0] + 0.5
    np.testing.assert_allclose(y.reshape(-1), _outputs(net, x), rtol=1e-5, atol=1e-6)


def test_unsat(net, tmp_path, capsys):
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 1000.0)")
    assert run(["verify", str(q), "--network", f"f={net}", "--timeout", "30"], capsys)[:2] == (0, "unsat\n")


def test_unknown_when_neither_proof_nor_counterexample(tmp_path, capsys):
    """y0 = relu(x0) - relu(x0) = 0: Y >= 0.5 never holds, IBP cannot prove it (it bounds y0 by [-0.5, 0.5]
    ... [-1, 1]) and no point is found: unknown, not unsat and not timed-out."""
    W1 = np.array([[1.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    W2 = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    g = helper.make_graph(nodes, "zero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(W1, "W1"), numpy_helper.from_array(W2, "W2")])
    p = tmp_path / "zero.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString())
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 0.5)", lo="-1.0", hi="1.0")
    assert run(["verify", str(q), "--network", f"f={p}", "--method", "ibp", "--timeout", "30"], capsys)[:2] == \
        (0, "unknown\n")
    assert run(["verify", str(q), "--network", f"f={p}", "--timeout", "30"], capsys)[:2] == (0, "unsat\n")


def test_timed_out(net, tmp_path, capsys):
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 1000.0)")
    assert run(["verify", str(q), "--network", f"f={net}", "--timeout", "0"], capsys)[:2] == (0, "timed-out\n")


def test_timeout_counts_from_the_process_start(net, tmp_path):
    """The executable answers by the deadline, however long start-up took (here longer than the limit)."""
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 1000.0)")
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "certnn.cli.vnnlib_solver", "verify", str(q), "--network",
                        f"f={net}", "--timeout", "1"], capture_output=True, text=True,
                       env={"PYTHONPATH": str(REPO / "src")})
    assert r.returncode == 0 and r.stdout in ("timed-out\n", "unsat\n"), r.stderr
    assert time.monotonic() - t < 60


def test_serialised_assignment(net, tmp_path, capsys):
    y0 = _outputs(net, [0.0, 0.0])
    q = query(tmp_path / "q.vnnlib", f"(<= Y[0,0] {float(y0[0]) + 0.5!r})")
    folder = tmp_path / "assign"
    code, out, err = run(["verify", str(q), "--network", f"f={net}", "--serialise-assignments", str(folder)], capsys)
    assert (code, out) == (0, "sat\n"), err
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["X.pb", "Y.pb"]
    from onnx import numpy_helper as nh
    x = nh.to_array(onnx.load_tensor(str(folder / "X.pb")))
    y = nh.to_array(onnx.load_tensor(str(folder / "Y.pb")))
    assert x.shape == (1, 2) and x.dtype == np.float64 and y.shape == (1, 2)  # real -> float64
    np.testing.assert_allclose(y.reshape(-1), _outputs(net, x), rtol=1e-5, atol=1e-6)


def test_float_queries_with_consent_and_float64_models(tmp_path, capsys):
    net64 = model(tmp_path / "n64.onnx", "float64")
    y0 = _outputs(net64, [0.0, 0.0])
    q = query(tmp_path / "q.vnnlib", f"(<= Y[0,0] {float(y0[0]) + 0.5!r})", etype="float64")
    code, out, _ = run(["verify", str(q), "--network", f"f={net64}", "--assume-real"], capsys)
    assert code == 0 and out.startswith("sat\n")
    vals = parse_assignment(out[4:])
    assert vals["X"][0] == "float64" and vals["Y"][0] == "float64"


def test_vnnlib_1_0_query_through_the_interface(tmp_path, capsys):
    p = tmp_path / "acas.onnx"
    rng = np.random.default_rng(3)
    W = numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "lin",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 3])], [W])
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString())
    q = tmp_path / "p.vnnlib"
    q.write_text("\n".join([f"(declare-const X_{i} Real)" for i in range(5)] + [f"(declare-const Y_{j} Real)"
                                                                                 for j in range(3)]
                           + [f"(assert (<= X_{i} 1e-1))\n(assert (>= X_{i} -0.1))" for i in range(5)]
                           + ["(assert (>= Y_0 100))"]))
    assert run(["verify", str(q), "--network", f"anything={p}"], capsys)[:2] == (0, "unsat\n")


def test_certnn_vnnlib_subcommand(net, tmp_path, capsys):
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 1000.0)")
    assert certnn_main(["vnnlib", "verify", str(q), "--network", f"f={net}"]) == 0
    assert capsys.readouterr().out == "unsat\n"
    assert certnn_main(["vnnlib", "supports", "--onnx-element-types"]) == 0
    assert capsys.readouterr().out == "real\n"


# ---------------------------------------------------------------- section 5.3.2 error conditions

def _err(argv, capsys, match):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(match, err), err


def test_condition_1_network_mapping(net, tmp_path, capsys):
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 1000.0)")
    _err(["verify", str(q)], capsys, "no model file for network 'f'")
    _err(["verify", str(q), "--network", f"g={net}"], capsys, "does not declare")
    _err(["verify", str(q), "--network", f"f={net}", "--network", f"f={net}"], capsys, "more than once")
    _err(["verify", str(q), "--network", f"f={net}", "--network", f"h={net}"], capsys, "does not declare")
    _err(["verify", str(q), "--network", "f"], capsys, "NAME=FILE")
    # a network declared equal to another takes no model file (and certnn verifies one network: SNET)
    two = tmp_path / "two.vnnlib"
    two.write_text(q.read_text().replace("(declare-network f", "(declare-network g (equal-to f)\n"
                                         "(declare-input A real [1,2]) (declare-output B real [1,2]))\n"
                                         "(declare-network f", 1) if False else
                   q.read_text().replace(")\n\n(assert", ")\n(declare-network g (equal-to f) (declare-input A real [1,2]) "
                                         "(declare-output B real [1,2]))\n(assert", 1))
    _err(["verify", str(two), "--network", f"f={net}", "--network", f"g={net}"], capsys, "unnecessary")
    _err(["verify", str(two), "--network", f"f={net}"], capsys, "SNET")


def test_condition_2_element_types(tmp_path, capsys):
    net32 = model(tmp_path / "n32.onnx", "float32")
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 1000.0)", etype="float64")
    _err(["verify", str(q), "--network", f"f={net32}", "--assume-real"], capsys,
         "declared float64 but the model .*float32")
    # real-valued queries are exempt
    qr = query(tmp_path / "qr.vnnlib", "(>= Y[0,0] 1000.0)", etype="real")
    assert run(["verify", str(qr), "--network", f"f={net32}"], capsys)[:2] == (0, "unsat\n")


def test_condition_3_soundness_over_declared_types(net, tmp_path, capsys):
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 1000.0)", etype="float32")
    _err(["verify", str(q), "--network", f"f={net}"], capsys, "declares X as float32.*real.*--assume-real")
    assert run(["verify", str(q), "--network", f"f={net}", "--assume-real"], capsys)[:2] == (0, "unsat\n")


def test_other_errors(net, tmp_path, capsys):
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 1000.0)")
    _err(["verify", str(tmp_path / "missing.vnnlib"), "--network", f"f={net}"], capsys, "not found")
    _err(["verify", str(q), "--network", f"f={tmp_path / 'missing.onnx'}"], capsys, "not found")
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [1,2])")
    _err(["verify", str(bad), "--network", f"f={net}"], capsys, "syntax error")
    wrong = query(tmp_path / "w.vnnlib", "(>= Y[0,0] 1000.0)", shape="[1,3]",
                  extra="(assert (>= X[0,2] 0.0)) (assert (<= X[0,2] 0.0))")
    _err(["verify", str(wrong), "--network", f"f={net}"], capsys, r"declared \[1, 3\].*shape")
    batch = query(tmp_path / "b.vnnlib", "(>= Y[0,0] 1000.0)", shape="[2,2]",
                  extra="(assert (>= X[1,0] 0.0)) (assert (<= X[1,0] 0.0)) (assert (>= X[1,1] 0.0)) "
                        "(assert (<= X[1,1] 0.0))")
    _err(["verify", str(batch), "--network", f"f={net}"], capsys, "one sample")
    hidden = tmp_path / "h.vnnlib"
    hidden.write_text(q.read_text().replace("(declare-output Y", "(declare-hidden H real [1,6] \"r\")\n    (declare-output Y"))
    _err(["verify", str(hidden), "--network", f"f={net}"], capsys, "hidden nodes")
    _err(["verify", str(q), "--network", f"f={net}", "--timeout", "-1"], capsys, "timeout")


def test_vnnlib_test_solver_agrees_on_the_interface_if_installed():
    """When the reference test solver (vnnlib-test-solver) is installed, its capability and verify
    argument surface is the one certnn accepts."""
    cli = pytest.importorskip("vnnlib_test_solver.cli")
    from vnnlib_test_solver.supports import CAPABILITIES as REF
    assert tuple(REF) == tuple(CAPABILITIES)
    assert cli.SUPPORTS_COMMAND == "supports"


def test_certnn_verify_reads_vnnlib_2_0(net, tmp_path, capsys):
    q = query(tmp_path / "q.vnnlib", "(>= Y[0,0] 1000.0)")
    import json
    out = tmp_path / "r.json"
    assert certnn_main(["verify", "--model", str(net), "--spec", str(q), "--quiet", "--json", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "holds"
    assert json.loads(out.read_text())["settings"]["vnnlib_parser"].startswith("vnnlib")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_device_cuda_without_gpu_is_refused_before_the_query_is_read(net, tmp_path, capsys):
    _err(["verify", str(tmp_path / "missing.vnnlib"), "--network", f"f={net}", "--device", "cuda"], capsys, "CUDA")


def test_sat_and_unsat_on_the_virtual_device(net, tmp_path, capsys):
    """--device with the cpu standing in for a GPU (certnn/testing/virtual_device.py): the same answers."""
    from certnn.testing.virtual_device import cuda_is_virtual

    y0 = _outputs(net, [0.0, 0.0])
    for rows, word in ((f"(<= Y[0,0] {float(y0[0]) + 0.5!r})", "sat\n"), ("(>= Y[0,0] 1000.0)", "unsat\n")):
        q = query(tmp_path / "q.vnnlib", rows)
        with cuda_is_virtual():
            code, out, err = run(["verify", str(q), "--network", f"f={net}", "--timeout", "30", "--device", "cuda"],
                                 capsys)
        assert code == 0 and out.startswith(word), err
