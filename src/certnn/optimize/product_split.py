"""alpha-CROWN's parameters of sigma(x) * y (ops/product.py `SigmoidMul`, the GRU's r * (U h + b)) as the
*decomposed* relaxation: a line of sigma (a tangent point, as optimize/sshape_points.py) composed with a plane
between the two McCormick planes of s * y on the box of s = sigma(x) (as optimize/product_mix.py):

    lower plane of s y:  A_s s + B y + c,  A_s = r ly + (1 - r) uy,  B = r s_l + (1 - r) s_u
    s replaced by sigma's lower line k_lo x + b (A_s >= 0) or its upper line k_up x + b (A_s < 0)
    -> the tilt (A_s k, B) of a plane of F = sigma(x) y   (upper plane mirrored)

which is the parameter space of auto_LiRPA's CROWN-Optimized on an unrolled twin (sigmoid alphas, then
McCormick weights), but the offsets are then the *exact* extremes of F - A x - B y on the box
(relax.products.tilted_planes), so each plane is at least as tight as the composition it came from.

Start: McCormick weights 1 and sigma's lines CROWN's (auto_LiRPA's start on the twin), not CROWN's own plane
of the fused product (the blend plane, not in this family): the first iterate can be looser than CROWN's
bound; the result is floored at CROWN's bound and intermediate bounds are intersected with CROWN's
(optimize/alpha_crown.py), so `alpha-crown` is never looser than `crown`. Measured (20 iterations, mean margin
lower bound vs auto_LiRPA CROWN-Optimized, 3 MNIST images): gru-1-32 +0.15% (tilts) -> +5.24% (worst margin
-4.6% -> -0.40%), lstm-1-32 +1.41% -> +4.80% (worst -1.55% -> +0.78%); lr_scale 1.0 gave +4.68% on the GRU.

Soundness: only the tilt comes from the parameters; the offsets are exact for any tilt.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..relax.product_select import selected_tilted_planes
from ..relax.products import tilted_planes
from ..relax.sshape import SIGMOID, sshape_relaxation
from ..relax.types import PlaneRelaxation
from .lines import Params
from .sshape_points import SShapeTangents, shared_tangent_ranges


class SigmoidMulSplit(Params):
    """McCormick weights r_lo, r_up and sigma's tangent positions s_lo, s_up, (B, S or 1, *shape) each."""

    opt_fields = ("r_lo", "r_up", "s_lo", "s_up")
    planes = True
    #: measured on gru-1-32 (3 images, 20 iterations, mean margin vs auto_LiRPA): 1.0 +4.68%, 0.5 +5.24%
    lr_scale = 0.5

    def __init__(self, r_lo: Tensor, r_up: Tensor, s_lo: Tensor, s_up: Tensor):
        self.r_lo, self.r_up, self.s_lo, self.s_up = r_lo, r_up, s_lo, s_up

    @staticmethod
    def create(op, pl: PlaneRelaxation, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, rows: int) -> "SigmoidMulSplit":
        """auto_LiRPA's start: McCormick weights 1, sigma's lines CROWN's (the blend rule) as tangent positions."""
        base = sshape_relaxation(SIGMOID, lx.detach(), ux.detach())
        s_lo, s_up = SShapeTangents.initial(SIGMOID, base, lx.detach(), ux.detach(), rows)
        return SigmoidMulSplit(torch.ones_like(s_lo), torch.ones_like(s_up), s_lo, s_up)

    def project(self) -> None:
        for t in self.tensors():
            t.data.clamp_(0.0, 1.0)

    def __call__(self, op, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> PlaneRelaxation:
        return tilted_planes("sigmoid_mul", *self.tilts(lx, ux, ly, uy))

    def selected(self, op, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, coef: Tensor) -> PlaneRelaxation:
        """The planes with offsets only where a lower-bound pass with coefficients `coef` uses them
        (relax.product_select)."""
        return selected_tilted_planes("sigmoid_mul", *self.tilts(lx, ux, ly, uy), coef)

    def tilts(self, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> tuple[Tensor, ...]:
        """(Al, Bl, Au, Bu, lx, ux, ly, uy): the composed tilts and the box with a row dim."""
        ranges = shared_tangent_ranges(SIGMOID, lx, ux)
        lx, ux, ly, uy = (t.unsqueeze(1) for t in (lx, ux, ly, uy))
        lo_a, lo_b, lo_chord, up_a, up_b, up_chord, k_chord = (t.unsqueeze(1) for t in ranges)
        k_lo = torch.where(lo_chord, k_chord, SIGMOID.df(lo_a + self.s_lo.clamp(0, 1) * (lo_b - lo_a)))
        k_up = torch.where(up_chord, k_chord, SIGMOID.df(up_a + self.s_up.clamp(0, 1) * (up_b - up_a)))
        sl, su = torch.sigmoid(lx), torch.sigmoid(ux)
        rl, ru = self.r_lo.clamp(0, 1), self.r_up.clamp(0, 1)
        As_l, Bl = rl * ly + (1 - rl) * uy, rl * sl + (1 - rl) * su
        As_u, Bu = ru * uy + (1 - ru) * ly, ru * sl + (1 - ru) * su
        Al = As_l * torch.where(As_l >= 0, k_lo, k_up)
        Au = As_u * torch.where(As_u >= 0, k_up, k_lo)
        return Al, Bl, Au, Bu, lx, ux, ly, uy


__all__ = ["SigmoidMulSplit"]
