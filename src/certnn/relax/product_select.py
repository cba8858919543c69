"""Product planes with given tilts, offsets computed only where a backward pass uses them.

A lower-bound backward pass through F(x, y) with coefficients Lambda (B, S, *shape) takes, per element, the
lower plane where Lambda > 0 and the upper plane where Lambda < 0 (ops/product.py: pos * lower + neg *
upper). With per-row tilts (alpha-CROWN, optimize/lines.py) every element has its own planes, and the
exact offsets (relax.product_sided: corners, edges, an interior Newton solve) are the expensive part; the
unused side's offset is multiplied by zero. :func:`selected_tilted_planes` computes one offset per
element: the lower one where Lambda > 0, the upper one where Lambda <= 0, and at Lambda = 0 the lower
one too when Lambda requires grad (d(pos * c_l + neg * c_u) / d Lambda is c_l + c_u there: autograd's
clamps pass both sides at 0). The offsets not computed are 0.

The sided computation runs on the coefficients' shape with a side per element (relax.product_sided takes
a tensor of sides) instead of on the two sides stacked: half the elements, the box keeping its own
(broadcast) shape. The bound is the same as with both offsets (pos * c_l + neg * c_u has the same terms: a
zero times a finite offset is a zero either way), and so are the gradients. The offsets themselves are the same
values as relax.products.tilted_planes' up to the last ulp of elementwise functions, which may differ
between a tensor's vectorised body and its tail (the elements sit at other positions); both are sound.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .product_extremes import WORK_DTYPE
from .products import PRODUCT_FNS, _widened, tilted_planes
from .types import PlaneRelaxation


def selected_tilted_planes(kind: str, Al: Tensor, Bl: Tensor, Au: Tensor, Bu: Tensor, lx: Tensor, ux: Tensor,
                           ly: Tensor, uy: Tensor, coef: Tensor) -> PlaneRelaxation:
    """relax.products.tilted_planes with the offsets computed only where a lower-bound pass with
    coefficients `coef` (the planes' broadcast shape) uses them (module docstring); 0 elsewhere. One
    sided computation on coef's shape (the lower side where coef > 0, the upper one elsewhere; the box
    keeps its own shape), and a second one on the elements coef == 0 when coef requires grad."""
    fn = PRODUCT_FNS.get(kind)
    if fn is None or fn.sided is None:  # x * y: closed forms, nothing to save
        return tilted_planes(kind, Al, Bl, Au, Bu, lx, ux, ly, uy)
    out = lx.dtype
    c = coef.detach()
    lower = c > 0
    box = [t.to(WORK_DTYPE) for t in (lx, ux, ly, uy)]
    A = torch.where(lower, Al, Au).to(WORK_DTYPE)
    B = torch.where(lower, Bl, Bu).to(WORK_DTYPE)
    side = torch.where(lower, -1.0, 1.0).to(A.dtype)
    ext, slack = fn.sided(A, B, *box, side)
    lo, hi = _widened(fn, A, B, box, ext, ext, slack, out)
    zero = torch.zeros((), dtype=out, device=lx.device)
    cl, cu = torch.where(lower, lo, zero), torch.where(lower, zero, hi)
    if coef.requires_grad and torch.is_grad_enabled():  # d/d coef at 0 is c_l + c_u: the lower side too
        iz = torch.nonzero((c == 0).reshape(-1)).reshape(-1)
        if iz.numel():
            shape = c.shape
            flat = lambda t: torch.broadcast_to(t, shape).reshape(-1).index_select(0, iz).to(WORK_DTYPE)  # noqa: E731
            Az, Bz, bz = flat(Al), flat(Bl), [flat(t) for t in box]
            ez, sz = fn.sided(Az, Bz, *bz, Az.new_full(iz.shape, -1.0))
            lz, _ = _widened(fn, Az, Bz, bz, ez, ez, sz, out)
            cl = cl.reshape(-1).index_copy(0, iz, lz).reshape(shape)
    return PlaneRelaxation(Al, Bl, cl, Au, Bu, cu)


__all__ = ["selected_tilted_planes"]
