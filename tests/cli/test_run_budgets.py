"""--timeout (undecided samples reported as such, finished ones kept) and --max-memory on radius / certify."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from certnn.cli.main import main


@pytest.fixture()
def tiny(tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "net.py"
    src.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), "
                   "torch.nn.Linear(16, 3))\n")
    ns: dict = {}
    exec(src.read_text(), ns)
    m = ns["make"]()
    torch.save(m.state_dict(), tmp_path / "w.pt")
    x = torch.rand(6, 6)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=m(x).argmax(1).numpy())
    return tmp_path, ["--model", f"{src}:make", "--weights", str(tmp_path / "w.pt"), "--data",
                      str(tmp_path / "d.npz"), "--quiet"]


def test_radius_timeout_reports_undecided(tiny):
    tmp, base = tiny
    out = tmp / "r.json"
    assert main(["radius", *base, "--timeout", "1e-9", "--batch-size", "2", "--bisection-steps", "3",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["undecided"] == 6
    assert all(s["undecided"] is True and s["certified_radius"] == 0.0 for s in doc["samples"])


def test_radius_generous_timeout_decides_all_and_matches(tiny):
    tmp, base = tiny
    a, b = tmp / "a.json", tmp / "b.json"
    assert main(["radius", *base, "--timeout", "600", "--batch-size", "2", "--bisection-steps", "3",
                 "--json", str(a)]) == 0
    assert main(["radius", *base, "--bisection-steps", "3", "--json", str(b)]) == 0
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert da["summary"]["undecided"] == 0 and not any("undecided" in s for s in da["samples"])
    assert [s["certified_radius"] for s in da["samples"]] == [s["certified_radius"] for s in db["samples"]]


def test_certify_timeout_counts_undecided(tiny):
    tmp, base = tiny
    out = tmp / "c.json"
    assert main(["certify", *base, "--eps", "0.01", "--timeout", "1e-9", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["undecided"] == {"0.01": 6}
    assert doc["summary"]["certified_accuracy"]["0.01"] == 0.0


def test_max_memory_same_radii_and_peak_recorded(tiny):
    tmp, base = tiny
    a, b = tmp / "a.json", tmp / "b.json"
    assert main(["radius", *base, "--bisection-steps", "3", "--json", str(a)]) == 0
    assert main(["radius", *base, "--bisection-steps", "3", "--max-memory", "100T", "--json", str(b)]) == 0
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert [s["certified_radius"] for s in da["samples"]] == [s["certified_radius"] for s in db["samples"]]
    assert da["environment"]["peak_rss_mb"] > 0 and db["settings"]["max_memory_mb"] == 100 * 2 ** 20


def test_max_memory_too_small_is_a_clear_error(tiny, capsys):
    _, base = tiny
    assert main(["radius", *base, "--max-memory", "1K"]) == 2
    err = capsys.readouterr().err
    assert "memory budget" in err and "raise --max-memory" in err and "Traceback" not in err
