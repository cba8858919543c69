"""Timers of radius / certify (certify/profile.py): the JSON's summary.timers says where the time went, the
phases add up (nested ones inside their parents), and --profile prints the table."""
from __future__ import annotations

import json

from certnn.cli.main import main
from conftest import write_factory_model


def _tiny(tmp_path):
    _, model, w, data = write_factory_model(
        tmp_path, "torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), "
                  "torch.nn.ReLU(), torch.nn.Linear(16, 3))", (5, 6))
    return ["--model", model, "--weights", w, "--data", data]


def test_radius_timers_in_json_and_profile_table(tmp_path, capsys):
    base = _tiny(tmp_path)
    out = tmp_path / "r.json"
    assert main(["radius", *base, "--bisection-steps", "5", "--attack", "--attack-steps", "10", "--profile",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "time per phase" in printed and "search:bisection" in printed
    t = json.loads(out.read_text())["summary"]["timers"]
    sec, counts = t["seconds"], t["counts"]
    for key in ("load", "bounds", "intermediate", "final", "backward", "concretize", "search:bracket",
                "search:bisection", "attack"):
        assert sec[key] >= 0 and key in t["phases"]
    # the narrowing phase (named bisection, rule itp by default) takes at most 2 steps more than bisection
    assert 1 <= counts["bisection_steps"] <= 7
    assert counts["bound_calls"] == counts["bracket_steps"] + counts["bisection_steps"]
    assert counts["samples_bounded"] >= counts["bound_calls"]
    # nesting: the engine's phases lie inside the bound computations, which lie inside the search
    assert sec["intermediate"] + sec["final"] <= sec["bounds"] * 1.01 + 1e-3
    assert sec["backward"] + sec["concretize"] <= sec["intermediate"] + sec["final"] + 1e-3
    assert sec["bounds"] <= sec["search:bracket"] + sec["search:bisection"] + 1e-3


def test_certify_timers_and_several_methods(tmp_path):
    base = _tiny(tmp_path)
    out = tmp_path / "c.json"
    assert main(["certify", *base, "--eps", "0.01", "0.1", "--quiet", "--json", str(out)]) == 0
    t = json.loads(out.read_text())["summary"]["timers"]
    assert t["counts"]["bound_calls"] == 2 and "intermediate" in t["seconds"]
    out2 = tmp_path / "r2.json"
    assert main(["radius", *base, "--method", "crown,ibp", "--bisection-steps", "3", "--quiet",
                 "--json", str(out2)]) == 0
    sec = json.loads(out2.read_text())["summary"]["timers"]["seconds"]
    assert "crown/intermediate" in sec and "ibp/interval" in sec and "crown/bounds" in sec
