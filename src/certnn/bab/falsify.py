"""Counterexample search inside branch and bound: candidate points of sub-domains, and a short projected
gradient descent from them, in a root's input set (an Lp ball intersected with its box).

A candidate is only ever *proposed* here; `confirm` (the caller's, e.g. float32 rounding and onnxruntime
for VNN-LIB, or an exact float64 forward pass) decides whether it is a counterexample.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..attacks.projections import project_box_ball
from .driver import Problem


def row_values(fn: Callable[[Tensor], Tensor], problem: Problem, x: Tensor, root: Tensor) -> Tensor:
    """g = C f(x) - d (N, S) at points x (N, *in) of roots `root` (padding rows -inf)."""
    y = fn(x).reshape(x.shape[0], -1)
    g = torch.einsum("nsk,nk->ns", problem.C[root].reshape(x.shape[0], problem.C.shape[1], -1), y) - problem.d[root]
    return torch.where(torch.isfinite(problem.d[root]), g, torch.full_like(g, -math.inf))


def violation(fn, problem: Problem, x: Tensor, root: Tensor) -> Tensor:
    """(N,) the smallest over open conjunctions of the max over their rows of g: <= 0 means x violates the
    root's property (when x lies in the root's set)."""
    g = row_values(fn, problem, x, root)
    J = problem.open.shape[1]
    cm = g.new_full((x.shape[0], J + 1), -math.inf).scatter_reduce(1, problem.rowconj[root], g, "amax",
                                                                    include_self=True)[:, :J]
    return torch.where(problem.open[root], cm, torch.full_like(cm, math.inf)).amin(1)


def pgd(fn, problem: Problem, x: Tensor, root: Tensor, steps: int = 20) -> Tensor:
    """Projected sign-gradient descent on `violation` inside each root's set, from x; the best points."""
    spec = problem.spec.select(root)
    c = spec.center
    box = spec.box()
    lo, hi = box.lower - c, box.upper - c
    scale = torch.ones_like(c) if spec.scale is None else torch.broadcast_to(spec.scale, c.shape)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    step0 = (spec.eps.reshape((-1,) + (1,) * (c.dim() - 1)) * scale) * 0.25
    z = (x - c).detach()
    best_x, best_v = x.detach().clone(), violation(fn, problem, x, root).detach()
    for t in range(steps):
        z = z.detach().requires_grad_(True)
        v = violation(fn, problem, c + z, root)
        (gz,) = torch.autograd.grad(v.sum(), z)
        with torch.no_grad():
            better = v < best_v
            best_v = torch.where(better, v, best_v)
            best_x[better] = (c + z)[better]
            z = z - step0 * (0.02 ** (t / max(1, steps - 1))) * gz.sign()
            # the ball is in units of `scale`: project the scaled perturbation, frozen features stay 0
            w = project_box_ball(torch.where(scale > 0, z / safe, torch.zeros_like(z)), lo / safe, hi / safe,
                                 spec.eps, spec.norm)
            z = w * scale
    with torch.no_grad():
        v = violation(fn, problem, c + z, root)
        better = v < best_v
        best_x[better] = (c + z)[better]
    return best_x


def make_falsify(fn, problem: Problem, confirm: Callable[[Tensor, Tensor], Tensor] | None = None,
                 steps: int = 20, max_points: int = 64):
    """A `falsify(points, roots, strong)` for branch_and_bound: the points (and with strong, PGD from the
    `max_points` most violating of them) whose violation is <= 0 go to `confirm(x, roots) -> (N,) bool`
    (default: inside the set and violating, in this dtype); returns the confirmed roots."""
    def default_confirm(x: Tensor, root: Tensor) -> Tensor:
        inside = problem.spec.select(root).contains(x)
        return inside & (violation(fn, problem, x, root) <= 0)

    check = confirm or default_confirm

    def falsify(points: Tensor, root: Tensor, strong: bool) -> Tensor:
        with torch.no_grad():
            v = violation(fn, problem, points, root)
        if strong and points.shape[0]:
            k = torch.argsort(v)[:max_points]
            with torch.enable_grad():
                better = pgd(fn, problem, points[k], root[k], steps)
            points, root = torch.cat([points, better]), torch.cat([root, root[k]])
            with torch.no_grad():
                v = violation(fn, problem, points, root)
        cand = torch.nonzero(v <= 0).reshape(-1)
        if cand.numel() == 0:
            return cand
        ok = check(points[cand], root[cand])
        return torch.unique(root[cand][ok])

    return falsify
