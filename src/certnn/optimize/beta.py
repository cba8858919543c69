"""beta-CROWN's split multipliers: the Lagrangian of branch-and-bound split constraints in the bound.

Wang, Zhang, Xu, Lin, Jana, Hsieh, Kolter, "Beta-CROWN: Efficient Bound Propagation with Per-neuron Split
Constraints for Neural Network Robustness Verification", NeurIPS 2021.

A sub-domain of branch and bound fixes some ReLUs to one side: s_i z_i >= 0 with s_i = +1 (z_i >= 0, the
neuron is active) or s_i = -1 (z_i <= 0, inactive), z the ReLU's input. The split neurons' intervals are
clipped accordingly ([max(l, 0), u] or [l, min(u, 0)]), which makes their relaxation exact; beta-CROWN
also enforces the constraints on everything *before* the ReLU: for any beta_i >= 0,

    min_x f(x) s.t. s z(x) >= 0   >=   min_x [ f(x) - sum_i beta_i s_i z_i(x) ],

since the subtracted terms are >= 0 wherever the constraints hold. The right-hand side is a linear bound
whose backward pass gains the coefficient -beta_i s_i at z_i (engine: ctx.split_terms), so it is sound
for every beta >= 0 (the projection keeps beta there) and beta is optimised jointly with alpha.
"""
from __future__ import annotations

from torch import Tensor

from .lines import Params


class SplitBetas(Params):
    """beta (B, S, *shape) >= 0 for the split constraints of one ReLU node; sign (B, *shape) in {-1, 0, 1}
    (0: the neuron is not split; its beta has no effect)."""

    opt_fields = ("beta",)
    const_fields = ("sign",)

    def step_size(self, cfg) -> float:
        return cfg.beta_lr

    def __init__(self, sign: Tensor, beta: Tensor):
        self.sign = sign
        self.beta = beta

    def term(self) -> Tensor:
        """The coefficients -beta * s (B, S, *shape) added at the ReLU's input (lower-bound passes)."""
        return -self.beta * self.sign.unsqueeze(1)

    def project(self) -> None:
        self.beta.data.clamp_(min=0.0)
        self.beta.data.mul_(self.sign.unsqueeze(1) != 0)
