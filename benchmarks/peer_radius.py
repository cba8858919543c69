"""A peer's certified radius, found by certnn's own search driver (certify/radius_search.py: the same
doubling / halving bracket from eps_init and the same log-space bisection), so that a peer's radius and
certnn's are searched alike and differ only by the bounds. Used by alpha_vs_autolirpa.py --peer-radius with
auto_LiRPA's CROWN and CROWN-Optimized.

A sample is certified at eps when every margin lower bound the peer returns is > 0; eps is per sample.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from certnn.certify.radius_search import Bracket, bracket, shrink

#: lower(x, eps (B,), C) -> margin lower bounds (B, S) on the balls of radius eps around x
Lower = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def peer_radius(lower: Lower, x, C, eps_init: float = 0.01, steps: int = 10, bracket_steps: int = 30,
                eps_min: float = 1e-6, eps_max: float = 1e3):
    """(certified radius per sample, bound computations): certnn's bracket, then `steps` log-space
    bisection steps (the precision of certnn's RadiusConfig(bisection_steps=steps))."""
    n = x.shape[0]
    state = Bracket.empty(n)
    eps = torch.full((n,), float(eps_init), dtype=torch.float64)

    def evaluate(a, e):
        return (lower(x[a], e, C[a]) > 0).all(1).cpu(), None

    evals = bracket(state, eps, evaluate, bracket_steps, eps_min, eps_max)
    evals += shrink(state, evaluate, steps, True, "bisection")
    return state.lo, evals
