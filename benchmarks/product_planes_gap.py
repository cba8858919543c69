"""Mean gap (upper - lower plane, averaged over a 41 x 41 grid of the box) of the product planes.

Compares mode 'certrnn' (parallel planes) with 'popqorn' (separate planes) and, for reference, the exact
interval of F on the box (constant planes). Boxes: both sides uniform in [-s, s], for several s.

    PYTHONPATH=src python benchmarks/product_planes_gap.py [--n 2000] [--seed 0]
"""
from __future__ import annotations

import argparse
import time

import torch

from certnn.relax.product_fns import SIGMOID_MUL, SIGMOID_TANH
from certnn.relax.products import sigmoid_mul_planes, sigmoid_tanh_planes


def random_boxes(n: int, scale: float, g: torch.Generator):
    r = lambda: (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * scale  # noqa: E731
    a, b, c, d = r(), r(), r(), r()
    return torch.minimum(a, b), torch.maximum(a, b), torch.minimum(c, d), torch.maximum(c, d)


def grid_gap(rel, lx, ux, ly, uy, k: int = 41) -> torch.Tensor:
    t = torch.linspace(0, 1, k, dtype=lx.dtype)
    X = (lx[:, None, None] + (ux - lx)[:, None, None] * t[None, :, None]).expand(-1, k, k)
    Y = (ly[:, None, None] + (uy - ly)[:, None, None] * t[None, None, :]).expand(-1, k, k)
    s = lambda v: v[:, None, None]  # noqa: E731
    lo = s(rel.lower_a) * X + s(rel.lower_b) * Y + s(rel.lower_c)
    hi = s(rel.upper_a) * X + s(rel.upper_b) * Y + s(rel.upper_c)
    return (hi - lo).mean(dim=(1, 2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    print("| product | box scale s | interval | certrnn | popqorn | popqorn/certrnn | t certrnn | t popqorn |")
    print("|---|---|---|---|---|---|---|---|")
    for fn, planes in ((SIGMOID_TANH, sigmoid_tanh_planes), (SIGMOID_MUL, sigmoid_mul_planes)):
        for scale in (0.5, 2.0, 5.0, 20.0):
            box = random_boxes(args.n, scale, g)
            zero = torch.zeros_like(box[0])
            e = fn.extremes(zero, zero, *box)
            interval = (e.hi - e.lo).mean().item()
            t0 = time.perf_counter(); rc = planes(*box, mode="certrnn"); tc = time.perf_counter() - t0
            t0 = time.perf_counter(); rp = planes(*box, mode="popqorn"); tp = time.perf_counter() - t0
            gc, gp = grid_gap(rc, *box).mean().item(), grid_gap(rp, *box).mean().item()
            print(f"| {fn.name} | {scale:g} | {interval:.4f} | {gc:.4f} | {gp:.4f} | {gp / gc:.3f} "
                  f"| {tc:.2f}s | {tp:.2f}s |")


if __name__ == "__main__":
    main()
