"""CLI contract: subcommands, JSON schema fields, exit codes, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from certnn.cli.main import main
from conftest import write_factory_model


@pytest.fixture()
def tiny_model(tmp_path):
    def misclassify_first(y):
        y[0] = (y[0] + 1) % 3

    _, model, w, data = write_factory_model(
        tmp_path, "torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.ReLU(), "
                  "torch.nn.Linear(8, 3))", (6, 2, 3), misclassify_first)  # one misclassified sample
    return tmp_path, model, w, data


def test_radius_json_contract(tiny_model):
    tmp, model, w, data = tiny_model
    out = tmp / "r.json"
    rc = main(["radius", "--model", model, "--weights", w, "--data", data, "--norm", "2", "--method", "crown",
               "--json", str(out), "--quiet", "--bisection-steps", "6"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1 and doc["command"] == "radius"
    assert doc["settings"]["method"] == "crown" and doc["settings"]["norm"] == "2"
    s = doc["samples"]
    assert len(s) == 6
    for key in ("index", "label", "predicted", "certified_radius", "time_s"):
        assert all(key in r for r in s)
    assert s[0]["certified_radius"] == 0.0 and s[0]["label"] != s[0]["predicted"]
    assert all(r["certified_radius"] > 0 for r in s[1:])


def test_radius_several_methods_and_attack(tiny_model):
    tmp, model, w, data = tiny_model
    out = tmp / "r.json"
    rc = main(["radius", "--model", model, "--weights", w, "--data", data, "--method", "ibp,crown",
               "--target", "top2", "--attack", "--attack-steps", "20", "--attack-restarts", "1",
               "--json", str(out), "--quiet", "--bisection-steps", "6"])
    assert rc == 0
    doc = json.loads(out.read_text())
    for r in doc["samples"][1:]:
        by = r["certified_radius_by_method"]
        assert by["crown"] >= by["ibp"] - 1e-12
        assert r["attack_radius"] == "inf" or r["certified_radius"] <= r["attack_radius"]
        assert "target" in r


def test_certify_accuracy(tiny_model):
    tmp, model, w, data = tiny_model
    out = tmp / "c.json"
    rc = main(["certify", "--model", model, "--weights", w, "--data", data, "--eps", "0.001", "10",
               "--method", "fastlin", "--json", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads(out.read_text())
    acc = doc["summary"]["certified_accuracy"]
    assert acc["0.001"] >= acc["10.0"]
    assert acc["0.001"] <= 5 / 6 + 1e-12  # one sample is misclassified


def test_bad_inputs_exit_2_with_message(tiny_model, tmp_path, capsys):
    tmp, model, w, data = tiny_model
    assert main(["radius", "--model", str(tmp / "missing.py:make"), "--weights", w, "--data", data, "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["radius", "--model", model, "--weights", w, "--data", data, "--method", "nope", "--quiet"]) == 2
    assert "unknown method" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 6)), z=np.zeros(3))
    assert main(["radius", "--model", model, "--weights", w, "--data", str(bad), "--quiet"]) == 2
    assert "'x' and 'y'" in capsys.readouterr().err
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((3, 5)), y=np.zeros(3, dtype=int))
    assert main(["radius", "--model", model, "--weights", w, "--data", str(wrong), "--quiet"]) == 2
    assert "shape" in capsys.readouterr().err
