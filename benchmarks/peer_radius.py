"""auto_LiRPA's certified radius, found by certnn's own search driver (certify/radius_search.py: the same
doubling / halving bracket from eps_init and the same log-space bisection), so that a peer's radius and
certnn's are searched alike and differ only by the bounds. Used by alpha_vs_autolirpa.py --peer-radius.

A sample is certified at eps when every margin lower bound (rows of C) is > 0 on the L_inf ball of radius eps
(intersected with the clip box, when given); eps is per sample (auto_LiRPA takes per-sample x_L / x_U).
"""
from __future__ import annotations

import contextlib
import io

import torch
from auto_LiRPA import BoundedTensor
from auto_LiRPA.perturbations import PerturbationLpNorm

from certnn.certify.radius_search import Bracket, bracket, shrink


@contextlib.contextmanager
def _default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def alirpa_lower_eps(bm, x, eps, C, clip, method: str):
    """auto_LiRPA's margin lower bounds (B, S) on per-sample L_inf balls of radius eps (B,)."""
    e = eps.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    lo, hi = x - e, x + e
    if clip is not None:
        lo, hi = lo.clamp(min=clip[0]), hi.clamp(max=clip[1])
    ptb = PerturbationLpNorm(norm=float("inf"), x_L=lo, x_U=hi)
    grad = contextlib.nullcontext() if method == "CROWN-Optimized" else torch.no_grad()
    # auto_LiRPA's optimiser allocates its best-so-far buffers in the default dtype
    with _default_dtype(x.dtype), grad, contextlib.redirect_stdout(io.StringIO()):  # it prints its early stops
        lb, _ = bm.compute_bounds(x=(BoundedTensor(x, ptb),), C=C.to(x.dtype), method=method, bound_upper=False)
    return lb.detach()


def alirpa_radius(bm, method: str, x, C, clip=None, eps_init: float = 0.01, steps: int = 10,
                  bracket_steps: int = 30, eps_min: float = 1e-6, eps_max: float = 1e3):
    """(certified radius per sample, bound computations): certnn's bracket, then `steps` log-space
    bisection steps (the precision of certnn's RadiusConfig(bisection_steps=steps))."""
    n = x.shape[0]
    state = Bracket.empty(n)
    eps = torch.full((n,), float(eps_init), dtype=torch.float64)

    def evaluate(a, e):
        lb = alirpa_lower_eps(bm, x[a], e, C[a], clip, method)
        return (lb > 0).all(1).cpu(), None

    evals = bracket(state, eps, evaluate, bracket_steps, eps_min, eps_max)
    evals += shrink(state, evaluate, steps, True, "bisection")
    return state.lo, evals
