"""Tangent/chord relaxations of S-shaped activations (sigmoid, tanh, arctan).

An S-shaped function f here is increasing, convex on (-inf, 0], concave on [0, inf), with an even
derivative f' that is unimodal with its peak f'(0). For such f, f(x) - a*x on [l, u] attains its extremes
at l, u, or the (at most two) points where f'(x) = a, which are +-x*(a) with x*(a) = (f')^{-1}(a) >= 0.
That makes the *exact* worst violation of any line computable in closed form.

CROWN (Zhang et al., NeurIPS 2018, Table 1 / Sec. 3.3) uses, on [l, u]:
  * u <= 0 (convex part):  upper = chord,            lower = tangent at d = (l+u)/2;
  * l >= 0 (concave part): upper = tangent at d,      lower = chord;
  * l < 0 < u (crossing):  upper = line through (l, f(l)) tangent at d_u >= 0 (chord when d_u > u);
                           lower = line through (u, f(u)) tangent at d_l <= 0 (chord when d_l < l).
The tangent points d_u, d_l are found by a batched bisection (no per-neuron loops).

Soundness: whatever slope a line was chosen with, its intercept is then set from the exact extremes of
f(x) - a*x over [l, u] (:func:`exact_offsets`) plus a few ulps (:func:`~certnn.relax.types.safety_margin`),
so every returned line is a valid bound on the whole interval, in every case including l == u, intervals
on one side of the inflection point, and saturated intervals (|x| up to 1e8).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .types import LinearRelaxation, safety_margin


@dataclass(frozen=True)
class SShape:
    """An S-shaped activation: f, its derivative, and the positive branch of the derivative's inverse."""

    name: str
    f: Callable[[Tensor], Tensor]
    df: Callable[[Tensor], Tensor]
    dfinv: Callable[[Tensor], Tensor]  # a in (0, f'(0)] -> x >= 0 with f'(x) = a
    peak_slope: float  # f'(0)
    lipschitz: float  # sup |f'| = f'(0)


def _sigmoid_df(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _sigmoid_dfinv(a: Tensor) -> Tensor:
    r = torch.sqrt(torch.clamp(1 - 4 * a, min=0.0))
    s = (1 + r) / 2
    one_minus_s = 2 * a / (1 + r)  # rationalised 1 - s, accurate for small a
    return torch.log(s) - torch.log(one_minus_s)


def _tanh_df(x: Tensor) -> Tensor:
    t = torch.tanh(x)
    return 1 - t * t


def _tanh_dfinv(a: Tensor) -> Tensor:
    t = torch.sqrt(torch.clamp(1 - a, min=0.0))
    return torch.log1p(t) - 0.5 * torch.log(a)  # atanh(t) written stably for t -> 1


def _atan_df(x: Tensor) -> Tensor:
    return 1 / (1 + x * x)


def _atan_dfinv(a: Tensor) -> Tensor:
    return torch.sqrt(torch.clamp(1 / a - 1, min=0.0))


SIGMOID = SShape("sigmoid", torch.sigmoid, _sigmoid_df, _sigmoid_dfinv, 0.25, 0.25)
TANH = SShape("tanh", torch.tanh, _tanh_df, _tanh_dfinv, 1.0, 1.0)
ARCTAN = SShape("arctan", torch.atan, _atan_df, _atan_dfinv, 1.0, 1.0)
SSHAPES: dict[str, SShape] = {s.name: s for s in (SIGMOID, TANH, ARCTAN)}


def stationary_candidates(fn: SShape, slope: Tensor, l: Tensor, u: Tensor) -> list[Tensor]:
    """Points of [l, u] where f(x) - slope*x can have an extremum: l, u and +-x*(slope) clipped into
    [l, u] (clipping adds only harmless extra points inside the box).

    Gradients (verified training): x*(slope) is computed from the detached slope. At an interior
    stationary point d/dx [f(x) - a x] = 0, so the extreme's gradient does not depend on dx*/da (envelope
    theorem) and nothing is lost; where x* is clipped to l or u the gradient flows to that end. This also
    keeps the inverse derivative's sqrt / log at the ends of its domain out of autograd (they give NaN)."""
    a = slope.detach().clamp(min=torch.finfo(slope.dtype).tiny, max=fn.peak_slope)
    xs = fn.dfinv(a)
    xs = torch.nan_to_num(xs, nan=0.0, posinf=1e300, neginf=0.0)
    return [l, u, torch.minimum(torch.maximum(xs, l), u), torch.minimum(torch.maximum(-xs, l), u)]


def exact_offsets(fn: SShape, slope: Tensor, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """min and max over x in [l, u] of f(x) - slope*x, widened by a few ulps (sound offsets)."""
    cands = stationary_candidates(fn, slope, l, u)
    vals = torch.stack([fn.f(c) - slope * c for c in cands])
    mags = torch.stack([torch.maximum(fn.f(c).abs(), (slope * c).abs()) for c in cands]).amax(0)
    margin = safety_margin(mags)
    return vals.amin(0) - margin, vals.amax(0) + margin


def _tangent(fn: SShape, d: Tensor) -> tuple[Tensor, Tensor]:
    k = fn.df(d)
    return k, fn.f(d) - k * d


def _chord(fn: SShape, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    width = u - l
    tiny = width <= 1e-12 * (1 + torch.maximum(l.abs(), u.abs()))
    safe = torch.where(tiny, torch.ones_like(width), width)
    k = torch.where(tiny, fn.df((l + u) / 2), (fn.f(u) - fn.f(l)) / safe)
    return k, fn.f(l) - k * l


def _bisect(h: Callable[[Tensor], Tensor], lo: Tensor, hi: Tensor, iters: int) -> Tensor:
    """Batched bisection for an increasing h with h(lo) <= 0 < h(hi); returns the upper bracket end."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        pos = h(mid) > 0
        hi = torch.where(pos, mid, hi)
        lo = torch.where(pos, lo, mid)
    return hi


def sshape_relaxation(fn: SShape, l: Tensor, u: Tensor, iters: int = 40) -> LinearRelaxation:
    """CROWN's tangent/chord lines for an S-shaped f on [l, u], made sound by exact offsets."""
    if (u < l).any():
        raise ValueError("sshape_relaxation needs l <= u")
    mid = (l + u) / 2
    chord_k, _ = _chord(fn, l, u)
    tan_k, _ = _tangent(fn, mid)

    # crossing case: tangent point d_u >= 0 of the upper line through (l, f(l)).
    lz = torch.minimum(l, torch.zeros_like(l))
    uz = torch.maximum(u, torch.zeros_like(u))

    def h_up(d: Tensor) -> Tensor:  # increasing in d >= 0
        return fn.f(d) + fn.df(d) * (lz - d) - fn.f(lz)

    def h_lo(e: Tensor) -> Tensor:  # e = -d >= 0; minus the gap of the tangent at d = -e at u; increasing
        return fn.f(uz) - fn.f(-e) - fn.df(-e) * (uz + e)

    up_use_chord = h_up(uz) <= 0  # tangent point beyond u: the chord is above f
    d_u = _bisect(h_up, torch.zeros_like(l), uz, iters)
    # lower: tangent point d_l <= 0 with the line through (u, f(u)); search e = -d_l in [0, -l]
    lo_use_chord = h_lo(-lz) <= 0
    e = _bisect(h_lo, torch.zeros_like(l), -lz, iters)
    d_l = -e

    k_up_cross = torch.where(up_use_chord, chord_k, fn.df(d_u))
    k_lo_cross = torch.where(lo_use_chord, chord_k, fn.df(d_l))

    convex = u <= 0
    concave = l >= 0
    up_k = torch.where(convex, chord_k, torch.where(concave, tan_k, k_up_cross))
    lo_k = torch.where(convex, tan_k, torch.where(concave, chord_k, k_lo_cross))

    lo_min, _ = exact_offsets(fn, lo_k, l, u)
    _, up_max = exact_offsets(fn, up_k, l, u)
    return LinearRelaxation(lo_k, lo_min, up_k, up_max)


def parallel_relaxation(fn: SShape, l: Tensor, u: Tensor, slope: str = "secant") -> LinearRelaxation:
    """Two parallel lines a*x + c_lo <= f(x) <= a*x + c_hi on [l, u] (zonotope-style transformer).

    slope 'secant' (Cert-RNN): a = (f(u) - f(l)) / (u - l); 'deepz' (Singh et al. 2018): a = min(f'(l), f'(u)).
    Offsets are the exact extremes of f - a*x, so the pair is sound and as tight as parallel lines with that
    slope can be.
    """
    if slope == "secant":
        a, _ = _chord(fn, l, u)
    elif slope == "deepz":
        a = torch.minimum(fn.df(l), fn.df(u))
    else:
        raise ValueError(f"unknown slope rule {slope!r}")
    c_lo, c_hi = exact_offsets(fn, a, l, u)
    return LinearRelaxation(a, c_lo, a.clone(), c_hi)


def interval_image(fn: SShape, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Exact image [f(l), f(u)] of a monotone increasing f (IBP)."""
    return fn.f(l), fn.f(u)


__all__ = ["SShape", "SIGMOID", "TANH", "ARCTAN", "SSHAPES", "sshape_relaxation", "parallel_relaxation",
           "exact_offsets", "stationary_candidates", "interval_image"]

