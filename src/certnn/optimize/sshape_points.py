"""alpha-CROWN's parameters of an S-shaped activation (sigmoid, tanh, arctan) as *tangent points*.

Each line is the supporting line at a point q of f's lower convex (upper concave) envelope on [l, u]
(relax.sshape: :func:`~certnn.relax.sshape.lower_envelope_point`), so the parameters are positions, as in
CROWN-Optimized (Xu et al., "Fast and Complete", ICLR 2021, and auto_LiRPA's sigmoid / tanh alphas), rather
than slopes (certnn's earlier parameterisation, which converged slower: docs/methods.md):

  * lower line: q_lo in [l, d_lo], slope f'(q_lo), where the envelope is f on [l, d_lo] (d_lo = u when
    u <= 0, CROWN's tangent point through (u, f(u)) when l < 0 < u); the chord where the envelope is the
    chord (l >= 0, or a crossing box whose chord lies below f);
  * upper line: q_up in [d_up, u], slope f'(q_up), mirrored; the chord where the concave envelope is.

Every line of the range is a supporting line of the envelope, so no parameter value is dominated
everywhere on [l, u], and the slope moves fastest where f bends most (d k / d q = f''(q)). The stored
parameters are positions s in [0, 1] of q within its range (q = l + s (d_lo - l), q = d_up + s (u - d_up)),
so the projection is a clamp and a position survives changes of [l, u] between iterations (intermediate
bounds are optimised too).

Soundness: the tangent point only chooses a slope. The intercepts are the exact extremes of f(x) - k x over
[l, u] (:func:`certnn.relax.sshape.exact_offsets`, plus a few ulps), whatever k is, so every parameter value
(every iterate of the optimiser) gives valid lines, also where the envelope point d is only approximate
(bisection) or [l, u] changed since the position was set.
"""
from __future__ import annotations

import weakref

import torch
from torch import Tensor

from ..relax.sshape import SShape, _chord, lower_envelope_point
from ..relax.types import LinearRelaxation
from .lines import Params, _rows, selected_sshape_lines, tied_sshape_lines

#: bisection steps of the envelope points: they only steer the slope (offsets are exact)
ENVELOPE_ITERS = 16


def _polish(fn: SShape, d: Tensor, l: Tensor, u: Tensor, steps: int = 2) -> Tensor:
    """Newton steps on h(d) = f(d) + f'(d) (u - d) - f(u) (the tangent at d passes through (u, f(u)))
    from the bisection's d, kept inside [l, 0] (the bisection's precision 2^-iters becomes ~ulps, so
    the line at the end of the range touches f at d and at u alike and the optimiser sees the tie)."""
    if fn.d2f is None:  # another S-shaped function: the bisection's d as it is
        return d
    for _ in range(steps):
        dh = fn.d2f(d) * (u - d)
        h = fn.f(d) + fn.df(d) * (u - d) - fn.f(u)
        step = torch.where(dh > 0, h / torch.where(dh > 0, dh, torch.ones_like(dh)), torch.zeros_like(h))
        new = d - step
        d = torch.where(torch.isfinite(new), torch.minimum(torch.maximum(new, l), torch.zeros_like(new)), d)
    return d


def tangent_ranges(fn: SShape, l: Tensor, u: Tensor) -> tuple[Tensor, ...]:
    """(lo_a, lo_b, lo_chord, up_a, up_b, up_chord, k_chord) on detached bounds: the lower line's
    tangent points range over [lo_a, lo_b] (lo_chord: the chord instead), the upper line's over
    [up_a, up_b]; k_chord the chord's slope. Both envelope points come from one bisection (the upper
    one is the lower one of the mirrored box [-u, -l], relax.sshape.upper_envelope_point), polished by
    Newton steps where the box crosses 0."""
    l, u = l.detach(), u.detach()
    ll, uu = torch.cat([l, -u]), torch.cat([u, -l])
    d, chord = lower_envelope_point(fn, ll, uu, ENVELOPE_ITERS)
    crossing = (ll < 0) & (uu > 0) & ~chord
    d = torch.where(crossing, _polish(fn, d, ll, uu), d)
    n = l.shape[0]
    d_lo, d_up, lo_chord, up_chord = d[:n], -d[n:], chord[:n], chord[n:]
    k_chord, _ = _chord(fn, l, u)
    return l, torch.maximum(d_lo, l), lo_chord, torch.minimum(d_up, u), u, up_chord, k_chord


#: id(l) -> (weakref l, weakref u, fn, tangent_ranges(fn, l, u)); an entry leaves when l is freed
_RANGES: dict[int, tuple] = {}


def shared_tangent_ranges(fn: SShape, l: Tensor, u: Tensor) -> tuple[Tensor, ...]:
    """:func:`tangent_ranges` of the bound tensors l, u, computed once per pair of tensor objects: within
    one alpha-CROWN evaluation every start's backward pass meets a node's same bounds (ctx.bounds), and the
    ranges (detached, a function of the values only) are the same for all of them. Keyed by identity (the
    entry holds weak references and is dropped when l is freed); the ranges only steer the tangent search
    (offsets are exact whatever the slope), so even a stale entry could not make a line unsound."""
    key = id(l)
    hit = _RANGES.get(key)
    if hit is not None and hit[0]() is l and hit[1]() is u and hit[2] is fn:
        return hit[3]
    out = tangent_ranges(fn, l, u)
    _RANGES[key] = (weakref.ref(l, lambda _, k=key: _RANGES.pop(k, None)), weakref.ref(u), fn, out)
    return out


def _position(q: Tensor, a: Tensor, b: Tensor) -> Tensor:
    width = b - a
    safe = torch.where(width > 0, width, torch.ones_like(width))
    return torch.where(width > 0, (q - a) / safe, torch.zeros_like(q)).clamp(0.0, 1.0)


class SShapeTangents(Params):
    """Tangent-point positions s_lo, s_up (B, S, *shape) in [0, 1] of an S-shaped activation's lines."""

    opt_fields = ("s_lo", "s_up")
    #: Adam step in s (fractions of the tangent points' range) relative to AlphaConfig.lr
    lr_scale = 0.1

    def __init__(self, fn: SShape, s_lo: Tensor, s_up: Tensor):
        self.fn = fn
        self.s_lo = s_lo
        self.s_up = s_up

    @staticmethod
    def initial(fn: SShape, base: LinearRelaxation, l: Tensor, u: Tensor, rows: int) -> tuple[Tensor, Tensor]:
        """The base method's lines (e.g. CROWN's) as tangent-point positions, repeated over `rows` rows:
        a lower slope k is the tangent at -x*(k) <= 0 (x* = (f')^{-1}), an upper one at +x*(k)."""
        lo_a, lo_b, _, up_a, up_b, _, _ = tangent_ranges(fn, l, u)

        def point(k):
            k = k.detach().clamp(min=torch.finfo(k.dtype).tiny, max=fn.peak_slope)
            return torch.nan_to_num(fn.dfinv(k), nan=0.0, posinf=1e300)

        def rep(s):
            return s.unsqueeze(1).expand((l.shape[0], rows) + tuple(l.shape[1:])).clone()
        s_lo = _position(-point(base.lower_slope), lo_a, lo_b)
        s_up = _position(point(base.upper_slope), up_a, up_b)
        return rep(s_lo), rep(s_up)

    def project(self) -> None:
        self.s_lo.data.clamp_(0.0, 1.0)
        self.s_up.data.clamp_(0.0, 1.0)

    def __call__(self, op, l: Tensor, u: Tensor) -> LinearRelaxation:
        return tied_sshape_lines(self.fn, *self._slopes(l, u))

    def selected(self, op, l: Tensor, u: Tensor, coef: Tensor) -> LinearRelaxation:
        """The lines with intercepts only where a lower-bound pass with coefficients `coef` uses them
        (optimize/lines.selected_sshape_lines)."""
        return selected_sshape_lines(self.fn, *self._slopes(l, u), coef)

    def _slopes(self, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(l, u, k_lo, k_up): the bounds with a row dim and the tangent points' slopes."""
        ranges = shared_tangent_ranges(self.fn, l, u)
        l, u = _rows(l, self.s_lo), _rows(u, self.s_lo)
        lo_a, lo_b, lo_chord, up_a, up_b, up_chord, k_chord = (_rows(t, self.s_lo) for t in ranges)
        df = self.fn.df
        k_lo = torch.where(lo_chord, k_chord, df(lo_a + self.s_lo * (lo_b - lo_a)))
        k_up = torch.where(up_chord, k_chord, df(up_a + self.s_up * (up_b - up_a)))
        return l, u, k_lo, k_up


__all__ = ["SShapeTangents", "shared_tangent_ranges", "tangent_ranges", "ENVELOPE_ITERS"]
