"""Exact extremes of the residual g(x, y) = F(x, y) - A*x - B*y of the two LSTM/GRU products on a box.

Every plane relaxation of a product (Cert-RNN's parallel planes, POPQORN-style separate planes) gets its
offsets here, whatever tilt (A, B) it was chosen with: C_l = min g and C_u = max g over
[lx, ux] x [ly, uy]. A continuous g on a box attains its extremes at a corner, at a stationary point of g
restricted to an edge, or at an interior stationary point; we enumerate all three families in closed form
or by bracketed bisection on monotone pieces, so no extremum can be missed.

Key fact used throughout: *any* point of the box is a harmless extra candidate (its value lies between the
true min and max), so every candidate is clipped into the box instead of being filtered by fragile
tolerance tests. Only a missed extremiser could be unsound, and the enumeration below provably contains
every extremiser.

F = sigma(x) * tanh(y)  (LSTM: o * tanh(c), i * tanh(g))
  * edges x = x_e:  sigma(x_e) tanh(y) - B y  is stationary where tanh'(y) = B / sigma(x_e), i.e. at
    y = +-tanh'^{-1}(B / sigma(x_e))  (``TANH.dfinv``).
  * edges y = y_e:  tanh(y_e) sigma(x) - A x  is stationary where sigma'(x) = A / tanh(y_e), i.e. at
    x = +-sigma'^{-1}(A / tanh(y_e))  (``SIGMOID.dfinv``).
  * interior: with p = sigma(x), t = tanh(y), grad g = 0 reads p(1-p) t = A and p (1 - t^2) = B.
    Then B > 0, t^2 = 1 - B/p (so p >= B) and sign(t) = sign(A); eliminating t gives
        psi(p)^2 = A^2,   psi(p) = (1 - p) sqrt(p (p - B)),   p in [max(B, 0), 1],
    which squared out is the quartic  p^4 - (2+B) p^3 + (1+2B) p^2 - B p - A^2 = 0.
    log psi^2 = 2 log(1-p) + log p + log(p-B) has a strictly decreasing derivative, so psi is unimodal,
    increasing up to p* (the root in (B, 1) of 4p^2 - (2+3B) p + B = 0) and decreasing after it.
    Hence there are at most two interior stationary points, one on each monotone piece, and a bracketed
    bisection in x on each piece (intersected with [lx, ux]) finds it; y then follows stably from
    y = sign(A) tanh'^{-1}(B / sigma(x)). We bisect instead of taking companion-matrix eigenvalues of
    the quartic: near p -> 1 the eigenvalues lose relative accuracy in 1 - p (double roots appear as
    complex pairs with |Im| ~ sqrt(eps)), and x = logit(p) amplifies that error by 1 / (p (1 - p)).
    The tests cross-check the bisection against the eigenvalue solve of the quartic.

F = sigma(x) * y  (GRU: z * h, r * h;  Cert-RNN's x * sigma(y) with the arguments swapped)
  * edges x = x_e:  g is affine in y, so only the corners matter.
  * edges y = y_e:  y_e sigma(x) - A x  is stationary where sigma'(x) = A / y_e.
  * interior: sigma'(x) y = A and sigma(x) = B. The Hessian [[sigma'' y, sigma'], [sigma', 0]] has
    determinant -sigma'(x)^2 < 0, so such a point is a saddle and never an extremum; it is still added
    (clipped) as a candidate, which costs nothing and keeps the enumeration literal.

All arithmetic runs in float64 whatever the caller's dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .sshape import SIGMOID, TANH, _bisect_bracket, stationary_candidates
from .ties import tie_averaged

WORK_DTYPE = torch.float64
#: a candidate point within this relative distance of a face of the box moves with that face under autograd
#: (:func:`_candidate`)
FACE_RTOL = 1e-9
#: bisection steps for the interior stationary points of sigma(x) tanh(y) - A x - B y when offsets are
#: computed: the bracket is then ~2^-32 of the piece, and the value at its end is within `slack` (the
#: square of the bracket, see :func:`sigmoid_tanh_extremes`) of the true extreme, at the level of the
#: safety margin's few ulps
BISECT_ITERS = 32
#: an upper bound of the spectral norm of the Hessian of sigma(x) tanh(y) on R^2 (its Frobenius norm is at
#: most sqrt(sigma''^2 + 2 sigma'^2 + tanh''^2) <= sqrt(0.0963^2 + 2 * 0.25^2 + 0.7699^2) < 0.86)
HESSIAN_BOUND = 1.0


@dataclass(frozen=True)
class Extremes:
    """min / max of g over the box and the box points where they are attained (all of one shape)."""

    lo: Tensor
    hi: Tensor
    lo_x: Tensor
    lo_y: Tensor
    hi_x: Tensor
    hi_y: Tensor
    #: how far lo / hi may be from the true extremes because an interior stationary point was located only
    #: to a bisection bracket (see :func:`sigmoid_tanh_extremes`); sound offsets are lo - slack, hi + slack
    slack: Tensor | float = 0.0


def _clip(v: Tensor, l: Tensor, u: Tensor) -> Tensor:
    v = torch.where(torch.isnan(v), l, v)
    return torch.minimum(torch.maximum(v, l), u)


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den, and 0 where den == 0 (there the edge function is affine and its ends suffice)."""
    nz = den != 0
    return torch.where(nz, num / torch.where(nz, den, torch.ones_like(den)), torch.zeros_like(num))


def _dfinv(fn, a: Tensor) -> Tensor:
    """The point t >= 0 with f'(t) = a, for a clamped into (0, f'(0)] (finite for every input).

    A candidate point, so computed without gradient (see :func:`_candidate`)."""
    a = a.detach()
    t = fn.dfinv(a.clamp(min=torch.finfo(a.dtype).tiny, max=fn.peak_slope))
    return torch.nan_to_num(t, nan=0.0, posinf=1e300)


def _candidate(v: Tensor, l: Tensor, u: Tensor) -> Tensor:
    """A stationary-point candidate v (any tensor) as a point of [l, u] for autograd (verified
    training): v itself carries no gradient (at an interior stationary point of g the gradient of g's
    value does not depend on where the point moves: envelope theorem), but when it is clipped to a face
    of the box the gradient flows to that face. The value is exactly _clip(v, l, u).

    "Clipped" is decided with a tolerance (v within FACE_RTOL of a face counts as on it) and the face
    then gets the whole gradient: an exact clip would pass all, half (a tie) or none of it on a
    last-digit difference between v and the face (e.g. a sample bounded alone or in a batch), and an
    optimiser following the gradient (alpha-CROWN) would then take different paths."""
    v = v.detach()
    out = _clip(v, l.detach(), u.detach())
    if not (l.requires_grad or u.requires_grad):
        return out
    at_l = ~(v > l.detach() + FACE_RTOL * (1 + l.detach().abs()))  # NaN -> l, as _clip
    at_u = ~at_l & (v >= u.detach() - FACE_RTOL * (1 + u.detach().abs()))
    zero = torch.zeros_like(out)
    return out + torch.where(at_l, l - l.detach(), zero) + torch.where(at_u, u - u.detach(), zero)


def _logit(p: Tensor, one_minus_p: Tensor) -> Tensor:
    return torch.log(p) - torch.log(one_minus_p)


def _reduce(g: Callable[[Tensor, Tensor], Tensor], xs: list[Tensor], ys: list[Tensor]) -> Extremes:
    X = torch.stack(torch.broadcast_tensors(*xs))
    Y = torch.stack(torch.broadcast_tensors(*ys))
    vals = g(X, Y)
    lo, ilo = vals.min(0, keepdim=True)
    hi, ihi = vals.max(0, keepdim=True)
    lo, hi = lo.squeeze(0), hi.squeeze(0)
    if vals.requires_grad:  # tied candidates share the gradient (relax.ties): it must not follow rounding
        lo, hi = tie_averaged(lo, vals, "min", ext=lo), tie_averaged(hi, vals, "max", ext=hi)
    pick = lambda T, i: T.gather(0, i).squeeze(0)  # noqa: E731
    return Extremes(lo, hi, pick(X, ilo), pick(Y, ilo), pick(X, ihi), pick(Y, ihi))


def _corners(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    return [lx, lx, ux, ux], [ly, uy, ly, uy]


def _bisect_pieces(sgn: Tensor, Bc: Tensor, absA: Tensor, lo: Tensor, hi: Tensor,
                   iters: int) -> tuple[Tensor, Tensor]:
    """The bisection brackets of sgn * (psi(x) - |A|) on [lo, hi] (:func:`_sigtanh_interior`), run on the
    non-empty pieces only: an empty piece (lo == hi) keeps the bracket (lo, hi) under bisection anyway, so
    leaving it out gives the same numbers (every step is elementwise) for about half the work."""
    sgn, Bc, absA = (torch.broadcast_to(t, lo.shape) for t in (sgn, Bc, absA))
    need = hi > lo
    if not bool(need.any()):
        return lo, hi
    idx = None if bool(need.all()) else torch.nonzero(need.reshape(-1)).reshape(-1)
    if idx is None:
        x_lo, x_hi = lo, hi
    else:
        sgn, Bc, absA, x_lo, x_hi = (t.reshape(-1).index_select(0, idx) for t in (sgn, Bc, absA, lo, hi))

    def h(x: Tensor) -> Tensor:  # sgn * (psi(x) - |A|), psi(x) = sigma(x) sigma(-x) sqrt(1 - B / sigma(x))
        s = torch.sigmoid(x)
        return sgn * (s * torch.sigmoid(-x) * torch.sqrt(torch.clamp(1 - Bc / s, min=0.0)) - absA)
    x_lo, x_hi = _bisect_bracket(h, x_lo, x_hi, iters)
    if idx is None:
        return x_lo, x_hi
    return (lo.reshape(-1).index_copy(0, idx, x_lo).reshape(lo.shape),
            hi.reshape(-1).index_copy(0, idx, x_hi).reshape(hi.shape))


def _sigtanh_interior(A: Tensor, B: Tensor, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor,
                      iters: int) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """The (at most two) interior stationary points of sigma(x) tanh(y) - A x - B y, clipped into the box
    (found on detached inputs, re-clipped to the live box: :func:`_candidate`), and the slack of their
    values (:func:`sigmoid_tanh_extremes`)."""
    box = (lx, ux, ly, uy)
    A, B, lx, ux, ly, uy = (t.detach() for t in (A, B, lx, ux, ly, uy))
    tiny = torch.finfo(B.dtype).tiny
    one = torch.ones_like(B)
    Bc = B.clamp(min=tiny, max=1 - torch.finfo(B.dtype).eps)
    x_B = _logit(Bc, 1 - Bc)  # left end of the domain sigma(x) >= B
    disc = torch.sqrt((2 + 3 * Bc) ** 2 - 16 * Bc)
    p_star = ((2 + 3 * Bc) + disc) / 8
    q_star = 4 * (1 - Bc) / (6 - 3 * Bc + disc)  # 1 - p_star without cancellation
    x_star = _logit(p_star, q_star)
    absA = A.abs()

    # piece 1: [x_B, x*] psi increasing; piece 2: [x*, +inf) psi decreasing. Intersect with [lx, ux].
    lo = torch.stack([torch.maximum(x_B, lx), torch.maximum(x_star, lx)])
    hi = torch.stack([torch.minimum(x_star, ux), ux + 0 * x_star])
    lo = _clip(lo, lx, ux)
    hi = torch.maximum(_clip(hi, lx, ux), lo)
    sgn = torch.stack([one, -one])
    x_lo, xs = _bisect_pieces(sgn, Bc, absA, lo, hi, iters)
    ys = _clip(torch.sign(A) * _dfinv(TANH, Bc / torch.sigmoid(xs)), ly, uy)
    ys_lo = _clip(torch.sign(A) * _dfinv(TANH, Bc / torch.sigmoid(x_lo)), ly, uy)
    slack = (HESSIAN_BOUND * ((xs - x_lo) ** 2 + (ys - ys_lo) ** 2)).amax(0)
    lx, ux, ly, uy = box
    return ([_candidate(xs[0], lx, ux), _candidate(xs[1], lx, ux)],
            [_candidate(ys[0], ly, uy), _candidate(ys[1], ly, uy)], slack)


def sigmoid_tanh_extremes(A: Tensor, B: Tensor, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor,
                          iters: int = BISECT_ITERS) -> Extremes:
    """Min and max of sigma(x) tanh(y) - A x - B y over [lx, ux] x [ly, uy] (float64 tensors), exact up to
    the returned `slack`.

    Slack: an interior stationary point p* = (x*, y*) is located by bisection to a bracket x* in [x_lo, x_hi],
    and y* = phi(x*) with phi monotone on the piece, so |p* - p| <= d with d^2 = (x_hi - x_lo)^2 +
    (phi(x_hi) - phi(x_lo))^2 for the candidate p = (x_hi, phi(x_hi)) (clipping into the box only moves p
    towards p* when p* is in the box). As grad g(p*) = 0, Taylor's theorem gives
    |g(p) - g(p*)| <= ||Hessian|| d^2 / 2 <= HESSIAN_BOUND d^2, which is `slack`. Corners and edge points
    are exact (closed form), so [lo - slack, hi + slack] contains the true extremes."""
    xs, ys = _corners(lx, ux, ly, uy)
    for x_e in (lx, ux):  # vertical edges: stationary in y
        for y_c in stationary_candidates(TANH, _safe_ratio(B, torch.sigmoid(x_e)), ly, uy)[2:]:
            xs.append(x_e); ys.append(y_c)
    for y_e in (ly, uy):  # horizontal edges: stationary in x
        for x_c in stationary_candidates(SIGMOID, _safe_ratio(A, torch.tanh(y_e)), lx, ux)[2:]:
            xs.append(x_c); ys.append(y_e)
    xi, yi, slack = _sigtanh_interior(A, B, lx, ux, ly, uy, iters)
    xs += xi; ys += yi
    e = _reduce(lambda x, y: torch.sigmoid(x) * torch.tanh(y) - A * x - B * y, xs, ys)
    return Extremes(e.lo, e.hi, e.lo_x, e.lo_y, e.hi_x, e.hi_y, slack)


def sigmoid_mul_extremes(A: Tensor, B: Tensor, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor,
                         iters: int = BISECT_ITERS) -> Extremes:
    """Exact min and max of sigma(x) y - A x - B y over [lx, ux] x [ly, uy] (float64 tensors)."""
    del iters  # everything is closed form for this product
    xs, ys = _corners(lx, ux, ly, uy)
    for y_e in (ly, uy):  # horizontal edges: stationary in x
        for x_c in stationary_candidates(SIGMOID, _safe_ratio(A, y_e), lx, ux)[2:]:
            xs.append(x_c); ys.append(y_e)
    # interior saddle (never an extremum, see the module docstring): sigma(x) = B, sigma'(x) y = A
    Bc = B.clamp(min=torch.finfo(B.dtype).tiny, max=1 - torch.finfo(B.dtype).eps)
    x_s = _candidate(_logit(Bc, 1 - Bc), lx, ux)
    y_s = _candidate(_safe_ratio(A, torch.sigmoid(x_s) * torch.sigmoid(-x_s)), ly, uy)
    xs.append(x_s); ys.append(y_s)
    return _reduce(lambda x, y: torch.sigmoid(x) * y - A * x - B * y, xs, ys)


__all__ = ["Extremes", "sigmoid_tanh_extremes", "sigmoid_mul_extremes", "WORK_DTYPE"]
