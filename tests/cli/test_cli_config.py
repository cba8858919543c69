"""`certnn run FILE` and `--config FILE`: YAML / JSON files of a command's flags, validated before work."""
from __future__ import annotations

import json

import pytest

from certnn.cli.main import main
from conftest import write_factory_model


@pytest.fixture()
def setup(tmp_path):
    _, model, w, data = write_factory_model(
        tmp_path, "torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))", (4, 4))
    return tmp_path, {"model": model, "weights": w, "data": data}


def test_run_yaml_with_lists_switches_and_override(setup):
    tmp, base = setup
    out = tmp / "r.json"
    cfg = tmp / "radius.yaml"
    cfg.write_text("command: radius\n" + "".join(f"{k}: {v}\n" for k, v in base.items()) +
                   "norm: 2\nmethod: [crown, ibp]\nclip: [0, 1]\neps: [0.01, 0.1]\nbisection_steps: 3\n"
                   "attack: true\nquiet: true\neps-init: null\n" + f"json: {out}\n")
    assert main(["run", str(cfg), "--norm", "inf"]) == 0  # a flag after the file overrides it
    doc = json.loads(out.read_text())
    s = doc["settings"]
    assert s["methods"] == ["crown", "ibp"] and s["norm"] == "inf" and s["clip"] == [0.0, 1.0]
    assert s["eps"] == [0.01, 0.1] and s["attack"] is True and s["search"]["bisection_steps"] == 3


def test_config_flag_with_json(setup):
    tmp, base = setup
    out = tmp / "a.json"
    cfg = tmp / "attack.json"
    cfg.write_text(json.dumps({**base, "norm": "2", "steps": 10, "restarts": 1, "quiet": True}))
    assert main(["attack", "--config", str(cfg), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["steps"] == 10


@pytest.mark.parametrize("text,needle", [
    ("command: radius\nnorms: 2\n", "unknown key 'norms'"),
    ("command: radius\nattack: yes please\n", "attack is a switch"),
    ("command: radius\nnorm: [2\n", "not valid YAML"),
    ("norm: 2\n", "needs a key 'command'"),
    ("command: fly\n", "command 'fly' is not one of"),
    ("- radius\n", "must hold a mapping"),
])
def test_bad_files_exit_2_naming_the_problem(tmp_path, capsys, text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(cfg) in err and "Traceback" not in err


def test_bad_value_and_missing_file_exit_2(setup, capsys):
    tmp, base = setup
    cfg = tmp / "c.yaml"
    cfg.write_text("command: radius\n" + "".join(f"{k}: {v}\n" for k, v in base.items()) + "norm: 3\n")
    with pytest.raises(SystemExit) as e:  # argparse checks values: exit 2 with the flag's name
        main(["run", str(cfg)])
    assert e.value.code == 2 and "--norm" in capsys.readouterr().err
    assert main(["run", str(tmp / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["certify", "--config", str(cfg)]) == 2  # a radius file given to certify
    assert "configuration of `certnn radius`" in capsys.readouterr().err
