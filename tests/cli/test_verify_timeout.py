"""`certnn verify --timeout T` answers by T, counted from the process start: a hard property on a random
ReLU net (neither attack nor branch and bound can decide it in time) gets its result file written within
T of the process start (imports and model loading included)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _random_net(path: Path, sizes=(20, 128, 128, 128, 2), seed=0) -> None:
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(b)).astype(np.float32)
        inits += [numpy_helper.from_array(W, f"W{k}"), numpy_helper.from_array(bias, f"b{k}")]
        nodes += [helper.make_node("MatMul", [prev, f"W{k}"], [f"m{k}"]),
                  helper.make_node("Add", [f"m{k}", f"b{k}"], [f"a{k}"])]
        prev = f"a{k}"
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{k}"]))
            prev = f"r{k}"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, sizes[-1]])], initializer=inits)
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())


def test_result_written_within_the_timeout_counted_from_process_start(tmp_path):
    model = tmp_path / "net.onnx"
    _random_net(model)
    n = 20
    lines = [f"(declare-const X_{i} Real)" for i in range(n)] + ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    lines += [f"(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))" for i in range(n)]
    # the unsafe set Y_0 - Y_1 >= c with c halfway between the sampled max and CROWN's upper bound:
    # far from both an easy proof and an easy counterexample
    import torch

    from certnn.certify.bounds import bounds_for_spec
    from certnn.graph.from_onnx import onnx_to_model
    from certnn.specs.lp import LpBall

    g = onnx_to_model(str(model)).graph
    C = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    spec_ = LpBall.make(torch.zeros(1, n, dtype=torch.float64), 1.0, "inf")
    _, ub, _ = bounds_for_spec(g, spec_, "crown", C)
    xs = torch.rand(4000, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    smax = float((g.forward(xs) @ C[0, 0]).max())
    c = smax + 0.5 * (float(ub) - smax)
    lines.append(f"(assert (>= (- Y_0 Y_1) {c!r}))")
    spec = tmp_path / "prop.vnnlib"
    spec.write_text("\n".join(lines) + "\n")
    out = tmp_path / "result.txt"
    T = 6.0
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "certnn.cli.main", "verify", "--model", str(model), "--spec", str(spec),
                        "--timeout", str(T), "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert out.read_text().strip() in ("unknown", "unsat")
    assert out.stat().st_mtime - t0 <= T + 0.5, f"result written {out.stat().st_mtime - t0:.2f} s after the start"
    # and the process has ended too (a harness times the process): no interpreter teardown after the answer
    assert time.time() - t0 <= T + 0.5, f"process ended {time.time() - t0:.2f} s after the start"
