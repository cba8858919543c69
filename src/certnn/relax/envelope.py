"""CROWN's tangent points of S-shaped envelopes by safeguarded Newton iteration (relax/sshape.py).

Where l < 0 < u, the lower convex envelope of an S-shaped f on [l, u] (:func:`certnn.relax.sshape.
lower_envelope_point`) follows f up to the root d <= 0 of

    h(d) = f(d) + f'(d) (u - d) - f(u)          (the tangent at d passes through (u, f(u))).

In s = log1p(-d) >= 0 (relative precision for |l| up to 1e8) the function

    g(s) = -h(-expm1(s)) = f(u) - f(d) - f'(d) (u - d),     g'(s) = f''(d) (u - d) e^s,

is increasing (f'' > 0 on d < 0), g(0) <= 0, and the root lies in [0, s_max], s_max = log1p(-l), wherever
g(s_max) > 0 (elsewhere the envelope is the chord and d does not matter).

Method (rtsafe): every iterate s updates a bracket [lo, hi] with g(lo) <= 0 < g(hi); the next iterate is
the Newton step s - g/g' where it lands strictly inside the bracket, else the bracket's midpoint. An
element stops (and keeps its s) once its step is below sqrt(ulp) of s (quadratic convergence: the step
just taken leaves s within ~ulps of the root) or its bracket is narrower than a 42-step
bisection's (s_max 2^-42), so its result does not depend on the other elements; the loop ends when all
have stopped, after at most :data:`MAX_ITERS` iterations (the midpoint fallback alone reaches that
width in 42). From the starting point below it takes ~4-6 iterations where a plain bisection of the same
precision took 40, each one transcendental (f, f', f'' from one tanh / sigmoid: ``SShape.derivs``).
Elements that need no root (not crossing, or chord) never move (their d is discarded by the caller).

The root is then rounded up to the grid s_max 2^-40 of the 40-step bisection used before (the bracket end
with g > 0, as that bisection returned): the same d in all but a few elements, and d does not depend on
ulp differences of the vectorised f between batch sizes (a sample's bounds alone and in a batch agree).

Soundness: d only steers a slope choice; every line's offsets are the exact extremes of f(x) - a x on
[l, u] (:func:`certnn.relax.sshape.exact_offsets`), so any d gives sound lines.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from .sshape import SShape

#: safety cap on Newton / midpoint iterations (the midpoint fallback alone converges in 42)
MAX_ITERS = 64


def derivatives(fn: "SShape", d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(f(d), f'(d), f''(d)), from one transcendental where the SShape says how (``derivs``)."""
    if fn.derivs is not None:
        return fn.derivs(d)
    f, df = fn.value_and_slope(d)
    return f, df, fn.d2f(d)


def _start(uz: Tensor, s_max: Tensor) -> Tensor:
    """A first iterate: d0 = -min(u/2, log1p(u)) (the cubic's root -u/2 for small u; tanh's tangent point
    grows like log(u)/2, sigmoid's like log(u)), as s, or the bracket's midpoint where it falls outside."""
    s0 = torch.log1p(torch.minimum(uz / 2, torch.log1p(uz)))
    return torch.where((s0 > 0) & (s0 < s_max), s0, s_max / 2)


def lower_tangent_root(fn: "SShape", s_max: Tensor, uz: Tensor, f_uz: Tensor, need: Tensor,
                       max_iters: int = MAX_ITERS) -> Tensor:
    """d = -expm1(s) with g(s) = 0 (module docstring) where `need` (crossing boxes whose envelope is not
    the chord: l < 0 < u, g(s_max) > 0); s_max = log1p(-min(l, 0)), uz = max(u, 0), f_uz = f(uz), all of
    one shape. Elsewhere the returned d is meaningless (the starting point)."""
    # stop once a step is below sqrt(ulp) of s: Newton converges quadratically, so the step just taken
    # leaves s within ~ulps of the root
    tol = torch.finfo(uz.dtype).eps ** 0.5
    lo, hi = torch.zeros_like(uz), s_max
    width_tol = s_max * 2.0 ** -42
    s = _start(uz, s_max)
    todo = need.clone()  # per element: frozen once converged (its result never depends on others)
    for _ in range(max_iters if bool(todo.any()) else 0):
        d = -torch.expm1(s)
        f, df, d2f = derivatives(fn, d)
        r = uz - d
        g = f_uz - f - df * r
        pos = g > 0
        hi = torch.where(pos, s, hi)
        lo = torch.where(pos, lo, s)
        nxt = s - g / (d2f * r * (1 - d))  # Newton (1 - d = e^s); 0/0, x/0 -> nan/inf fail the test below
        # a Newton step strictly inside the bracket (or one that no longer moves s), else the midpoint (a
        # step onto a bracket end could bounce between the ends where g is flat to rounding)
        inside = ((nxt > lo) & (nxt < hi)) | (nxt == s)
        nxt = torch.where(inside, nxt, (lo + hi) / 2)
        step = (nxt - s).abs()
        s = torch.where(todo, nxt, s)
        todo = todo & (step > tol * s) & (hi - lo > width_tol)
        if not bool(todo.any()):
            break
    # the grid point of the 40-step bisection this replaces (the bracket end with g > 0): the same d as
    # before in all but a few elements, and, like the bisection's, insensitive to ulp differences of the
    # vectorised f between batch sizes (a root that moved by an ulp could move every later bound)
    w = s_max * 2.0 ** -grid_bits(s.dtype)
    grid = torch.where(w > 0, torch.ceil(s / torch.where(w > 0, w, torch.ones_like(w))) * w, s)
    return -torch.expm1(torch.minimum(grid, s_max))


def grid_bits(dtype: torch.dtype) -> int:
    """Bits of the snapping grid: 40 (the old bisection's steps) where the mantissa has room, else 4 bits
    fewer than the mantissa (float32: 20)."""
    mant = {torch.float64: 52, torch.float32: 23, torch.bfloat16: 7, torch.float16: 10}.get(dtype, 52)
    return min(40, mant - 4)


__all__ = ["lower_tangent_root", "derivatives", "MAX_ITERS"]
