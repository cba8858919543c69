"""Usability contract (issue 17): --weights for factories, --method lists and the --methods alias, method
names in table headers, progress lines in logs, --log-json, --quiet, attack method choice."""
from __future__ import annotations

import json
import re

import pytest

from certnn.cli.main import main
from conftest import write_factory_model

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d certnn radius: ")


@pytest.fixture()
def tiny(tmp_path):
    return write_factory_model(
        tmp_path, "torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))", (5, 6))[1:]


def test_factory_without_weights_is_refused_unless_random_init(tiny, capsys):
    model, _, data = tiny
    assert main(["radius", "--model", model, "--data", data, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--weights" in err and "--random-init" in err and "Traceback" not in err
    assert main(["radius", "--model", model, "--data", data, "--random-init", "--quiet", "--bisection-steps", "2"]) == 0


def test_method_list_alias_and_headers_name_methods(tiny, capsys):
    model, w, data = tiny
    base = ["radius", "--model", model, "--weights", w, "--data", data, "--bisection-steps", "3", "--attack"]
    assert main(base + ["--methods", "crown,ibp"]) == 0  # hidden alias of --method
    out = capsys.readouterr().out
    assert "certified[crown]" in out and "certified[ibp]" in out and "attack[FMN]" in out
    assert "s / sample" in out


def test_progress_lines_when_stderr_is_not_a_terminal(tiny, capsys):
    model, w, data = tiny
    assert main(["radius", "--model", model, "--weights", w, "--data", data, "--bisection-steps", "3",
                 "--attack"]) == 0
    lines = capsys.readouterr().err.splitlines()
    stamped = [ln for ln in lines if STAMP.match(ln)]
    assert any("crown radius 0/5" in ln for ln in stamped)  # start line
    assert any("crown radius 5/5 (100%)" in ln and ln.endswith("done") for ln in stamped)
    assert any("attack radius (FMN)" in ln for ln in stamped)


def test_log_json_and_quiet(tiny, capsys):
    model, w, data = tiny
    args = ["radius", "--model", model, "--weights", w, "--data", data, "--bisection-steps", "3"]
    assert main(args + ["--log-json"]) == 0
    recs = [json.loads(ln) for ln in capsys.readouterr().err.splitlines() if ln.startswith("{")]
    assert recs and {r["event"] for r in recs} >= {"start", "end"}
    assert all(r["command"] == "radius" and "elapsed_s" in r for r in recs)
    assert main(args + ["--quiet"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""


@pytest.mark.parametrize("method", ["fmn", "pgd"])
def test_attack_command_method_choice(tiny, tmp_path, method):
    model, w, data = tiny
    out = tmp_path / "a.json"
    assert main(["attack", "--model", model, "--weights", w, "--data", data, "--attack-method", method,
                 "--steps", "20", "--restarts", "1", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["attack_method"] == method and doc["settings"]["steps"] == 20


def test_lipschitz_radius_runs(tiny):
    """Regression: the lipschitz baseline's radius search crashed on a missing violated-at record."""
    model, w, data = tiny
    assert main(["radius", "--model", model, "--weights", w, "--data", data, "--method", "lipschitz,crown",
                 "--quiet", "--bisection-steps", "2"]) == 0
