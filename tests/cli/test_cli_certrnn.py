"""CLI with the zonotope methods on a recurrent model: `certnn radius|certify --method certrnn,deepz`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from certnn.cli.main import main

SRC = '''import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def make():
    return Net()
'''


@pytest.fixture()
def lstm_model(tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "lstm.py"
    src.write_text(SRC)
    ns: dict = {}
    exec(src.read_text(), ns)
    m = ns["make"]()
    torch.save(m.state_dict(), tmp_path / "w.pt")
    x = torch.rand(4, 4, 3)
    with torch.no_grad():
        y = m(x).argmax(1)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    return tmp_path, f"{src}:make", str(tmp_path / "w.pt"), str(tmp_path / "d.npz")


def test_radius_certrnn_and_deepz(lstm_model):
    tmp, model, w, data = lstm_model
    out = tmp / "r.json"
    rc = main(["radius", "--model", model, "--weights", w, "--data", data, "--method", "certrnn,deepz,ibp",
               "--json", str(out), "--quiet", "--bisection-steps", "6"])
    assert rc == 0
    doc = json.loads(out.read_text())
    for r in doc["samples"]:
        by = r["certified_radius_by_method"]
        assert by["certrnn"] > 0 and by["certrnn"] >= by["ibp"] * (1 - 1e-3)


def test_certify_certrnn(lstm_model):
    tmp, model, w, data = lstm_model
    out = tmp / "c.json"
    rc = main(["certify", "--model", model, "--weights", w, "--data", data, "--eps", "0.0001", "10",
               "--method", "certrnn", "--norm", "2", "--json", str(out), "--quiet"])
    assert rc == 0
    acc = json.loads(out.read_text())["summary"]["certified_accuracy"]
    assert acc["0.0001"] == 1.0 and acc["10.0"] == 0.0


def test_radius_frames_certrnn_vs_popqorn(lstm_model):
    """`--frames` with certrnn: only the chosen frames are perturbed (each with its --frame-eps weight);
    the radius for one frame is at least that for all frames (a subset of the perturbation)."""
    tmp, model, w, data = lstm_model
    out_one, out_all = tmp / "one.json", tmp / "all.json"
    common = ["radius", "--model", model, "--weights", w, "--data", data, "--quiet", "--bisection-steps", "6"]
    assert main(common + ["--method", "certrnn,popqorn", "--frames", "0,-1", "--frame-eps", "1,0.5",
                          "--json", str(out_one)]) == 0
    assert main(common + ["--method", "certrnn", "--json", str(out_all)]) == 0
    one = json.loads(out_one.read_text())
    full = json.loads(out_all.read_text())
    assert one["settings"]["frames"] == [0, -1]
    for r1, ra in zip(one["samples"], full["samples"]):
        c1 = r1["certified_radius_by_method"]["certrnn"]
        assert c1 > 0 and r1["certified_radius_by_method"]["popqorn"] > 0
        assert c1 >= ra["certified_radius"] * (1 - 0.05)
