"""Relaxations are values: lines (or planes) that bound a function on a box.

All tensors share the shape of the bounds they were computed from (batch first).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LinearRelaxation:
    """Two lines enclosing a scalar function f on [l, u], elementwise:

        lower_slope * x + lower_bias  <=  f(x)  <=  upper_slope * x + upper_bias   for x in [l, u].
    """

    lower_slope: Tensor
    lower_bias: Tensor
    upper_slope: Tensor
    upper_bias: Tensor

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.lower_slope * x + self.lower_bias, self.upper_slope * x + self.upper_bias


@dataclass(frozen=True)
class PlaneRelaxation:
    """Two planes enclosing a two-input function F(x, y) on [lx, ux] x [ly, uy], elementwise:

        a_l * x + b_l * y + c_l  <=  F(x, y)  <=  a_u * x + b_u * y + c_u.
    """

    lower_a: Tensor
    lower_b: Tensor
    lower_c: Tensor
    upper_a: Tensor
    upper_b: Tensor
    upper_c: Tensor

    def evaluate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        lo = self.lower_a * x + self.lower_b * y + self.lower_c
        hi = self.upper_a * x + self.upper_b * y + self.upper_c
        return lo, hi


#: Weight of the worst case in the criterion that chooses non-optimised lines and planes ("blend"): a lower
#: line (plane) maximises (1 - BLEND_KAPPA) * its mean + BLEND_KAPPA * its minimum over the box, an upper
#: one minimises (1 - BLEND_KAPPA) * mean + BLEND_KAPPA * max. 0 is the minimal-area (volume) choice, 1 the
#: interval worst case. 0.2 measured best over the models of docs/benchmarks.md (issue 12, part 1).
BLEND_KAPPA = 0.2


def safety_margin(*values: Tensor) -> Tensor:
    """A few ulps of the largest magnitude involved: added to offsets computed in floating point so that
    rounding in the evaluation of f cannot push a bound across f."""
    ref = values[0]
    eps = torch.finfo(ref.dtype).eps
    mag = torch.zeros_like(ref)
    for v in values:
        mag = torch.maximum(mag, v.abs())
    return 8 * eps * (1.0 + mag)
