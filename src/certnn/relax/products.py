"""Bounding planes for the two-input products of recurrent cells, and McCormick planes for x*y.

    sigmoid_tanh_planes(lx, ux, ly, uy, mode)   F = sigma(x) tanh(y)   (LSTM: o*tanh(c), i*tanh(g))
    sigmoid_mul_planes(lx, ux, ly, uy, mode)    F = sigma(x) y         (LSTM f*c, GRU z*h and r*h)
    mccormick_planes(lx, ux, ly, uy)            F = x y   (one lower and one upper McCormick plane)
    interpolated_mccormick(lx, ux, ly, uy, r_lo, r_up)   F = x y   (between the two McCormick planes, alpha-CROWN)
    mul_parallel_planes(lx, ux, ly, uy)         F = x y   (parallel pair, for zonotopes)

Each returns a :class:`~certnn.relax.types.PlaneRelaxation` with, elementwise on [lx, ux] x [ly, uy],

    lower_a x + lower_b y + lower_c  <=  F(x, y)  <=  upper_a x + upper_b y + upper_c.

Inputs are tensors of one shape (any shape, batch first), lx <= ux and ly <= uy; zero-width boxes and
|x|, |y| up to 1e3 and beyond are fine.

mode "certrnn" (Du et al., CCS 2021, Sec. 4.3): two *parallel* planes (lower_a == upper_a,
lower_b == upper_b), the shape a zonotope transformer needs (one fresh noise symbol of radius
(C2 - C1)/2). The tilt comes from the paper's case table (:mod:`certnn.relax.product_tilts`); where
the table offers several tilts (and always including the corner-fit tilt, which our measurements show is
narrower than the printed tilts of cases 5-9) the one with the narrowest exact width C2 - C1 is kept.

mode "popqorn" (Ko et al., ICML 2019): separate lower and upper planes, each chosen to minimise the
volume between it and F (:mod:`certnn.relax.product_popqorn`). Tighter on average for the backward
(linear-bounds) engine, but not parallel, hence not a zonotope transformer by itself.

mode "blend" (the backward methods' planes): POPQORN's candidates and search, but the lower plane
maximises (1 - kappa) * its mean + kappa * its minimum over the box (the upper one minimises
(1 - kappa) * mean + kappa * max), kappa = :data:`~certnn.relax.types.BLEND_KAPPA`; the same criterion as
the S-shaped lines' default rule (:mod:`certnn.relax.sshape`). The least-volume plane is optimal only if
the backward pass evaluated it at the box centre; weighing in the worst value favours smaller tilts,
which shrink the coefficients propagated further back. Measured on LSTM / GRU MNIST classifiers
(docs/benchmarks.md, issue 12): tighter than mode "popqorn", and than auto_LiRPA's CROWN on unrolled twins
(sigmoid and tanh lines followed by a McCormick plane) on every LSTM margin and on average on a GRU.

Soundness: whatever the mode, the offsets are the exact extremes of F - A x - B y over the box, found by
enumerating corners, stationary points on the four edges and interior stationary points
(:mod:`certnn.relax.product_extremes`; all candidates are box points, and the enumeration provably
contains every extremiser), computed in float64 for the tilt *as rounded to the caller's dtype*, then
widened by :func:`~certnn.relax.types.safety_margin` of the magnitudes involved. The printed Cert-RNN
offsets are not used (they are not sound in every case). McCormick planes are exact in real arithmetic
(the gaps are products of two non-negative box distances) and get the same few-ulp widening.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .product_extremes import WORK_DTYPE
from .product_fns import SIGMOID_MUL, SIGMOID_TANH, ProductFn
from .product_popqorn import popqorn_tilts
from .product_tilts import certrnn_sigmoid_mul_candidates, certrnn_sigmoid_tanh_candidates, corner_fit
from .ties import tie_averaged
from .types import BLEND_KAPPA, PlaneRelaxation, safety_margin

MODES = ("certrnn", "popqorn", "blend")
SELECT_ITERS = 20


def _check_box(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> None:
    if not (lx.shape == ux.shape == ly.shape == uy.shape):
        raise ValueError(f"box bounds must share one shape, got {lx.shape}, {ux.shape}, {ly.shape}, {uy.shape}")
    if (ux < lx).any() or (uy < ly).any():
        raise ValueError("product planes need lx <= ux and ly <= uy")
    if not all(torch.isfinite(t).all() for t in (lx, ux, ly, uy)):
        raise ValueError("product planes need finite box bounds")


def _offsets(fn: ProductFn, A: Tensor, B: Tensor, box: list[Tensor], out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Sound (C_l, C_u) in out_dtype for the tilt (A, B), which must be representable in out_dtype."""
    e = fn.extremes(A, B, *box)
    return _widened(fn, A, B, box, e.lo, e.hi, e.slack, out_dtype)


def _widened(fn: ProductFn, A: Tensor, B: Tensor, box: list[Tensor], lo: Tensor, hi: Tensor, slack,
             out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The extremes lo, hi of F - A x - B y (exact up to `slack`) as sound offsets in out_dtype."""
    lx, ux, ly, uy = box
    with torch.no_grad():  # a few ulps: their gradient would only cost (the offsets' is the extremes')
        mag = (fn.bound(lx, ux, ly, uy) + A.abs() * torch.maximum(lx.abs(), ux.abs())
               + B.abs() * torch.maximum(ly.abs(), uy.abs()))
        margin = safety_margin(mag.to(out_dtype)).to(WORK_DTYPE) + slack  # slack: the interior points' bracket
    lo, hi = lo - margin, hi + margin
    if out_dtype == WORK_DTYPE:  # nothing to round (the steps below would all be no-ops)
        return lo, hi
    # rounding to out_dtype may move a value inwards by half an ulp: step one ulp outwards if it did
    lo_o, hi_o = lo.to(out_dtype), hi.to(out_dtype)
    lo_o = torch.where(lo_o.to(WORK_DTYPE) > lo, _step(lo_o, -float("inf")), lo_o)
    hi_o = torch.where(hi_o.to(WORK_DTYPE) < hi, _step(hi_o, float("inf")), hi_o)
    return lo_o, hi_o


def _offsets_pair(fn: ProductFn, Al: Tensor, Bl: Tensor, Au: Tensor, Bu: Tensor, box: list[Tensor],
                  out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(C_l of the tilt (Al, Bl), C_u of the tilt (Au, Bu)) from one computation on the two tilts stacked
    (one call instead of two halves the per-op overhead, which dominates on small boxes): the one-sided
    extremes (`fn.sided`: the min for the lower tilt, the max for the upper) where the product has them;
    the same values as two `_offsets` calls up to the last ulps (both enumerations contain every
    extremiser)."""
    two = lambda a, b: torch.stack([a, b])  # noqa: E731
    A, B = two(Al, Au), two(Bl, Bu)
    if fn.sided is None:
        lo, hi = _offsets(fn, A, B, [t.unsqueeze(0).expand((2,) + tuple(A.shape[1:])) for t in box], out_dtype)
    else:  # only the min of the lower tilt and the max of the upper one (relax.product_sided); the box
        # keeps its own (broadcastable) shape: box-only terms are computed once for all spec rows
        side = torch.tensor([-1.0, 1.0], dtype=A.dtype, device=A.device).reshape((2,) + (1,) * (A.dim() - 1))
        box2 = [t.unsqueeze(0) for t in box]
        ext, slack = fn.sided(A, B, *box2, side)
        lo, hi = _widened(fn, A, B, box2, ext, ext, slack, out_dtype)
    return lo[0], hi[1]


def _step(v: Tensor, toward: float) -> Tensor:
    """v moved one ulp toward `toward`; for autograd (verified training) the step has the gradient of v
    (nextafter's own gradient is 0), the value is exactly nextafter's (v - v.detach() is 0)."""
    out = torch.nextafter(v.detach(), torch.full_like(v, toward))
    return out + (v - v.detach()) if v.requires_grad else out


#: candidate tilts whose approximate widths are within this relative tolerance of the narrowest count as
#: tied; the first of them is kept, so rounding noise (e.g. a different matmul blocking for another batch
#: size) cannot flip the choice between (nearly) equal tilts and make bounds depend on the batch
TIE_RTOL = 1e-9


def _first_narrowest(w: Tensor) -> Tensor:
    """Index (1, *shape) of the first candidate (dim 0) whose width is within TIE_RTOL of the minimum."""
    wmin = w.amin(0, keepdim=True)
    tied = w <= wmin + TIE_RTOL * wmin.abs()
    return tied.to(torch.int8).argmax(0, keepdim=True)


def _search_grid(box: list[Tensor]) -> list[Tensor]:
    """The box rounded to float32's grid, for the *search* of tilts only: the search makes discrete
    choices (argmin over candidates, subgradient steps), so box bounds that differ by rounding noise (e.g.
    the same sample bounded alone or in a batch) could pick different tilts; on the coarser grid they
    coincide except within an ulp of a float32 boundary. Offsets are then computed on the true box, so
    the planes stay sound whatever box the search saw."""
    return [t.to(torch.float32).to(t.dtype) for t in box]


def _planes(fn: ProductFn, candidates, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, mode: str) -> PlaneRelaxation:
    _check_box(lx, ux, ly, uy)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; supported: {', '.join(MODES)}")
    out = lx.dtype
    box = [t.to(WORK_DTYPE) for t in (lx, ux, ly, uy)]
    if mode == "certrnn":
        A, B = candidates(*box)
        A_cf, B_cf = corner_fit(fn.name, *box)
        A, B = torch.cat([A, A_cf[None]]), torch.cat([B, B_cf[None]])
        # ranking the candidate tilts needs only approximate widths (SELECT_ITERS bisection steps for the
        # interior stationary points); the chosen tilt's offsets below are exact (full iterations)
        with torch.no_grad():  # only an argmin: no gradient to keep (verified training)
            e = fn.extremes(A, B, *[t.expand_as(A) for t in box], iters=SELECT_ITERS)
        k = _first_narrowest(e.hi - e.lo)
        A = A.gather(0, k).squeeze(0).to(out).to(WORK_DTYPE)
        B = B.gather(0, k).squeeze(0).to(out).to(WORK_DTYPE)
        c_lo, c_hi = _offsets(fn, A, B, box, out)
        A, B = A.to(out), B.to(out)
        return PlaneRelaxation(A, B, c_lo, A.clone(), B.clone(), c_hi)
    kappa = BLEND_KAPPA if mode == "blend" else 0.0
    Al, Bl, Au, Bu = (t.to(out).to(WORK_DTYPE) for t in popqorn_tilts(fn, *_search_grid(box), kappa=kappa))
    c_lo, c_hi = _offsets_pair(fn, Al, Bl, Au, Bu, box, out)
    return PlaneRelaxation(Al.to(out), Bl.to(out), c_lo, Au.to(out), Bu.to(out), c_hi)


def sigmoid_tanh_planes(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, mode: str = "certrnn") -> PlaneRelaxation:
    """Planes bounding sigma(x) * tanh(y) on [lx, ux] x [ly, uy]; mode 'certrnn' (parallel), 'popqorn' or
    'blend'."""
    return _planes(SIGMOID_TANH, certrnn_sigmoid_tanh_candidates, lx, ux, ly, uy, mode)


def sigmoid_mul_planes(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, mode: str = "certrnn") -> PlaneRelaxation:
    """Planes bounding sigma(x) * y on [lx, ux] x [ly, uy]; mode 'certrnn' (parallel), 'popqorn' or 'blend'."""
    return _planes(SIGMOID_MUL, certrnn_sigmoid_mul_candidates, lx, ux, ly, uy, mode)


PRODUCT_FNS = {"sigmoid_tanh_mul": SIGMOID_TANH, "sigmoid_mul": SIGMOID_MUL}


def tilted_planes(kind: str, Al: Tensor, Bl: Tensor, Au: Tensor, Bu: Tensor, lx: Tensor, ux: Tensor, ly: Tensor,
                  uy: Tensor) -> PlaneRelaxation:
    """Sound planes with *given* tilts (lower (Al, Bl), upper (Au, Bu); any values, broadcastable with the
    box) for the product `kind` ('sigmoid_tanh_mul', 'sigmoid_mul' or 'mul') on [lx, ux] x [ly, uy]: the
    offsets are the exact extremes of F - A x - B y on the box (for x*y a bilinear residual, extreme at
    a corner), widened by a few ulps. Used by optimisers that choose tilts (alpha-CROWN)."""
    if kind == "mul":
        xs = torch.stack(torch.broadcast_tensors(lx, lx, ux, ux))
        ys = torch.stack(torch.broadcast_tensors(ly, uy, ly, uy))
        lo = (xs * ys - Al * xs - Bl * ys)
        hi = (xs * ys - Au * xs - Bu * ys)
        mag = ((lx.abs() + ux.abs()) * (ly.abs() + uy.abs()) + (Al.abs() + Au.abs()) * (lx.abs() + ux.abs())
               + (Bl.abs() + Bu.abs()) * (ly.abs() + uy.abs()))
        margin = safety_margin(mag)
        # corner ties share the gradient (relax.ties): which corner rounding picks must not steer an optimiser
        return PlaneRelaxation(Al, Bl, tie_averaged(lo.detach().amin(0), lo, "min") - margin, Au, Bu,
                               tie_averaged(hi.detach().amax(0), hi, "max") + margin)
    fn = PRODUCT_FNS[kind]
    out = lx.dtype
    shape = torch.broadcast_shapes(Al.shape, Bl.shape, Au.shape, Bu.shape, lx.shape, ly.shape)
    box = [t.to(WORK_DTYPE) for t in (lx, ux, ly, uy)]  # broadcast by the arithmetic (see _offsets_pair)
    c_lo, c_hi = _offsets_pair(fn, *(torch.broadcast_to(t, shape).to(WORK_DTYPE) for t in (Al, Bl, Au, Bu)), box, out)
    return PlaneRelaxation(Al, Bl, c_lo, Au, Bu, c_hi)


def mccormick_planes(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> PlaneRelaxation:
    """McCormick envelopes of x * y on the box (McCormick 1976), one lower and one upper plane:

        x y >= ly x + lx y - lx ly     since (x - lx)(y - ly) >= 0,
        x y <= uy x + lx y - lx uy     since (x - lx)(uy - y) >= 0.

    Each touches x*y on two edges of the box (the other McCormick pair has the same volume). Exact in
    real arithmetic; the constants are widened by a few ulps against rounding."""
    _check_box(lx, ux, ly, uy)
    mag = (lx.abs() + ux.abs()) * (ly.abs() + uy.abs())
    margin = safety_margin(mag)
    return PlaneRelaxation(ly.clone(), lx.clone(), -lx * ly - margin, uy.clone(), lx.clone(), -lx * uy + margin)


def interpolated_mccormick(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, r_lo: Tensor,
                           r_up: Tensor) -> PlaneRelaxation:
    """Planes for x * y on the box between the two McCormick planes of each side (McCormick 1976), the
    family alpha-CROWN optimises for a product (as in auto_LiRPA's CROWN-Optimized), with weights r in [0, 1]
    (clamped; any shape broadcastable with the box):

        lower  r_lo (ly x + lx y - lx ly) + (1 - r_lo) (uy x + ux y - ux uy)
        upper  r_up (uy x + lx y - lx uy) + (1 - r_up) (ly x + ux y - ux ly)

    r = 1 gives :func:`mccormick_planes` (CROWN's). Every such plane supports the convex (concave) envelope
    of x * y on the box: both lower planes touch x * y at the corners (lx, uy) and (ux, ly), both upper ones
    at (lx, ly) and (ux, uy), so the combinations are tight there.

    Soundness: the *values* of the offsets are the exact corner extremes of x y - A x - B y for the tilts as
    computed (:func:`tilted_planes`, widened by a few ulps), so the planes are sound whatever r is and
    however the tilts were rounded. Their *gradients* are those of the closed forms
    -(r lx ly + (1 - r) ux uy) and -(r lx uy + (1 - r) ux ly), which equal the extremes in real arithmetic
    for r in [0, 1]; the extreme's own gradient at r = 1 (CROWN's start), where three corners tie, would
    average in a corner that is no longer extreme once r < 1."""
    rl, ru = r_lo.clamp(0.0, 1.0), r_up.clamp(0.0, 1.0)
    Al, Bl = rl * ly + (1 - rl) * uy, rl * lx + (1 - rl) * ux
    Au, Bu = ru * uy + (1 - ru) * ly, ru * lx + (1 - ru) * ux
    with torch.no_grad():  # values only (the gradients are the closed forms')
        exact = tilted_planes("mul", Al, Bl, Au, Bu, lx, ux, ly, uy)
    cl = -(rl * (lx * ly) + (1 - rl) * (ux * uy))
    cu = -(ru * (lx * uy) + (1 - ru) * (ux * ly))
    return PlaneRelaxation(Al, Bl, cl + (exact.lower_c - cl).detach(), Au, Bu, cu + (exact.upper_c - cu).detach())


def mul_parallel_planes(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> PlaneRelaxation:
    """Parallel planes for x * y (the zonotope transformer of a plain product): with centres m and
    half-widths h, x y = m_y x + m_x y - m_x m_y + (x - m_x)(y - m_y) and the last term lies in
    [-h_x h_y, h_x h_y]; the offsets are exactly those extremes, widened by a few ulps."""
    _check_box(lx, ux, ly, uy)
    mx, my, hx, hy = (lx + ux) / 2, (ly + uy) / 2, (ux - lx) / 2, (uy - ly) / 2
    c, r = -mx * my, hx * hy
    margin = safety_margin(c, r, (lx.abs() + ux.abs()) * (ly.abs() + uy.abs()))
    return PlaneRelaxation(my, mx, c - r - margin, my.clone(), mx.clone(), c + r + margin)


__all__ = ["sigmoid_tanh_planes", "sigmoid_mul_planes", "mccormick_planes", "mul_parallel_planes", "tilted_planes",
           "interpolated_mccormick", "MODES"]
