"""--workers / --address / --resume (docs/scaling.md): sharded runs give the single-process document,
a killed worker or Ctrl-C loses nothing, a resumed run recomputes no finished sample."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from certnn.cli.main import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def mlp(tmp_path):
    src = tmp_path / "net.py"
    src.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 16), "
                   "torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))\n")
    ns: dict = {}
    exec(src.read_text(), ns)
    torch.manual_seed(0)
    m = ns["make"]()
    torch.save(m.state_dict(), tmp_path / "w.pt")
    x = torch.rand(40, 2, 3)
    y = m(x).argmax(1)
    y[3] = (y[3] + 1) % 3  # a misclassified sample
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    return ["--model", f"{src}:make", "--weights", str(tmp_path / "w.pt"), "--data", str(tmp_path / "d.npz")]


def _strip_times(d):
    if isinstance(d, dict):
        return {k: _strip_times(v) for k, v in d.items() if "time" not in k and "seconds" not in k and k != "peak_rss_mb"}
    if isinstance(d, list):
        return [_strip_times(v) for v in d]
    return d


def _approx(d, keys: tuple[str, ...], rel: float):
    """`keys`' numbers replaced by pytest.approx (compared within rel); the rest stays exact."""
    if isinstance(d, dict):
        return {k: (pytest.approx(v, rel=rel) if k in keys and isinstance(v, float) else _approx(v, keys, rel))
                for k, v in d.items()}
    if isinstance(d, list):
        return [_approx(v, keys, rel) for v in d]
    return d


def _same_document(a: Path, b: Path, approx: tuple[str, ...] = ()) -> None:
    """Equal documents except for times; `approx` keys within float32 rounding (the attack's float32 steps
    sum in an order that depends on the batch's size, docs/scaling.md)."""
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert _strip_times(da) == _approx(_strip_times(db), approx, 1e-5)
    assert [s["index"] for s in db["samples"]] == sorted(s["index"] for s in db["samples"])


def _items(ckpt: Path) -> list[int]:
    lines = [json.loads(s) for s in ckpt.read_text().splitlines() if s.endswith("}")]
    return [e["index"] for e in lines if e["kind"] == "item"]


RADIUS = ["radius", "--method", "crown,ibp", "--eps", "0.02", "0.1", "--samples", "30", "--quiet"]


def test_radius_two_workers_equals_one_process(mlp, tmp_path):
    assert main(RADIUS + mlp + ["--json", str(tmp_path / "one.json")]) == 0
    assert main(RADIUS + mlp + ["--json", str(tmp_path / "two.json"), "--workers", "2", "--task-size", "4"]) == 0
    _same_document(tmp_path / "one.json", tmp_path / "two.json")
    assert sorted(_items(tmp_path / "two.json.ckpt.jsonl")) == list(range(30))
    # the checkpoint is not overwritten by accident
    assert main(RADIUS + mlp + ["--json", str(tmp_path / "two.json"), "--workers", "2"]) == 2


def test_certify_and_report_inline_worker_equal_one_process(mlp, tmp_path):
    cert = ["certify", "--eps", "0.02", "0.05", "--samples", "12", "--quiet"] + mlp
    assert main(cert + ["--json", str(tmp_path / "c1.json")]) == 0
    assert main(cert + ["--json", str(tmp_path / "c2.json"), "--workers", "1", "--task-size", "5"]) == 0
    _same_document(tmp_path / "c1.json", tmp_path / "c2.json")
    rep = ["report", "--methods", "crown,ibp", "--samples", "10", "--quiet"] + mlp
    assert main(rep + ["--out", str(tmp_path / "r1")]) == 0
    assert main(rep + ["--out", str(tmp_path / "r2"), "--workers", "1", "--task-size", "3"]) == 0
    _same_document(tmp_path / "r1" / "report.json", tmp_path / "r2" / "report.json")
    assert (tmp_path / "r2" / "report.md").exists() and (tmp_path / "r2" / "radii.png").exists()


def test_attack_and_clever_two_workers_equal_one_process(mlp, tmp_path):
    """FMN (the default attack) draws no random numbers; CLEVER's sampler and 'random' targets are keyed by
    (seed, global sample index): shards give the numbers of one process."""
    runs = {"attack": ["attack", "--samples", "9", "--target", "random", "--steps", "30", "--restarts", "2"],
            "radius": ["radius", "--samples", "9", "--target", "random", "--attack", "--attack-steps", "30"],
            "clever": ["clever", "--samples", "6", "--target", "random", "--batches", "5", "--batch-samples", "8"]}
    for name, argv in runs.items():
        one, two = tmp_path / f"{name}1.json", tmp_path / f"{name}2.json"
        assert main(argv + ["--quiet"] + mlp + ["--json", str(one)]) == 0
        assert main(argv + ["--quiet"] + mlp + ["--json", str(two), "--workers", "2", "--task-size", "2"]) == 0
        _same_document(one, two, approx=("attack_radius", "mean_attack_radius"))
    doc = json.loads((tmp_path / "radius1.json").read_text())
    assert any(s.get("attack_radius") is not None for s in doc["samples"])  # the attack was compared
    targets = [s["target"] for s in json.loads((tmp_path / "attack1.json").read_text())["samples"]]
    assert len(set(targets)) > 1  # 'random' targets vary from sample to sample


def test_random_targets_do_not_depend_on_the_batch(mlp, tmp_path):
    """--target random: a sample's class is drawn from (seed, its index), not from its place in a batch."""
    base = ["radius", "--method", "ibp", "--target", "random", "--quiet"] + mlp
    assert main(base + ["--samples", "12", "--json", str(tmp_path / "a.json")]) == 0
    assert main(base + ["--start", "5", "--samples", "4", "--batch-size", "3", "--json", str(tmp_path / "b.json")]) == 0
    ta = {s["index"]: s["target"] for s in json.loads((tmp_path / "a.json").read_text())["samples"]}
    tb = {s["index"]: s["target"] for s in json.loads((tmp_path / "b.json").read_text())["samples"]}
    assert tb == {i: ta[i] for i in range(5, 9)}


def test_address_without_ray_says_what_to_install(mlp, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    code = main(RADIUS + mlp + ["--json", str(tmp_path / "o.json"), "--address", "auto"])
    assert code == 2
    assert "pip install 'certnn[ray]'" in capsys.readouterr().err


def test_resume_needs_the_output(mlp, capsys):
    assert main(RADIUS + mlp + ["--resume"]) == 2
    assert "--json" in capsys.readouterr().err


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "certnn"] + args, env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_items(ckpt: Path, n: int, proc: subprocess.Popen, limit: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < limit and proc.poll() is None:
        if ckpt.exists() and len(_items(ckpt)) >= n:
            return
        time.sleep(0.05)
    pytest.fail(f"no {n} finished samples in {ckpt} (exit {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}")


def _worker_pids(parent: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmd:
            pids.append(int(d.name))
    return pids


SLOW = ["radius", "--method", "crown", "--bisection-steps", "25", "--eps-max", "10", "--samples", "16"]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds worker processes through /proc")
def test_killed_worker_every_sample_completes(mlp, tmp_path):
    out = tmp_path / "k.json"
    proc = _start(SLOW + mlp + ["--json", str(out), "--workers", "2", "--task-size", "1"])
    _wait_items(out.with_name("k.json.ckpt.jsonl"), 2, proc)
    victims = _worker_pids(proc.pid)
    assert victims, "no worker process found"
    os.kill(victims[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert main(SLOW + mlp + ["--json", str(tmp_path / "one.json"), "--quiet"]) == 0
    _same_document(tmp_path / "one.json", out)
    assert "failed" not in json.loads(out.read_text())["summary"]


def test_ctrl_c_then_resume_recomputes_nothing(mlp, tmp_path):
    out = tmp_path / "i.json"
    ckpt = out.with_name("i.json.ckpt.jsonl")
    proc = _start(SLOW + mlp + ["--json", str(out), "--workers", "2", "--task-size", "1"])
    _wait_items(ckpt, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and not out.exists()
    before = _items(ckpt)
    assert len(before) == len(set(before)) >= 3
    assert main(SLOW + mlp + ["--json", str(out), "--workers", "2", "--task-size", "1", "--resume", "--quiet"]) == 0
    after = _items(ckpt)
    assert after[:len(before)] == before
    assert sorted(after) == list(range(16))  # each sample exactly once: nothing finished was recomputed
    assert main(SLOW + mlp + ["--json", str(tmp_path / "one.json"), "--quiet"]) == 0
    _same_document(tmp_path / "one.json", out)


@pytest.mark.slow  # starting Ray takes 10-20 s
def test_ray_local_equals_one_process(mlp, tmp_path):
    pytest.importorskip("ray")
    args = RADIUS + mlp
    assert main(args + ["--json", str(tmp_path / "one.json")]) == 0
    assert main(args + ["--json", str(tmp_path / "ray.json"), "--address", "local", "--workers", "2"]) == 0
    _same_document(tmp_path / "one.json", tmp_path / "ray.json")



def test_workers_share_the_memory_budget(mlp, tmp_path, monkeypatch):
    """--max-memory is the whole run's budget: each of N local worker processes plans within SIZE / N
    (the document records the run's budget, as one process would)."""
    import argparse

    from certnn.cli import budgets

    assert budgets.budget_bytes(argparse.Namespace(max_memory="3000M", memory_share=2)) == 1500 * 2 ** 20
    seen = []
    real = budgets.budget_bytes
    monkeypatch.setattr(budgets, "budget_bytes", lambda a: seen.append(real(a)) or seen[-1])
    argv = RADIUS[:] + mlp + ["--max-memory", "3000M", "--samples", "6"]
    assert main(argv + ["--json", str(tmp_path / "one.json"), "--workers", "1"]) == 0
    assert seen and set(seen) == {3000 * 2 ** 20}
    assert main(argv + ["--json", str(tmp_path / "two.json"), "--workers", "2", "--task-size", "3"]) == 0
    seen.clear()
    from certnn.cli import allocator
    from certnn.cli.sharded import run_slice

    tuned = []  # a worker process runs no certnn main: each task keeps freed memory as the command does
    monkeypatch.setattr(allocator, "tune_allocator", lambda: tuned.append(1) or True)

    recs = run_slice({"command": "radius", "argv": argv + ["--json", str(tmp_path / "w.json")], "memory_share": 2},
                     (0, 1, 2))  # what a worker process of --workers 2 runs
    assert [r["index"] for r in recs] == [0, 1, 2] and set(seen) == {1500 * 2 ** 20}
    assert recs[0]["settings"]["max_memory_mb"] == 3000.0 and tuned
    for f in ("one.json", "two.json"):
        assert json.loads((tmp_path / f).read_text())["settings"]["max_memory_mb"] == 3000.0
