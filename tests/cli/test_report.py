"""Issue 5: the report puts certified radii, attack radius and CLEVER side by side, checks
certified <= attack, counts CLEVER above attack, and writes JSON, Markdown and plots."""
from __future__ import annotations

import json

import pytest
import torch

import certnn
from certnn.cli.main import main
from certnn.estimate import CleverConfig
from certnn.report.build import build_report
from certnn.report.render import certified_accuracy_curve, write_report
from conftest import write_factory_model


@pytest.fixture()
def setup(tmp_path):
    return (tmp_path, *write_factory_model(
        tmp_path, "torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))", (5, 5)))


def test_report_cli_writes_everything(setup):
    tmp, _, model, w, data = setup
    out = tmp / "rep"
    rc = main(["report", "--model", model, "--weights", w, "--data", data, "--norm", "2", "--methods", "crown,ibp",
               "--clever", "--attack", "--clever-batches", "20", "--clever-samples", "32", "--out", str(out), "--quiet",
               "--bisection-steps", "6"])
    assert rc == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema_version"] == 1 and doc["command"] == "report"
    for s in doc["samples"]:
        by = s["certified_radius_by_method"]
        assert set(by) == {"crown", "ibp"}
        assert "attack_radius" in s and "clever_estimate" in s
        assert by["crown"] <= (float("inf") if s["attack_radius"] == "inf" else s["attack_radius"])
    assert "clever_above_attack" in doc["summary"] and doc["summary"]["violations"] == 0
    md = (out / "report.md").read_text()
    assert "proved lower bound" in md and "upper bound" in md and "estimate" in md
    for f in ("certified_accuracy.png", "radii.png", "time.png"):
        assert (out / f).stat().st_size > 1000


def test_violation_is_reported_and_exits_3(setup, monkeypatch):
    """A certified radius above an attack radius (simulated here by an attack that lies) must be
    reported as a bug and make the command fail."""
    tmp, _, model, w, data = setup
    import certnn.attacks as attacks

    real = attacks.attack_radius

    def lying(*a, **k):
        r = real(*a, **k)
        return type(r)(**{**r.__dict__, "radius": torch.full_like(r.radius, 1e-9)})

    monkeypatch.setattr(attacks, "attack_radius", lying)
    out = tmp / "rep2"
    rc = main(["report", "--model", model, "--weights", w, "--data", data, "--methods", "crown", "--attack",
               "--out", str(out), "--quiet", "--bisection-steps", "4"])
    assert rc == 3
    assert "BUG" in (out / "report.md").read_text()


def test_build_report_fields_and_curve(setup):
    _, m, *_ = setup
    x = torch.rand(4, 5, dtype=torch.float64)
    y = m.double()(x).argmax(1)
    g = certnn.from_torch(m, (5,))
    data = build_report(g, x, y, "inf", ["fastlin"], attack=False, clever=True,
                        clever_config=CleverConfig(n_batches=10, n_samples=16))
    assert data.attack_radius is None and data.clever_estimate is not None
    assert all("clever_estimate" in s.to_dict() and "attack_radius" not in s.to_dict() for s in data.samples)
    r = torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64)
    acc = certified_accuracy_curve(r, torch.tensor([0.0, 0.15, 0.35], dtype=torch.float64))
    assert torch.allclose(acc, torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))


def test_clever_and_attack_commands(setup):
    tmp, _, model, w, data = setup
    out = tmp / "c.json"
    assert main(["clever", "--model", model, "--weights", w, "--data", data, "--norm", "inf", "--batches", "10",
                 "--batch-samples", "16", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert all("clever_estimate" in s and "certified_radius" not in s for s in doc["samples"])
    out = tmp / "a.json"
    assert main(["attack", "--model", model, "--weights", w, "--data", data, "--norm", "2", "--steps", "20",
                 "--restarts", "1", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert all("attack_radius" in s and "certified_radius" not in s for s in doc["samples"])
