"""Exact offsets as extremes over candidate points, with the envelope theorem's (Danskin's) gradient.

A relaxation's offset is an extreme over a box, d = ext_p g(p), g(p) = F(p) - sum_i a_i p_i (a line:
f(x) - k x; a plane: F(x, y) - A x - B y), computed as the extreme over candidate points p_k (corners,
stationary points on edges, interior stationary points; relax.sshape, relax.product_sided). Its value
needs no autograd graph, and neither does its gradient (envelope theorem, Danskin): with the extremiser
p*,

    dd / da_i = -p*_i,    dd / dl_i = dg/dp_i (p*) where p*_i is the box's lower end l_i (sits on that face),
    dd / du_i = dg/dp_i (p*) where p*_i is the upper end u_i,   0 where p*_i lies strictly inside,

because the candidate points are either box ends (they move with the box) or stationary points of g in
that coordinate (moving them changes g only to second order). Where candidates tie, the gradient is the
mean of theirs (relax.ties: the choice must not follow rounding), which is a valid subgradient.

This is the gradient autograd computes through the candidates' formulas when the stationary points are
computed from detached tilts (as relax.sshape.stationary_candidates and relax.product_sided do), but it is
formed under no_grad from the candidates' values and partial derivatives, and attached by one small
autograd node (:class:`_Attach`): no graph through the stacked candidates, the tie masks or the clips.
A stationary point clipped from below onto a zero-width side (v < l == u) passes half its gradient to
each end, as autograd's maximum-then-minimum does; one landing exactly on a box end (v == l, a tie autograd splits)
counts wholly as on that face (relax.product_extremes._candidate decides the interior points' faces with
a tolerance, kept here).

Soundness: only the gradient is formed here; the value is the same extreme of the same candidate values
(bit-identical to the autograd version), so callers' offsets stay sound.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .ties import TIE_RTOL

#: tags of a candidate coordinate: does not move with the box / is the box's lower end / its upper end /
#: a clip onto a zero-width side l == u (autograd's maximum-then-minimum passes half to each end)
INSIDE, AT_LOWER, AT_UPPER, AT_BOTH = 0, 1, 2, 3


@dataclass
class Coord:
    """One coordinate of the candidates: their values `points` (detached), g's slope term `slope` (the
    tilt; g = F - slope * p - ...), the box ends `lower`, `upper` (any of these may require grad) and the
    tags (an int for every element, or an integer tensor)."""

    points: list[Tensor]
    slope: Tensor
    lower: Tensor
    upper: Tensor
    tags: list


def clip_tagged(v: Tensor, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """(min(max(v, l), u), tag): AT_LOWER where v <= l (AT_BOTH if also l == u: the minimum's tie), AT_UPPER
    where v >= u (and not at l), else INSIDE."""
    out = torch.minimum(torch.maximum(v, l), u)
    low = torch.where(l == u, AT_BOTH, AT_LOWER)
    return out, torch.where(v <= l, low, torch.where(v >= u, AT_UPPER, INSIDE))


def needs_gradient(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors)


class _Attach(torch.autograd.Function):
    """value (computed without a graph) with the gradient sum_i coef_i * d input_i (each product reduced
    to its input's shape)."""

    @staticmethod
    def forward(ctx, value: Tensor, coefs: tuple, *inputs: Tensor) -> Tensor:
        ctx.coefs = coefs
        ctx.shapes = [t.shape for t in inputs]
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad: Tensor):
        out = []
        for need, coef, shape in zip(ctx.needs_input_grad[2:], ctx.coefs, ctx.shapes):
            if not need or coef is None:
                out.append(None)
                continue
            g = grad * coef
            out.append(g if g.shape == shape else g.sum_to_size(shape))
        return (None, None, *out)


class CandidateExtreme:
    """min (side = -1) or max (side = +1; a tensor of +-1 broadcasts) over dim 0 of the candidates'
    g_k = F_k - sum_i slope_i * p_ik; `valid` (when given) masks the last candidate out. `vals` holds
    the stacked g_k, `ext` the extreme (both detached); :meth:`attach` gives a value its gradient.
    `partials(*points)` returns dF/dp_i at given points (for the box's gradient)."""

    def __init__(self, F: list[Tensor], coords: list[Coord], side, valid: Tensor | None = None,
                 partials: Callable | None = None):
        self.coords, self.partials = coords, partials
        st = lambda ts: torch.stack(torch.broadcast_tensors(*ts))  # noqa: E731
        with torch.no_grad():
            vals = st(F)
            self.P = [st(c.points) for c in coords]
            for c, P in zip(coords, self.P):
                vals = vals - c.slope.detach() * P
            w = side * vals
            if valid is not None:  # a value no extreme can take: never the max, never tied, no gradient
                w[-1] = torch.where(valid, w[-1], torch.full_like(w[-1], -1e300))
            self.w, self.m = w, w.amax(0)
            self.vals, self.ext = vals, side * self.m

    def attach(self, value: Tensor) -> Tensor:
        """`value` (detached; the extreme, possibly widened) with the envelope gradient of the extreme in
        every slope and box end that requires grad: the mean over the candidates within
        relax.ties.TIE_RTOL of the extreme (ties are common: zero-width sides duplicate candidates, and
        CROWN's planes touch F at several corners)."""
        inputs = [t for c in self.coords for t in (c.slope, c.lower, c.upper)]
        if not needs_gradient(*inputs):
            return value
        with torch.no_grad():
            w, m = self.w, self.m
            near = (w >= m - TIE_RTOL * (1 + m.abs())).to(w.dtype)  # |w - m| <= tol, as w <= m
            W = near / near.sum(0)
            dF = None
            coefs = []
            for i, (c, P) in enumerate(zip(self.coords, self.P)):
                coefs.append(-(W * P).sum(0) if c.slope.requires_grad else None)
                if not (c.lower.requires_grad or c.upper.requires_grad):
                    coefs += [None, None]
                    continue
                if dF is None:
                    dF = self.partials(*self.P)
                G = W * (dF[i] - c.slope.detach())
                T = torch.stack([torch.as_tensor(t, dtype=torch.int8).expand(G.shape[1:]) for t in c.tags])
                both = T == AT_BOTH
                half = (G * both).sum(0) * 0.5 if bool(both.any()) else 0.0
                coefs.append((G * (T == AT_LOWER)).sum(0) + half if c.lower.requires_grad else None)
                coefs.append((G * (T == AT_UPPER)).sum(0) + half if c.upper.requires_grad else None)
        return _Attach.apply(value, tuple(coefs), *inputs)


__all__ = ["Coord", "CandidateExtreme", "clip_tagged", "needs_gradient", "INSIDE", "AT_LOWER", "AT_UPPER", "AT_BOTH"]
