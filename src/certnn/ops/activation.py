"""Elementwise activations: the op asks the method's relaxation table for lines on [l, u].

All supported activations are monotone nondecreasing, so their interval image is [f(l), f(u)].
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.interval import Interval
from .base import Op
from .line_push import dense_dot, drop_zero, push_lines

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
        """Lines of the method (or optimised lines, ctx.line_params, which may differ per spec row) per
        sign of the coefficients; a split constraint's Lagrangian term (ctx.split_terms, beta-CROWN) is
        added to the lower-bound coefficients of the input."""
        bounds = ctx.bounds[inputs[0]]
        rel = ctx.relaxation(self, node_name, bounds.lower, bounds.upper, lA if uA is None else None)
        like = lA if lA is not None else uA
        ls, us = per_row(rel.lower_slope, like), per_row(rel.upper_slope, like)
        lb, ub = (None if b is None else per_row(b, like) for b in (drop_zero(rel.lower_bias),
                                                                      drop_zero(rel.upper_bias)))
        split = ctx.split_terms.get(node_name)
        if split is not None and uA is not None:
            raise ValueError("split constraints apply to lower bounds only (bound -C for upper bounds)")
        # parallel lines (Fast-Lin): one coefficient tensor serves both sides
        same = lA is not None and lA is uA and split is None and torch.equal(rel.lower_slope, rel.upper_slope)
        lA_in, uA_in, lbias, ubias = push_lines(lA, uA, ls, lb, us, ub, dense_dot, same)
        if split is not None and lA_in is not None:
            lA_in = lA_in + split
        return [(lA_in, uA_in)], lbias, ubias

    def describe(self) -> str:
        return self.kind


def per_row(t: Tensor, A: Tensor) -> Tensor:
    """A per-neuron tensor (B, *shape) as (B, 1, *shape) to broadcast over the spec rows of coefficients
    A (B, S, *shape); tensors that already carry a row dim (optimised lines, (B, S or 1, *shape)) pass."""
    return t if t.dim() == A.dim() else t.unsqueeze(1)

