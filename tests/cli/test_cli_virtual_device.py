"""Every command that takes `--device` run with `--device cuda` on the virtual device
(certnn/testing/virtual_device.py: the cpu stands in for a GPU, "cuda" resolves to it, and any call that
mixes tensors on it with cpu tensors fails as it would on CUDA): the same results as `--device cpu`."""
from __future__ import annotations

import json

import pytest
import torch

from certnn.cli.main import main
from certnn.testing.virtual_device import VIRTUAL, cuda_is_virtual
from conftest import write_factory_model

FAST = ["--quiet", "--bisection-steps", "5"]


@pytest.fixture()
def tiny(tmp_path):
    _, model, w, data = write_factory_model(
        tmp_path, "torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.Tanh(), "
                  "torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))", (4, 2, 3))
    return tmp_path, ["--model", model, "--weights", w, "--data", data]


def _on_virtual(argv: list[str]) -> int:
    with cuda_is_virtual():
        return main(argv + ["--device", "cuda"])


def _samples(path, key):
    return [s.get(key) for s in json.loads(path.read_text())["samples"]]


@pytest.mark.parametrize("cmd,extra,key", [
    ("radius", ["--method", "crown,alpha-crown,deepz", "--norm", "2", *FAST], "certified_radius"),
    ("radius", ["--method", "crown", "--attack", "--attack-steps", "5", "--attack-restarts", "1", *FAST],
     "certified_radius"),
    ("certify", ["--method", "alpha-crown", "--eps", "0.02", "0.05", "--quiet"], "certified"),
    ("attack", ["--quiet", "--steps", "5", "--restarts", "1"], "attack_radius"),
    ("clever", ["--quiet", "--batches", "4", "--batch-size", "8"], "clever_estimate"),
])
def test_command_on_the_virtual_device_matches_cpu(tiny, cmd, extra, key):
    tmp, model = tiny
    cpu, dev = tmp / "cpu.json", tmp / "dev.json"
    assert main([cmd, *model, *extra, "--json", str(cpu), "--device", "cpu"]) == 0
    assert _on_virtual([cmd, *model, *extra, "--json", str(dev)]) == 0
    want = _samples(cpu, key)
    assert want and all(v is not None for v in want)
    assert _samples(dev, key) == want


def _vnnlib_case(tmp):
    """A 3-input ReLU net as ONNX and two properties: Y_0 - Y_1 below its exact minimum (holds) and above it."""
    onnx = pytest.importorskip("onnx")  # noqa: F841
    from certnn.engine.milp import exact_bounds
    from certnn.graph.from_torch import from_torch
    from certnn.specs.lp import LpBall
    from certnn.testing import random_relu_mlp

    net = random_relu_mlp(3, 3, 8).float().eval()
    path = tmp / "net.onnx"
    torch.onnx.export(net, torch.zeros(1, 3), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    g = from_torch(net.double(), (3,))
    spec = LpBall.make(torch.zeros(1, 3, dtype=torch.float64), 0.5, "inf")
    mn, mx = (float(v) for v in exact_bounds(g, spec, torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)))
    head = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -0.5))\n(assert (<= X_{i} 0.5))\n"
                   for i in range(3)) + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    props = []
    for name, c in (("holds", mn - 0.05 * (mx - mn) - 1e-4), ("violated", mn + 0.05 * (mx - mn) + 1e-4)):
        (tmp / f"{name}.vnnlib").write_text(head + f"(assert (<= (- Y_0 Y_1) {c!r}))\n")
        props.append((name, tmp / f"{name}.vnnlib"))
    return path, props


def test_verify_on_the_virtual_device_matches_cpu(tmp_path):
    net, props = _vnnlib_case(tmp_path)
    for truth, spec in props:
        docs = []
        for run, tag in ((main, "cpu"), (_on_virtual, "dev")):
            out = tmp_path / f"{truth}-{tag}.json"
            argv = ["verify", "--model", str(net), "--spec", str(spec), "--timeout", "30", "--quiet", "--json", str(out)]
            assert run(argv + (["--device", "cpu"] if tag == "cpu" else [])) == 0
            docs.append(json.loads(out.read_text()))
        cpu, dev = (d["result"] for d in docs)
        assert cpu["verdict"] == dev["verdict"] == truth and cpu["decided_by"] == dev["decided_by"]
        assert docs[1]["environment"]["device"] == str(VIRTUAL) and docs[0]["environment"]["device"] == "cpu"


@pytest.mark.parametrize("cmd", ["report", "train"])
def test_more_commands_run_on_the_virtual_device(tiny, cmd):
    """report (radii, attack radius, CLEVER, plots) and train (the digits MLP) with no device mix-up."""
    tmp, model = tiny
    argv = {"report": ["report", *model, "--out", str(tmp / "rep"), "--quiet", "--bisection-steps", "4"],
            "train": ["train", "--task", "digits", "--out", str(tmp / "t.pt"), "--quiet", "--epochs", "1"]}[cmd]
    assert _on_virtual(argv) == 0
