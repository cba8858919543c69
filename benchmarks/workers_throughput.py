"""Throughput of `certnn radius --method crown` in one process, with --workers 1 and --workers 2 (issue 14's
target: 2 workers >= 1.8x the throughput of 1 on 200 samples of a 2-core machine).

    # the full run (a quiet machine, ~10 min wall on 2 cores):
    PYTHONPATH=src python benchmarks/workers_throughput.py --samples 200 --md benchmarks/results/workers_throughput.md
    # a smoke run (about a minute):
    PYTHONPATH=src python benchmarks/workers_throughput.py --samples 12 --hidden 64

Protocol. A ReLU MLP 784-H-H-10 with seeded random weights (default H 200), N inputs uniform in [0, 1] with
their predicted class as label (every sample gets a full radius search: doubling, then 14 bisection steps),
L_inf, untargeted, float64. Each mode runs `python -m certnn radius ... --json` as a child process, so wall
time includes interpreter start-up, imports and model loading, as a user sees them; `cpu s` is the
children's CPU time (getrusage), all worker processes included. Modes: `one process` (the default path, torch's
default threads), `--workers 1` (tasks in the same process, checkpoint written), `--workers 2` (two spawned
worker processes, one torch thread each). The speed-up is the throughput of `--workers 2` over `--workers 1`
and over `one process`. The certified radii of all modes are compared (they must be identical).

`--ceiling` adds the machine's own limit, with no workers layer at all: `one process, 1 thread` on all N
samples, then `2 independent processes` (two plain one-process runs of N/2 samples each, started together,
OMP_NUM_THREADS=1 each). Their throughput ratio is the most any scale-out can get from the two cores (shared
caches, memory bandwidth and the host's scheduling of the two vCPUs included).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MODES = [("one process", []), ("--workers 1", ["--workers", "1"]), ("--workers 2", ["--workers", "2"])]


def make_inputs(folder: Path, n: int, hidden: int, seed: int) -> list[str]:
    src = folder / "mlp.py"
    src.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                   f"torch.nn.Linear(784, {hidden}), torch.nn.ReLU(), torch.nn.Linear({hidden}, {hidden}), "
                   f"torch.nn.ReLU(), torch.nn.Linear({hidden}, 10))\n")
    ns: dict = {}
    exec(src.read_text(), ns)
    torch.manual_seed(seed)
    model = ns["make"]()
    torch.save(model.state_dict(), folder / "w.pt")
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x).argmax(1)
    np.savez(folder / "d.npz", x=x.numpy(), y=y.numpy())
    return ["--model", f"{src}:make", "--weights", str(folder / "w.pt"), "--data", str(folder / "d.npz")]


def _cmd(inputs: list[str], extra: list[str], out: Path) -> list[str]:
    return [sys.executable, "-m", "certnn", "radius", "--method", "crown", *inputs, "--json", str(out), "--quiet",
            *extra]


def run_mode(inputs: list[str], extra: list[str], out: Path, threads: int | None = None) -> tuple[float, float]:
    env = {**os.environ} if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(_cmd(inputs, extra, out), check=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_pair(inputs: list[str], n: int, outs: list[Path]) -> tuple[float, float]:
    """Two independent one-process runs on the two halves of the data, started together, one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    halves = [["--start", "0", "--samples", str(n // 2)], ["--start", str(n // 2), "--samples", str(n - n // 2)]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(_cmd(inputs, h, o), env=env) for h, o in zip(halves, outs)]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("an independent run failed")
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--md", help="also write the table to this Markdown file")
    ap.add_argument("--ceiling", action="store_true", help="also measure two independent one-thread processes")
    a = ap.parse_args()
    rows, radii = [], {}
    with tempfile.TemporaryDirectory(prefix="certnn-bench-") as d:
        inputs = make_inputs(Path(d), a.samples, a.hidden, a.seed)
        for name, extra in MODES:
            out = Path(d) / f"{len(rows)}.json"
            wall, cpu = run_mode(inputs, extra, out)
            radii[name] = [s["certified_radius"] for s in json.loads(out.read_text())["samples"]]
            rows.append((name, wall, a.samples / wall, cpu))
        if a.ceiling:
            out = Path(d) / "single.json"
            wall, cpu = run_mode(inputs, [], out, threads=1)
            radii["one process, 1 thread"] = [s["certified_radius"] for s in json.loads(out.read_text())["samples"]]
            rows.append(("one process, 1 thread", wall, a.samples / wall, cpu))
            outs = [Path(d) / "h0.json", Path(d) / "h1.json"]
            wall, cpu = run_pair(inputs, a.samples, outs)
            radii["2 independent processes"] = [s["certified_radius"] for o in outs
                                                for s in json.loads(o.read_text())["samples"]]
            rows.append(("2 independent processes", wall, a.samples / wall, cpu))
    base = {r[0]: r[2] for r in rows}
    same = all(v == radii["one process"] for v in radii.values())
    lines = [f"workers throughput: crown radius, MLP 784-{a.hidden}-{a.hidden}-10, N = {a.samples}, "
             f"{os.cpu_count()} CPUs; radii identical across modes: {'yes' if same else 'NO'}", "",
             "| mode | wall s | samples / s | cpu s | vs --workers 1 | vs one process |", "|---|---|---|---|---|---|"]
    for name, wall, thr, cpu in rows:
        lines.append(f"| {name} | {wall:.1f} | {thr:.2f} | {cpu:.1f} | {thr / base['--workers 1']:.2f}x | "
                     f"{thr / base['one process']:.2f}x |")
    if a.ceiling:
        thr = {r[0]: r[2] for r in rows}
        lines += ["", f"ceiling (2 independent processes / one process, 1 thread): "
                  f"{thr['2 independent processes'] / thr['one process, 1 thread']:.2f}x; --workers 2 / "
                  f"one process, 1 thread: {thr['--workers 2'] / thr['one process, 1 thread']:.2f}x"]
    text = "\n".join(lines)
    print(text)
    if a.md:
        Path(a.md).parent.mkdir(parents=True, exist_ok=True)
        Path(a.md).write_text(text + "\n")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
