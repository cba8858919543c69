"""--timeout (undecided samples reported as such, finished ones kept) and --max-memory on radius / certify."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from certnn.cli.main import main
from conftest import write_factory_model


@pytest.fixture()
def tiny(tmp_path):
    _, model, w, data = write_factory_model(
        tmp_path, "torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))", (6, 6))
    return tmp_path, ["--model", model, "--weights", w, "--data", data, "--quiet"]


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


def test_report_timeout_reports_undecided(tiny):
    tmp, base = tiny
    out = tmp / "rep"
    assert main(["report", *base, "--methods", "crown,ibp", "--attack", "--timeout", "1e-9", "--batch-size", "2",
                 "--bisection-steps", "3", "--out", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["summary"]["undecided"] == 6 and doc["summary"]["undecided_attack"] == 6
    assert doc["summary"]["correct"] == 0 and doc["summary"]["violations"] == 0
    assert all(s["undecided"] is True and s["attack_undecided"] is True and "attack_radius" not in s
               for s in doc["samples"])
    assert "6 samples undecided" in (out / "report.md").read_text()


def test_report_generous_timeout_matches_unbudgeted(tiny):
    tmp, base = tiny
    a, b = tmp / "a", tmp / "b"
    common = ["report", *base, "--methods", "crown,ibp", "--attack", "--clever", "--clever-batches", "5",
              "--clever-samples", "16", "--bisection-steps", "3", "--batch-size", "6"]
    assert main([*common, "--timeout", "600", "--out", str(a)]) == 0
    assert main([*common, "--out", str(b)]) == 0
    da, db = (json.loads((p / "report.json").read_text()) for p in (a, b))
    assert da["summary"]["undecided"] == 0 and not any("undecided" in k for s in da["samples"] for k in s)
    keys = ("certified_radius_by_method", "attack_radius", "clever_estimate")
    assert [[s[k] for k in keys] for s in da["samples"]] == [[s[k] for k in keys] for s in db["samples"]]


def test_report_deadline_mid_run_keeps_finished_batches(tiny, monkeypatch):
    """The clock passes the deadline after the first batch of each stage's first check: batch 0 of the
    first method is decided (same radii as an unbudgeted run), every later batch is undecided."""
    import importlib
    import types

    dl = importlib.import_module("certnn.certify.deadline")
    from certnn.certify.bounds import to_graph
    from certnn.report.build import build_report

    tmp, _ = tiny
    ns: dict = {}
    exec((tmp / "net.py").read_text(), ns)
    m = ns["make"]()
    m.load_state_dict(torch.load(tmp / "w.pt"))
    d = np.load(tmp / "d.npz")
    x, y = torch.tensor(d["x"]), torch.tensor(d["y"])
    g = to_graph(m, (6,))
    kw = dict(norm="inf", methods=["crown"], attack=True, clever=False, batch_size=2)
    ref = build_report(g, x, y, **kw)
    ticks = iter(range(100))
    monkeypatch.setattr(dl, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    got = build_report(g, x, y, deadline=1.0, **kw)
    dec = [not s.extra.get("undecided") for s in got.samples]
    assert dec == [True, True, False, False, False, False]
    assert got.summary["undecided"] == 4 and got.summary["undecided_attack"] == 6
    assert torch.equal(got.radii["crown"][:2], ref.radii["crown"][:2])
    assert all(s.attack_radius is None for s in got.samples) and not got.violations
