"""Falsification on boxes: projected sign-gradient descent on max_i (C_i f(x) - d_i) over lo <= x <= hi.

Used by VNN-LIB verification to look for counterexamples (points where C f(x) <= d in every row). A found
point is an attack, never a proof; the caller checks it with concrete forward passes. Batched over
problems and restarts: problem p has its own box (lo[p], hi[p]) and rows (C[p], d[p]); padding rows carry
d = +inf and never count.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["box_objective", "minimize_on_boxes"]


def box_objective(fn: Callable[[Tensor], Tensor], x: Tensor, C: Tensor, d: Tensor) -> Tensor:
    """max_i (C_i f(x) - d_i) per point. x (P, n) flat, C (P, S, K), d (P, S) -> (P,)."""
    y = fn(x).reshape(x.shape[0], -1)
    g = torch.einsum("psk,pk->ps", C, y) - d
    return g.amax(1)


def minimize_on_boxes(fn: Callable[[Tensor], Tensor], lo: Tensor, hi: Tensor, C: Tensor, d: Tensor,
                      steps: int = 50, restarts: int = 8, seed: int = 0,
                      start: Tensor | None = None, deadline: float | None = None) -> tuple[Tensor, Tensor]:
    """Best points (P, n) and their objective (P,) of `box_objective` found by PGD with restarts.

    fn maps flat inputs (N, n) to outputs (N, K); lo, hi (P, n). Restart 0 starts at `start` (or the box
    centre), the others uniformly at random; the step is (hi - lo) times a factor decaying from 0.25 to
    0.0025, so zero-width inputs never move. Every iterate is clamped to the box. Stops early at
    `deadline` (a time.perf_counter() value).
    """
    import time

    P, n = lo.shape
    R = max(1, restarts)
    g = torch.Generator(device=lo.device).manual_seed(seed)
    lo_r, hi_r = lo.repeat(R, 1), hi.repeat(R, 1)
    C_r, d_r = C.repeat(R, 1, 1), d.repeat(R, 1)
    width = hi_r - lo_r
    x = lo_r + width * torch.rand(lo_r.shape, generator=g, dtype=lo.dtype, device=lo.device)
    x[:P] = (lo + hi) / 2 if start is None else start.clamp(lo, hi)
    best_x = x.detach().clone()
    with torch.no_grad():
        best_v = box_objective(fn, x, C_r, d_r)
    for t in range(steps):
        if deadline is not None and time.perf_counter() > deadline:
            break
        x = x.detach().requires_grad_(True)
        v = box_objective(fn, x, C_r, d_r)
        (grad,) = torch.autograd.grad(v.sum(), x)
        with torch.no_grad():
            better = v < best_v
            best_v = torch.where(better, v, best_v)
            best_x[better] = x.detach()[better]
            frac = 0.25 * (0.01 ** (t / max(1, steps - 1)))
            x = torch.minimum(torch.maximum(x - frac * width * grad.sign(), lo_r), hi_r)
    with torch.no_grad():
        v = box_objective(fn, x, C_r, d_r)
        better = v < best_v
        best_v = torch.where(better, v, best_v)
        best_x[better] = x[better]
        vals = best_v.reshape(R, P)
        k = vals.argmin(0)
        idx = k * P + torch.arange(P, device=lo.device)
    return best_x[idx], vals.min(0).values
