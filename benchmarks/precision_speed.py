"""CROWN cost and tightness by precision: float64 vs plain float32 vs float32-sound (issue 13), plus the
start-up time of `certnn --help` and the time to a first bound. CPU time (time.process_time), one thread.

    PYTHONPATH=src python benchmarks/precision_speed.py --widths 100 --depth 6 --batch 100 --reps 3

Writes a Markdown table to stdout (random weights: cost, not accuracy, is measured)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
from torch import nn


def _net(width: int, depth: int, d_in: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(d_in, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def _timed(fn, reps: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--d-in", type=int, default=784)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--eps", type=float, default=0.015)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import certnn

    model = _net(args.width, args.depth, args.d_in)
    x = torch.rand(args.batch, args.d_in, generator=torch.Generator().manual_seed(1))
    print(f"| precision | CPU s (best of {args.reps}) | mean lower bound | max widening vs float64 |")
    print("|---|---|---|---|")
    ref = None
    for dt in (torch.float64, "float32", "float32-sound"):
        t, iv = _timed(lambda: certnn.compute_bounds(model, x, eps=args.eps, method="crown", dtype=dt), args.reps)
        lo = iv.lower.double()
        ref = lo if ref is None else ref
        print(f"| {str(dt).replace('torch.', '')} | {t:.3f} | {lo.mean():.5g} | {(ref - lo).amax():.3g} |")
    print(f"\nnet: {args.depth} layers x {args.width} ReLU, input {args.d_in}, batch {args.batch}, eps {args.eps} "
          f"(L-inf), 1 thread")
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "src")}
    walls = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "certnn", "--help"], capture_output=True, env=env, check=True)
        walls.append(time.perf_counter() - t0)
    code = ("import time; t0=time.perf_counter(); import torch, certnn; m=torch.nn.Sequential(torch.nn.Linear(4,8),"
            "torch.nn.ReLU(),torch.nn.Linear(8,2)); certnn.compute_bounds(m, torch.rand(1,4), eps=0.1); "
            "print(time.perf_counter()-t0)")
    first = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                  check=True).stdout) for _ in range(3)]
    print(f"\n`certnn --help` wall: min {min(walls):.3f} s, median {sorted(walls)[2]:.3f} s (5 runs); "
          f"import + first CROWN bound on a 4-8-2 net in a fresh process: min {min(first):.2f} s (3 runs)")


if __name__ == "__main__":
    main()
