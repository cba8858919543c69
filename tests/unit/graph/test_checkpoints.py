"""Checkpoint layouts of the field are unwrapped (and the key used is reported); loading stays weights-only."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from certnn.errors import ModelImportError
from certnn.graph.checkpoints import find_state_dict, load_checkpoint
from certnn.graph.loading import load_model

REPO = Path(__file__).resolve().parents[3]
FACTORY = ("import torch\n\ndef make():\n"
           "    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))\n")


def _net(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _prefixed(sd, p):
    return {p + k: v for k, v in sd.items()}


LAYOUTS = {
    "plain": (lambda sd: sd, "plain state_dict"),
    "state_dict": (lambda sd: {"state_dict": sd, "epoch": 3, "optimizer": {"state": {}, "param_groups": []}},
                   "['state_dict']"),
    "model": (lambda sd: {"model": sd, "args": {"lr": 0.1}}, "['model']"),
    "model_state_dict": (lambda sd: {"model_state_dict": sd, "epoch": 1}, "['model_state_dict']"),
    "list": (lambda sd: [sd], "[0]"),
    "crown_ibp": (lambda sd: {"state_dict": [sd], "epoch": 200}, "['state_dict'][0]"),
    "data_parallel": (lambda sd: {"state_dict": _prefixed(sd, "module.")}, "prefix 'module.' removed"),
    "lightning": (lambda sd: {"state_dict": _prefixed(sd, "model."), "global_step": 10}, "prefix 'model.' removed"),
    "compiled": (lambda sd: _prefixed(sd, "_orig_mod."), "prefix '_orig_mod.' removed"),
    "nested": (lambda sd: {"checkpoint": {"net": sd}}, "['checkpoint']['net']"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_are_unwrapped_and_reported(tmp_path, layout):
    ref = _net()
    wrap, where = LAYOUTS[layout]
    torch.save(wrap(ref.state_dict()), tmp_path / "ckpt.pt")
    (tmp_path / "net.py").write_text(FACTORY)
    info: dict = {}
    m = load_model(f"{tmp_path / 'net.py'}:make", weights=str(tmp_path / "ckpt.pt"), info=info)
    x = torch.randn(5, 3)
    assert torch.equal(m(x), ref(x))
    assert where in info["weights_key"] if layout != "plain" else "plain state_dict" in info["weights_key"]


def test_ambiguous_checkpoint_needs_a_key(tmp_path):
    a, b = _net(1), _net(2)
    torch.save({"model": a.state_dict(), "ema": b.state_dict()}, tmp_path / "c.pt")
    m = _net(3)
    with pytest.raises(ModelImportError, match="several different state dicts.*--weights-key"):
        load_checkpoint(m, tmp_path / "c.pt")
    where = load_checkpoint(m, tmp_path / "c.pt", key="ema")
    assert "['ema']" in where
    x = torch.randn(2, 3)
    assert torch.equal(m(x), b(x))
    # the same weights twice (a model and its copy) are not ambiguous
    torch.save({"model": a.state_dict(), "best": a.state_dict()}, tmp_path / "d.pt")
    load_checkpoint(m, tmp_path / "d.pt")
    # list index paths: "state_dict.1"
    torch.save({"state_dict": [a.state_dict(), b.state_dict()]}, tmp_path / "e.pt")
    assert "['state_dict'][1]" in load_checkpoint(m, tmp_path / "e.pt", key="state_dict.1")
    with pytest.raises(ModelImportError, match="no state_dict under key"):
        load_checkpoint(m, tmp_path / "e.pt", key="nope")


def test_no_match_lists_what_is_there(tmp_path):
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 3)}, "epoch": 1}, tmp_path / "c.pt")
    with pytest.raises(ModelImportError) as e:
        load_checkpoint(_net(), tmp_path / "c.pt")
    msg = str(e.value)
    assert "no state_dict matches" in msg and "fc.weight" in msg and "0.weight" in msg
    torch.save({"epoch": 1, "name": "x"}, tmp_path / "d.pt")
    with pytest.raises(ModelImportError, match="no mapping of tensors"):
        load_checkpoint(_net(), tmp_path / "d.pt")
    # shapes that do not match are an error, never a partial load
    bad = _net().state_dict()
    bad["0.weight"] = torch.zeros(5, 3)
    torch.save({"model": bad}, tmp_path / "e.pt")
    with pytest.raises(ModelImportError, match="do not match"):
        load_checkpoint(_net(), tmp_path / "e.pt")


def test_weights_only_by_default(tmp_path):
    sd = _net().state_dict()
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=0.1)}, tmp_path / "c.pt")
    with pytest.raises(ModelImportError, match="weights-only.*--trust-pickle"):
        load_checkpoint(_net(), tmp_path / "c.pt")
    assert "['state_dict']" in load_checkpoint(_net(), tmp_path / "c.pt", trust_pickle=True)


def test_find_state_dict_direct():
    ref = _net()
    sd, where = find_state_dict({"net": _prefixed(ref.state_dict(), "module.")}, _net(2))
    assert set(sd) == set(ref.state_dict()) and "['net']" in where and "module." in where


def test_cli_reports_the_key(tmp_path):
    ref = _net()
    torch.save({"state_dict": [_prefixed(ref.state_dict(), "module.")]}, tmp_path / "ckpt.pt")
    (tmp_path / "net.py").write_text(FACTORY)
    import numpy as np
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).uniform(size=(2, 3)), y=np.array([0, 1]))
    out = tmp_path / "o.json"
    env = {"PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "certnn.cli.main", "certify", "--model", f"{tmp_path / 'net.py'}:make",
                        "--weights", str(tmp_path / "ckpt.pt"), "--data", str(tmp_path / "d.npz"), "--eps", "0.01",
                        "--json", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "['state_dict'][0]" in r.stderr
    doc = json.loads(out.read_text())
    assert "['state_dict'][0], prefix 'module.' removed" in doc["settings"]["weights_key"]
    r = subprocess.run([sys.executable, "-m", "certnn.cli.main", "certify", "--model", f"{tmp_path / 'net.py'}:make",
                        "--weights", str(tmp_path / "ckpt.pt"), "--weights-key", "model", "--data",
                        str(tmp_path / "d.npz"), "--eps", "0.01"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no state_dict under key" in r.stderr
