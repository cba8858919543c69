"""The certified radius search of certify/radius.py: bracket each sample's radius, then shrink the bracket.

Bracketing doubles eps up from `eps_init` while it is certified (halves it down while it is not) until each
sample has a certified `lo` and a failed `hi`. Shrinking then narrows [lo, hi] to the precision that
`bisection_steps` halvings of the bracket's gap give (in log space by default, as CNN-Cert does), one batched
bound computation per step with a per-sample eps:

* ``bisection``: the midpoint every step (exactly `bisection_steps` steps);
* ``itp`` (default): the ITP rule (Oliveira and Takahashi, ACM TOMS 2021) on the margin lower bounds the
  evaluations return: the root of the margin estimated from the last evaluations (inverse quadratic
  interpolation, else the secant of lo and hi), moved toward the midpoint by a
  truncation that shrinks with the bracket, and projected into a band around the midpoint that guarantees at
  most two steps more than bisection on any sample. The margin bound is close to linear in eps over a small
  bracket, so most samples reach the precision in about half of bisection's steps (docs/benchmarks.md).

Either way the radius is the largest eps actually certified; only the choice of the next eps differs.
Searches whose steps return no usable margin bisect (certify/radius.py: complete certification gives a verdict,
not a bound; alpha-crown stops optimising a sample as soon as its bound is positive, so its certified margins
are near 0 whatever the distance to the radius: measured, ITP saved no time there).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: certified_at(active indices, eps of those) -> (certified (bool), min margin lower bound or None)
Evaluate = Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]]

STRATEGIES = ("itp", "bisection")
_N0 = 2  # ITP's slack: at most this many steps more than bisection
_KAPPA = 0.05  # truncation size, relative to the bracket's first gap


@dataclass
class Bracket:
    """Per-sample search state: lo certified (0: none yet), hi failed (inf: none yet), their margin lower
    bounds, and the end the last move replaced (c, its margin m_c: a third point for the interpolation)."""

    lo: Tensor
    hi: Tensor
    m_lo: Tensor
    m_hi: Tensor
    c: Tensor
    m_c: Tensor

    @classmethod
    def empty(cls, n: int) -> "Bracket":
        f64 = dict(dtype=torch.float64)
        nan = torch.full((n,), math.nan, **f64)
        return cls(torch.zeros(n, **f64), torch.full((n,), math.inf, **f64), nan, nan.clone(), nan.clone(),
                   nan.clone())

    def record(self, a: Tensor, eps: Tensor, ok: Tensor, margin: Tensor | None) -> None:
        """The result of one evaluation of the samples ``a`` at ``eps``."""
        # margins rounded to float32: they only steer the next eps, and a batch's composition moves float64
        # bounds by a few ulps, which must not change the radii (a worker's batch = one process's)
        m = torch.full_like(eps, math.nan) if margin is None else margin.to(torch.float32).to(torch.float64)
        up = ok & (eps > self.lo[a])
        down = ~ok & (eps < self.hi[a])
        self.c[a[up]], self.m_c[a[up]] = self.lo[a[up]], self.m_lo[a[up]]
        self.c[a[down]], self.m_c[a[down]] = self.hi[a[down]], self.m_hi[a[down]]
        self.lo[a[up]], self.m_lo[a[up]] = eps[up], m[up]
        self.hi[a[down]], self.m_hi[a[down]] = eps[down], m[down]

    def open(self) -> Tensor:
        return (self.lo > 0) & torch.isfinite(self.hi)


def bracket(state: Bracket, eps: Tensor, evaluate: Evaluate, steps: int, eps_min: float, eps_max: float) -> int:
    """Doubling / halving from ``eps`` until every sample has both ends (or left [eps_min, eps_max])."""
    evals = 0
    for _ in range(steps):
        active = ((state.hi == math.inf) | (state.lo == 0)) & (eps >= eps_min) & (eps <= eps_max)
        if not active.any():
            break
        a = torch.nonzero(active).flatten()
        ok, margin = evaluate(a, eps[a])
        evals += 1
        state.record(a, eps[a], ok, margin)
        grow = a[ok & (state.hi[a] == math.inf)]
        shrink = a[~ok & (state.lo[a] == 0)]
        eps[grow] = eps[grow] * 2
        eps[shrink] = eps[shrink] / 2
    return evals


def shrink(state: Bracket, evaluate: Evaluate, steps: int, log_space: bool, strategy: str,
           tol: Tensor | None = None) -> int:
    """Narrows every open bracket to its gap / 2**steps (in the search coordinate), or to half-width `tol`
    per sample where given (certify/staged_search.py); returns evaluations."""
    fwd, inv = (torch.log, torch.exp) if log_space else ((lambda v: v), (lambda v: v))
    if tol is None:
        tol = (fwd(state.hi) - fwd(state.lo)) / 2 ** (steps + 1)  # half-width reached by `steps` bisections
    kappa = _KAPPA / (2 * tol * 2 ** steps)  # _KAPPA / first gap
    n_max = max_steps(steps, strategy)
    evals = 0
    for j in range(n_max):
        a = torch.nonzero(state.open() & (fwd(state.hi) - fwd(state.lo) > 2 * tol * (1 + 1e-9))).flatten()
        if a.numel() == 0:
            break
        u_lo, u_hi = fwd(state.lo[a]), fwd(state.hi[a])
        if strategy == "itp":
            u = itp_point(u_lo, u_hi, fwd(_root_estimate(state, a)), tol[a], kappa[a], n_max - j)
        else:
            u = (u_lo + u_hi) / 2
        mid = inv(u).clamp(min=state.lo[a], max=state.hi[a])
        ok, margin = evaluate(a, mid)
        evals += 1
        state.record(a, mid, ok, margin)
    return evals


def max_steps(steps: int, strategy: str) -> int:
    """The most narrowing steps a sample can take (itp: bisection's plus a fixed slack)."""
    return steps + (_N0 if strategy == "itp" else 0)


def _root_estimate(state: Bracket, a: Tensor) -> Tensor:
    """Where the margin bound is estimated to cross 0 in (lo, hi): inverse quadratic interpolation through
    lo, hi and the third point c where it is defined and lands inside, else the secant of lo and hi; NaN where
    neither is defined (e.g. no margins)."""
    lo, hi, c, f_lo, f_hi, f_c = (v[a] for v in (state.lo, state.hi, state.c, state.m_lo, state.m_hi, state.m_c))
    secant = (hi * f_lo - lo * f_hi) / (f_lo - f_hi)
    quad = (lo * f_hi * f_c / ((f_lo - f_hi) * (f_lo - f_c)) + hi * f_lo * f_c / ((f_hi - f_lo) * (f_hi - f_c))
            + c * f_lo * f_hi / ((f_c - f_lo) * (f_c - f_hi)))
    root = torch.where(torch.isfinite(quad) & (quad > lo) & (quad < hi), quad, secant)
    usable = torch.isfinite(root) & (f_lo > 0) & (f_hi < 0)
    return torch.where(usable, root, torch.full_like(root, math.nan))


def itp_point(u_lo: Tensor, u_hi: Tensor, u_secant: Tensor, tol: Tensor, kappa: Tensor, left: int) -> Tensor:
    """ITP's next point in [u_lo, u_hi] (the search coordinate): the secant root ``u_secant`` truncated
    toward the midpoint by kappa * gap**2 and projected into the band of half-width
    r = tol * 2**left - gap / 2 around it (``left``: steps left of the worst case); the midpoint where the
    secant is undefined (NaN)."""
    half = (u_lo + u_hi) / 2
    gap = u_hi - u_lo
    # at least tol inside either end (Dekker's rule): an estimate next to an end moves that end by tol, and
    # the bracket closes once the estimate is within tol of the root
    xf = torch.where(torch.isfinite(u_secant), torch.minimum(torch.maximum(u_secant, u_lo + tol), u_hi - tol), half)
    sigma = torch.sign(half - xf)
    delta = kappa * gap ** 2
    xt = torch.where(delta <= (half - xf).abs(), xf + sigma * delta, half)
    r = (tol * 2.0 ** left - gap / 2).clamp(min=0)
    return torch.where((xt - half).abs() <= r, xt, half - sigma * r)
