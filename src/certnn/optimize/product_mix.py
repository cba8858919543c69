"""alpha-CROWN's parameters of a plain product x * y (ops/product.py `Mul`, the GRU update's (1 - s) n and
s h): weights r in [0, 1] between the two McCormick planes of each side (relax.products.interpolated_mccormick),
one per neuron and spec row, as auto_LiRPA's CROWN-Optimized parameterises its products.

Why not the tilts of optimize/lines.PlaneTilts: for x * y the planes worth having are the supporting planes
of the box's convex (concave) envelope, i.e. the segment between the two McCormick planes; a tilt moves A and
B independently, mostly off that segment (a plane touching x * y at one corner only), its step size has to
suit the fused products' curved surfaces too, and at CROWN's start three corners tie, so the tie-averaged
gradient of its offset is biased. Measured on the gru-1-32 MNIST model (3 images, eps 0.01, 20 iterations,
mean margin lower bound; auto_LiRPA CROWN-Optimized 2.2001): tilts 1.9824, weights 2.2045 (lr_scale 0.4:
2.2048).

Which parameterisation each product kind gets is :data:`PLANE_PARAMETERS`: sigma(x) y takes the split
parameters of optimize/product_split.py (2.2045 -> 2.3577 on the same GRU; LSTM-1-32, 3 images, eps 0.008:
3.0327 -> 3.1477, auto_LiRPA 2.9849), sigma(x) tanh(y) keeps the tilts.

Soundness: every r (even outside [0, 1]) gives planes whose offsets are exact corner extremes on the current
box (relax.products.interpolated_mccormick), so every iterate is sound.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..relax.products import interpolated_mccormick
from ..relax.types import PlaneRelaxation
from .lines import Params, PlaneTilts
from .product_split import SigmoidMulSplit


def _weight(a: Tensor, at_one: Tensor, at_zero: Tensor) -> Tensor:
    """r with a = r at_one + (1 - r) at_zero, clamped to [0, 1]; 1 where the segment has no length."""
    w = at_one - at_zero
    ok = w != 0
    r = torch.where(ok, (a - at_zero) / torch.where(ok, w, torch.ones_like(w)), torch.ones_like(a))
    return r.clamp(0.0, 1.0)


class McCormickMix(Params):
    """Weights r_lo, r_up (B, S or 1, *shape) of the lower and upper planes of x * y between the two
    McCormick planes of each side."""

    opt_fields = ("r_lo", "r_up")
    planes = True
    #: r spans [0, 1], as ReLU slopes do
    lr_scale = 1.0

    def __init__(self, r_lo: Tensor, r_up: Tensor):
        self.r_lo = r_lo
        self.r_up = r_up

    @staticmethod
    def create(op, pl: PlaneRelaxation, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, rows: int) -> "McCormickMix":
        """Weights reproducing the base method's planes `pl` on the box (CROWN's McCormick planes: r = 1),
        repeated over `rows` rows. A base plane off the segment starts at the nearest end by its x-slope."""
        r_lo = _weight(pl.lower_a.detach(), ly, uy)
        r_up = _weight(pl.upper_a.detach(), uy, ly)
        shape = (lx.shape[0], rows) + tuple(lx.shape[1:])
        return McCormickMix(r_lo.unsqueeze(1).expand(shape).clone(), r_up.unsqueeze(1).expand(shape).clone())

    def project(self) -> None:
        self.r_lo.data.clamp_(0.0, 1.0)
        self.r_up.data.clamp_(0.0, 1.0)

    def __call__(self, op, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> PlaneRelaxation:
        box = [t.unsqueeze(1) for t in (lx, ux, ly, uy)]
        return interpolated_mccormick(*box, self.r_lo, self.r_up)


#: product kind -> parameter class of its planes under alpha-CROWN
PLANE_PARAMETERS: dict[str, type[Params]] = {
    "mul": McCormickMix,
    "sigmoid_mul": SigmoidMulSplit,
    "sigmoid_tanh_mul": PlaneTilts,
}


def make_plane_params(op, pl: PlaneRelaxation, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, rows: int) -> Params:
    """Parameters of a product op's planes on the box, initialised at the base method's planes `pl`."""
    return PLANE_PARAMETERS[op.kind].create(op, pl, lx, ux, ly, uy, rows)


__all__ = ["McCormickMix", "PLANE_PARAMETERS", "make_plane_params"]
