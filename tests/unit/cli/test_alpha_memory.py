"""cli/alpha_memory.py: alpha-CROWN's batch cut to what the memory budget holds, from a measured probe; a
clear error before any bound where one sample does not fit; same certificates at the cut batch."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch

from certnn.certify.radius import Certifier, CertifyConfig
from certnn.cli import alpha_memory
from certnn.cli.main import main
from certnn.engine.memory import ChunkPlan, MemoryBudgetError

MB = 2 ** 20


def _net():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 3)).double()


@pytest.fixture(autouse=True)
def _always_probe(monkeypatch):
    """The tests' nets are small enough to skip the probe (_surely_fits): make every one a candidate."""
    monkeypatch.setattr(alpha_memory, "SURE_FACTOR", 10 ** 12)


def _plan(available: int) -> ChunkPlan:
    return ChunkPlan(32, 4096, 1, available, available)


def _fake_rise(monkeypatch, nbytes: int) -> list:
    calls = []

    def rise(fn):
        fn()
        calls.append(1)
        return nbytes
    monkeypatch.setattr(alpha_memory, "peak_rise", rise)
    return calls


def test_peak_rise_sees_an_allocation():
    if not sys.platform.startswith("linux"):
        pytest.skip("the peak resident size is read from /proc")

    def work():
        t = torch.ones(50 * 2 ** 20)  # 200 MB, touched
        assert float(t[-1]) == 1.0
    rise = alpha_memory.peak_rise(work)
    if rise is None:
        pytest.skip("this kernel does not let a process reset its peak resident size")
    assert 150 * MB <= rise <= 600 * MB


def test_batch_cut_to_the_room_and_recorded(monkeypatch):
    calls = _fake_rise(monkeypatch, 100 * MB)  # 2 samples: 50 MB each, 75 MB with the margin
    cert = Certifier(_net(), CertifyConfig(method="alpha-crown", batch_size=32), (6,))
    args = types.SimpleNamespace(memory_settings={"batch_size_used": 32})
    x, y = torch.rand(10, 6), torch.zeros(10, dtype=torch.long)
    alpha_memory.fit_alpha_batch(args, cert, x, y, 0.01, _plan(300 * MB))
    assert calls == [1]
    assert cert.config.batch_size == 4 and cert.config.method == "alpha-crown"
    assert cert.config.alpha.iterations == 20  # the probe's own 2 iterations stay the probe's
    assert args.memory_settings["batch_size_used"] == 4
    assert args.memory_settings["alpha_mb_per_sample"] == pytest.approx(75.0)


def test_batch_kept_when_it_fits_and_no_probe_for_other_methods(monkeypatch):
    calls = _fake_rise(monkeypatch, 2 * MB)
    x, y = torch.rand(10, 6), torch.zeros(10, dtype=torch.long)
    cert = Certifier(_net(), CertifyConfig(method="alpha-crown", batch_size=8), (6,))
    alpha_memory.fit_alpha_batch(types.SimpleNamespace(), cert, x, y, 0.01, _plan(300 * MB))
    assert cert.config.batch_size == 8 and calls == [1]
    crown = Certifier(_net(), CertifyConfig(method="crown", batch_size=8), (6,))
    alpha_memory.fit_alpha_batch(types.SimpleNamespace(), crown, x, y, 0.01, _plan(1))
    assert crown.config.batch_size == 8 and calls == [1]


def test_one_sample_not_fitting_is_a_clear_error(monkeypatch):
    _fake_rise(monkeypatch, 400 * MB)
    cert = Certifier(_net(), CertifyConfig(method="alpha-crown", batch_size=8), (6,))
    x, y = torch.rand(4, 6), torch.zeros(4, dtype=torch.long)
    with pytest.raises(MemoryBudgetError, match=r"alpha-crown needs about 300 MB per sample.*raise --max-memory"):
        alpha_memory.fit_alpha_batch(types.SimpleNamespace(), cert, x, y, 0.01, _plan(100 * MB))


@pytest.fixture()
def files(tmp_path):
    src = tmp_path / "net.py"
    src.write_text("import torch\n\ndef make():\n    torch.manual_seed(3)\n    return torch.nn.Sequential("
                   "torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(), "
                   "torch.nn.Linear(16, 3))\n")
    ns: dict = {}
    exec(src.read_text(), ns)
    m = ns["make"]()
    torch.save(m.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(1)
    x = torch.rand(7, 6)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=m(x).argmax(1).numpy())
    return tmp_path, ["--model", f"{src}:make", "--weights", str(tmp_path / "w.pt"), "--data",
                      str(tmp_path / "d.npz"), "--quiet", "--method", "alpha-crown", "--alpha-iterations", "5"]


def test_cli_certify_cut_batch_same_verdicts(files, monkeypatch):
    tmp, base = files
    a, b = tmp / "a.json", tmp / "b.json"
    assert main(["certify", *base, "--eps", "0.05", "--batch-size", "7", "--json", str(a)]) == 0
    _fake_rise(monkeypatch, 20 * 2 ** 30)  # 15 GB per sample with the margin: 3 of them in ~47 GB of room
    assert main(["certify", *base, "--eps", "0.05", "--batch-size", "7", "--max-memory", "64G",
                 "--json", str(b)]) == 0
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert da["settings"]["batch_size_used"] == 7 and db["settings"]["batch_size_used"] < 7
    assert db["settings"]["alpha_mb_per_sample"] == pytest.approx(15 * 1024)
    if sys.platform.startswith("linux") and "alpha_mb_per_sample" in da["settings"]:
        assert da["settings"]["alpha_mb_per_sample"] >= 0  # the real probe ran
    key = lambda d: [(s["index"], s["certified"]) for s in d["samples"]]  # noqa: E731
    assert key(da) == key(db)


def test_cli_radius_refuses_before_any_bound(files, monkeypatch, capsys):
    _, base = files
    _fake_rise(monkeypatch, 200 * 2 ** 30)
    assert main(["radius", *base, "--batch-size", "4", "--max-memory", "64G"]) == 2
    err = capsys.readouterr().err
    assert "per sample" in err and "raise --max-memory" in err and "Traceback" not in err


def test_cli_report_cuts_the_batch_of_every_method(files, monkeypatch):
    tmp, base = files
    base = [a for a in base if a not in ("--method", "alpha-crown")]
    _fake_rise(monkeypatch, 20 * 2 ** 30)
    out = tmp / "rep"
    assert main(["report", *base, "--methods", "crown,alpha-crown", "--batch-size", "7", "--bisection-steps", "3",
                 "--max-memory", "64G", "--out", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["settings"]["batch_size_used"] < 7
    assert doc["settings"]["alpha_mb_per_sample"] == pytest.approx(15 * 1024)
    r = {m: [s["certified_radius_by_method"][m] for s in doc["samples"]] for m in ("crown", "alpha-crown")}
    assert all(a >= c for a, c in zip(r["alpha-crown"], r["crown"]))


def test_small_models_are_not_probed(monkeypatch):
    monkeypatch.setattr(alpha_memory, "SURE_FACTOR", 64)
    calls = _fake_rise(monkeypatch, 4 * MB)  # 3 MB per sample with the margin
    x, y = torch.rand(10, 6), torch.zeros(10, dtype=torch.long)
    cert = Certifier(_net(), CertifyConfig(method="alpha-crown", batch_size=8), (6,))  # 6-16-16-16-16-3
    alpha_memory.fit_alpha_batch(types.SimpleNamespace(), cert, x, y, 0.01, _plan(300 * MB))
    assert calls == [] and cert.config.batch_size == 8
    alpha_memory.fit_alpha_batch(types.SimpleNamespace(), cert, x, y, 0.01, _plan(10 * MB))  # tight room
    assert calls == [1] and cert.config.batch_size == 3
