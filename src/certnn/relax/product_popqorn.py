"""POPQORN-style separate lower and upper planes for sigma(x)*tanh(y) and sigma(x)*y.

Reference: Ko et al., "POPQORN: Quantifying Robustness of Recurrent Neural Networks", ICML 2019,
Sec. 3.3 and Appendix: for each LSTM product they pick an upper and a lower plane per box, searching
tangent planes and planes through corners by gradient steps on the volume between plane and surface,
then check the planes on a sample grid (so violations of ~1e-5 can remain).

Our version, vectorised over all elements:
  1. candidates: tangent planes of F at a 3 x 3 grid of box points (fractions 1/6, 1/2, 5/6 of each side),
     the four planes through three of the four corners, and the corner-fit plane;
  2. each candidate tilt is scored *exactly*: an upper plane with tilt (A, B) and the lowest sound offset
     C_u = max_box(F - A x - B y) has mean height over the box  phi_u(A, B) = C_u + A m_x + B m_y
     (m = box centre), so minimising phi_u minimises the volume between the plane and F; likewise the
     lower plane maximises phi_l = C_l + A m_x + B m_y. phi_u is convex in (A, B) (a max of affine
     functions) and phi_l concave;
  3. ``steps`` projected-subgradient steps on phi_u / phi_l from the best candidate, keeping the best
     tilt seen.
With ``kappa > 0`` (the 'blend' planes of :mod:`certnn.relax.products`) the scores weigh in the plane's
worst value over the box (see :func:`popqorn_tilts`). The subgradient of phi_u is (m_x - x*, m_y - y*) at the maximiser (x*, y*), which the
     exact-extremes routine returns. Steps are taken in box-normalised coordinates (A * half-width).

Soundness: the search only chooses tilts. The offsets of the returned planes are computed by the caller
from the exact extremes of F - A x - B y on the box (corners, edge and interior stationary points), plus
a few ulps, so the planes are valid on the whole box, not just on a grid.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .product_fns import ProductFn
from .product_tilts import _finite, corner_fit

FRACTIONS = (1 / 6, 1 / 2, 5 / 6)


def _three_corner_tilts(fn: ProductFn, lx, ux, ly, uy, A_cf, B_cf) -> list[tuple[Tensor, Tensor]]:
    """Planes through three corners: the omitted corner decides which edges give the slopes."""
    f = {(i, j): fn.f(x, y) for i, x in ((0, lx), (1, ux)) for j, y in ((0, ly), (1, uy))}
    wx, wy = ux - lx, uy - ly
    okx = wx > 1e-9 * (1 + torch.maximum(lx.abs(), ux.abs()))
    oky = wy > 1e-9 * (1 + torch.maximum(ly.abs(), uy.abs()))
    sx = torch.where(okx, wx, torch.ones_like(wx))
    sy = torch.where(oky, wy, torch.ones_like(wy))
    out = []
    for (i0, j0) in ((0, 0), (0, 1), (1, 0), (1, 1)):  # (i0, j0) is the corner the plane passes through twice
        A = torch.where(okx, (f[(1, j0)] - f[(0, j0)]) / sx, A_cf)     # x-secant along the edge y = y_j0
        B = torch.where(oky, (f[(i0, 1)] - f[(i0, 0)]) / sy, B_cf)     # y-secant along the edge x = x_i0
        out.append((A, B))
    return out


def _candidates(fn: ProductFn, lx, ux, ly, uy) -> tuple[Tensor, Tensor]:
    A_cf, B_cf = corner_fit(fn.name, lx, ux, ly, uy)
    cands = [(A_cf, B_cf)] + _three_corner_tilts(fn, lx, ux, ly, uy, A_cf, B_cf)
    for a in FRACTIONS:
        for b in FRACTIONS:
            x0, y0 = lx + a * (ux - lx), ly + b * (uy - ly)
            cands.append((fn.fx(x0, y0), fn.fy(x0, y0)))
    return _finite(torch.stack([c[0] for c in cands])), _finite(torch.stack([c[1] for c in cands]))


#: bisection steps for the interior stationary points while *scoring* tilts: the score only ranks tilts
#: (an approximate maximiser gives a slightly low phi_u, i.e. a near-optimal tilt, never an unsound plane);
#: the returned tilts' offsets are recomputed by the caller with full iterations.
SEARCH_ITERS = 20


#: scores within this relative tolerance count as tied (the first candidate / the earlier tilt is kept):
#: the same box can score 1 ulp differently alone and in a batch (vectorised transcendental functions
#: round differently in SIMD lanes and the scalar tail), and a strict comparison would then pick other
#: tilts and make a sample's bounds depend on its batch
TIE_RTOL = 1e-9


def _first_min(phi: Tensor) -> Tensor:
    """Index (1, *shape) of the first candidate (dim 0) within TIE_RTOL of the minimum score."""
    m = phi.amin(0, keepdim=True)
    tied = phi <= m + TIE_RTOL * (1 + m.abs())
    return tied.to(torch.int8).argmax(0, keepdim=True)


def _clearly_below(phi: Tensor, best: Tensor) -> Tensor:
    return phi < best - TIE_RTOL * (1 + best.abs())


def popqorn_tilts(fn: ProductFn, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor,
                  steps: int = 10, iters: int = SEARCH_ITERS, kappa: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Tilts (A_l, B_l, A_u, B_u) of the lower and upper planes (float64 tensors of the box's shape).

    kappa = 0 (POPQORN): the least volume between plane and F. kappa in (0, 1] ('blend' planes): the lower
    plane maximises (1 - kappa) * its mean + kappa * its minimum over the box, i.e.
        phi_l = C_l + A m_x + B m_y - kappa (|A| h_x + |B| h_y)
    (the plane's minimum over the box is its centre value minus |A| h_x + |B| h_y), still concave in
    (A, B); the upper plane minimises phi_u = C_u + A m_x + B m_y + kappa (|A| h_x + |B| h_y), convex. The
    subgradient steps get the extra term kappa (sign(A) h_x, sign(B) h_y).
    """
    if not 0.0 <= kappa <= 1.0:
        raise ValueError(f"kappa must lie in [0, 1], got {kappa}")
    mx, my = (lx + ux) / 2, (ly + uy) / 2
    hx, hy = (ux - lx) / 2, (uy - ly) / 2
    A, B = _candidates(fn, lx, ux, ly, uy)
    box = [t.expand_as(A) for t in (lx, ux, ly, uy)]
    e = fn.extremes(A, B, *box, iters=iters)
    spread = kappa * (A.abs() * hx + B.abs() * hy)
    phi_u = e.hi + A * mx + B * my + spread
    phi_l = -(e.lo + A * mx + B * my) + spread  # both minimised
    iu, il = _first_min(phi_u), _first_min(phi_l)
    take = lambda T, i: T.gather(0, i).squeeze(0)  # noqa: E731
    # stack (lower, upper) along a new leading axis and refine both together
    A = torch.stack([take(A, il), take(A, iu)])
    B = torch.stack([take(B, il), take(B, iu)])
    best = torch.stack([take(phi_l, il), take(phi_u, iu)])
    bA, bB = A.clone(), B.clone()
    sign = torch.tensor([-1.0, 1.0], dtype=A.dtype, device=A.device).view(2, *([1] * lx.dim()))
    box2 = [t.expand_as(A) for t in (lx, ux, ly, uy)]
    gx = torch.where(hx > 0, 1 / torch.where(hx > 0, hx, torch.ones_like(hx)) ** 2, torch.zeros_like(hx))
    gy = torch.where(hy > 0, 1 / torch.where(hy > 0, hy, torch.ones_like(hy)) ** 2, torch.zeros_like(hy))
    # step length in normalised units: a fraction of the spread of F over the corners
    fc = torch.stack([fn.f(x, y) for x in (lx, ux) for y in (ly, uy)])
    t0 = 0.1 * (fc.amax(0) - fc.amin(0)) + torch.finfo(A.dtype).tiny
    for k in range(steps):
        e = fn.extremes(A, B, *box2, iters=iters)
        px = torch.where(sign > 0, e.hi_x, e.lo_x)
        py = torch.where(sign > 0, e.hi_y, e.lo_y)
        off = torch.where(sign > 0, e.hi, e.lo)
        phi = sign * (off + A * mx + B * my) + kappa * (A.abs() * hx + B.abs() * hy)
        better = _clearly_below(phi, best)
        best = torch.where(better, phi, best)
        bA = torch.where(better, A, bA); bB = torch.where(better, B, bB)
        # subgradient of phi in (A, B): sign * (m - p); normalised step
        t = t0 / (k + 1)
        A = A - t * (sign * (mx - px) + kappa * torch.sign(A) * hx) * gx
        B = B - t * (sign * (my - py) + kappa * torch.sign(B) * hy) * gy
    if steps:
        e = fn.extremes(A, B, *box2, iters=iters)
        phi = sign * (torch.where(sign > 0, e.hi, e.lo) + A * mx + B * my) + kappa * (A.abs() * hx + B.abs() * hy)
        better = _clearly_below(phi, best)
        bA = torch.where(better, A, bA); bB = torch.where(better, B, bB)
    return bA[0], bB[0], bA[1], bB[1]


__all__ = ["popqorn_tilts", "SEARCH_ITERS"]
