"""Elementwise activations: the op asks the method's relaxation table for lines on [l, u].

All supported activations are monotone nondecreasing, so their interval image is [f(l), f(u)].
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.interval import Interval
from .base import Op

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "arctan", "hardtanh")


class Activation(Op):
    """y = f(x) elementwise, f one of ACTIVATIONS; params: negative_slope (leaky_relu), min_val/max_val."""

    affine = False
    needs_input_bounds = True

    def __init__(self, kind: str, **params: float):
        if kind not in ACTIVATIONS:
            raise ValueError(kind)
        self.kind = kind
        self.params = dict(params)

    def forward(self, x: Tensor) -> Tensor:
        k = self.kind
        if k == "relu":
            return torch.relu(x)
        if k == "leaky_relu":
            return torch.nn.functional.leaky_relu(x, self.params.get("negative_slope", 0.01))
        if k == "sigmoid":
            return torch.sigmoid(x)
        if k == "tanh":
            return torch.tanh(x)
        if k == "arctan":
            return torch.atan(x)
        return x.clamp(self.params.get("min_val", -1.0), self.params.get("max_val", 1.0))

    def lipschitz(self) -> float:
        if self.kind == "sigmoid":
            return 0.25
        if self.kind == "leaky_relu":
            return max(1.0, abs(self.params.get("negative_slope", 0.01)))
        return 1.0

    def interval(self, ctx, x: Interval) -> Interval:
        return Interval(self.forward(x.lower), self.forward(x.upper))

    def exact_on(self, l: Tensor, u: Tensor) -> Tensor | None:
        """Where every relaxation of this op is exact on [l, u] (tighter bounds would not help); None if
        that is never known in advance (smooth activations)."""
        if self.kind in ("relu", "leaky_relu"):
            return (l >= 0) | (u <= 0)
        if self.kind == "hardtanh":
            lo, hi = self.params.get("min_val", -1.0), self.params.get("max_val", 1.0)
            return (u <= lo) | (l >= hi) | ((l >= lo) & (u <= hi))
        return None

    def backward(self, ctx, node_name, inputs, lA, uA):
        bounds = ctx.bounds[inputs[0]]
        rel = ctx.relaxation(self, node_name, bounds.lower, bounds.upper)
        ls, lb = rel.lower_slope.unsqueeze(1), rel.lower_bias.unsqueeze(1)
        us, ub = rel.upper_slope.unsqueeze(1), rel.upper_bias.unsqueeze(1)
        lA_in = uA_in = lbias = ubias = None
        if lA is not None and lA is uA and torch.equal(rel.lower_slope, rel.upper_slope):
            # parallel lines (Fast-Lin): one coefficient tensor serves both sides
            A_in = lA * ls
            pos, neg = lA.clamp(min=0), lA.clamp(max=0)
            return [(A_in, A_in)], _flat_sum(pos * lb + neg * ub), _flat_sum(pos * ub + neg * lb)
        if lA is not None:
            pos, neg = lA.clamp(min=0), lA.clamp(max=0)
            lA_in = pos * ls + neg * us
            lbias = _flat_sum(pos * lb + neg * ub)
        if uA is not None:
            pos, neg = uA.clamp(min=0), uA.clamp(max=0)
            uA_in = pos * us + neg * ls
            ubias = _flat_sum(pos * ub + neg * lb)
        return [(lA_in, uA_in)], lbias, ubias

    def describe(self) -> str:
        return self.kind


def _flat_sum(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], t.shape[1], -1).sum(-1)
