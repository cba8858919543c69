"""`certnn radius --method popqorn --frames ...` on a small LSTM given as FILE.py:FACTORY."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from certnn.cli.main import main
from certnn.errors import SpecError

SRC = '''import torch
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
    torch.manual_seed(0)
    return Net()
'''


@pytest.fixture()
def lstm_model(tmp_path):
    src = tmp_path / "net.py"
    src.write_text(SRC)
    ns: dict = {}
    exec(SRC, ns)
    m = ns["make"]()
    torch.save(m.state_dict(), tmp_path / "w.pt")
    x = torch.rand(3, 12)
    with torch.no_grad():
        y = m(x.reshape(3, 4, 3)).argmax(1)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    return tmp_path, f"{src}:make", str(tmp_path / "w.pt"), str(tmp_path / "d.npz")


def test_radius_frames_popqorn(lstm_model):
    tmp, model, w, data = lstm_model
    out = tmp / "one.json"
    assert main(["radius", "--model", model, "--weights", w, "--data", data, "--input-shape", "4,3",
                 "--method", "popqorn,ibp", "--quiet", "--bisection-steps", "2", "--frames", "0,-1",
                 "--frame-eps", "1,0.5", "--attack", "--attack-steps", "10", "--attack-restarts", "1",
                 "--json", str(out)]) == 0
    o = json.loads(out.read_text())
    assert o["settings"]["frames"] == [0, -1] and o["settings"]["frame_eps"] == [1.0, 0.5]
    for r in o["samples"]:
        by = r["certified_radius_by_method"]
        assert by["popqorn"] > 0 and by["popqorn"] >= by["ibp"]
        assert r["attack_radius"] == "inf" or r["certified_radius"] <= r["attack_radius"]


def test_bad_frames_is_a_clear_error(lstm_model, capsys):
    tmp, model, w, data = lstm_model
    rc = main(["radius", "--model", model, "--weights", w, "--data", data, "--input-shape", "4,3",
               "--method", "ibp", "--quiet", "--frames", "7"])
    assert rc == SpecError.exit_code
    assert "out of range" in capsys.readouterr().err


def test_radius_per_frame_balls(lstm_model, capsys):
    """POPQORN's threat model: an L2 ball per frame, frames independent (--norm inf --frame-norm 2); the
    attack runs in the same set and stays above every certified radius."""
    tmp, model, w, data = lstm_model
    out = tmp / "frames.json"
    assert main(["radius", "--model", model, "--weights", w, "--data", data, "--input-shape", "4,3",
                 "--method", "popqorn,certrnn,ibp", "--frame-norm", "2", "--attack", "--attack-steps", "20",
                 "--bisection-steps", "4", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["frame_norm"] == "2" and doc["settings"]["norm"] == "inf"
    for s in doc["samples"]:
        r = s["certified_radius_by_method"]
        assert r["popqorn"] > 0 and r["ibp"] <= r["popqorn"]
        assert s["attack_radius"] == "inf" or max(r.values()) <= s["attack_radius"]
    # a joint ball around the frames cannot be mixed with a per-frame norm: exit 2, one line
    assert main(["radius", "--model", model, "--weights", w, "--data", data, "--input-shape", "4,3",
                 "--norm", "2", "--frame-norm", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "L-inf across frames" in err and "Traceback" not in err
    assert main(["radius", "--model", model, "--weights", w, "--data", data, "--input-shape", "4,3",
                 "--method", "milp", "--frame-norm", "2", "--quiet"]) == 2
    assert "per-frame" in capsys.readouterr().err
