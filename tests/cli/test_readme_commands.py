"""Every command of README's command list, run as written (in a folder holding tiny files under the README's
names), with stdout and stderr going to a file: it finishes (exit 0) and its log shows a timestamped progress
line. Commands on the text tasks need the shared data directory (../shared/data) and run only where it is.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

#: a subprocess per command (the log is a real file): minutes in all; `make test-full` runs it
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d certnn \w+: ", re.M)

NET = ("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(), "
       "torch.nn.Linear(10, 3))\n")
LSTM = '''import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        out, (h, c) = self.rnn(x)
        return self.fc(h[-1])

def make():
    return Net()
'''


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("```", 2)[1]
    lines, cur = [], ""
    for raw in block.splitlines():
        cur += raw.rstrip().rstrip("\\") + " "
        if not raw.rstrip().endswith("\\"):
            if cur.strip():
                lines.append(cur.strip())
            cur = ""
    return [ln for ln in lines if ln.startswith("certnn")]


def _load(src: str, name: str):
    ns: dict = {}
    exec(src, ns)
    torch.manual_seed(0)
    return ns["make"]()


def _write_files(d: Path) -> None:
    (d / "net.py").write_text(NET)
    net = _load(NET, "net").eval()
    torch.save(net.state_dict(), d / "net.pt")
    x = torch.rand(4, 6)
    with torch.no_grad():
        np.savez(d / "d.npz", x=x.numpy(), y=net(x).argmax(1).numpy())
        torch.onnx.export(net, (torch.zeros(1, 6),), str(d / "net.onnx"), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
        y0 = int(net(x[:1]).argmax(1))
    (d / "lstm.py").write_text(LSTM)
    lstm = _load(LSTM, "lstm").eval()
    torch.save(lstm.state_dict(), d / "lstm.pt")
    s = torch.rand(3, 4, 3)
    with torch.no_grad():
        np.savez(d / "seq.npz", x=s.numpy(), y=lstm(s).argmax(1).numpy())
        torch.onnx.export(lstm, (torch.zeros(1, 4, 3),), str(d / "lstm.onnx"), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    box = [(float(v) - 0.01, float(v) + 0.01) for v in x[0]]
    other = (y0 + 1) % 3
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(6)) + \
        "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))
    bounds = "".join(f"(assert (>= X_{i} {lo}))\n(assert (<= X_{i} {hi}))\n" for i, (lo, hi) in enumerate(box))
    (d / "prop.vnnlib").write_text(decl + bounds + f"(assert (>= Y_{other} Y_{y0}))\n")
    q = "".join(f"(assert (>= X[0,{i}] {lo}))\n(assert (<= X[0,{i}] {hi}))\n" for i, (lo, hi) in enumerate(box))
    (d / "query.vnnlib").write_text("(vnnlib-version <2.0>)\n(declare-network f\n    (declare-input X real [1,6])\n"
                                    "    (declare-output Y real [1,3])\n)\n" + q +
                                    f"(assert (>= Y[0,{other}] Y[0,{y0}]))\n")
    (d / "radius.yaml").write_text("command: radius\nmodel: net.py:make\nweights: net.pt\ndata: d.npz\nnorm: 2\n"
                                   "method: [crown, ibp]\nattack: true\n")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    d = tmp_path_factory.mktemp("readme")
    _write_files(d)
    return d


CMDS = readme_commands()


def test_readme_lists_commands():
    assert len(CMDS) >= 15


@pytest.mark.parametrize("cmd", CMDS, ids=[c[:60] for c in CMDS])
def test_readme_command_runs_and_logs_progress(cmd, folder, shared_data_or_none):
    argv = shlex.split(cmd, comments=True)
    if "../shared/data" in argv or any(a in ("mr.pt", "mr_robust.pt") for a in argv):
        if shared_data_or_none is None:
            pytest.skip("text-task commands need ../shared/data")
        argv = [str(shared_data_or_none) if a == "../shared/data" else a for a in argv]
        if argv[1] in ("radius", "compare", "words") and not (folder / "mr.pt").exists():
            pytest.skip("needs mr.pt from the README's `certnn train` command (run in this order)")
    if argv[1] == "train":  # small inputs: a subset of the task, one epoch
        argv += ["--limit", "200", "--epochs", "1"]
    if "--samples" in argv:  # small inputs: at most 3 test sentences / images
        k = argv.index("--samples") + 1
        argv[k] = str(min(int(argv[k]), 3))
    if argv[0] == "certnn-vnnlib":
        argv = ["certnn", "vnnlib", *argv[1:]]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = folder / "log.txt"
    with open(log, "w") as fh:
        rc = subprocess.run([sys.executable, "-m", "certnn", *argv[1:]], cwd=folder, env=env, stdout=fh,
                            stderr=subprocess.STDOUT, timeout=600).returncode
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text
    if argv[1] != "vnnlib":  # the VNN-LIB solver interface answers in the standard's format only
        assert STAMP.search(text), f"no progress line in the log of `{cmd}`:\n{text[-2000:]}"


@pytest.fixture(scope="module")
def shared_data_or_none():
    from conftest import SHARED_DATA

    return SHARED_DATA if SHARED_DATA.is_dir() else None
