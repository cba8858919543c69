"""Two-input products of recurrent cells, as fused IR ops on the gates' *pre-activations*.

    SigmoidTanhMul(x, y) = sigmoid(x) * tanh(y)   (LSTM: o * tanh(c), i * tanh(g); GRU: (1 - z) * n)
    SigmoidMul(x, y)     = sigmoid(x) * y         (LSTM: f * c;  GRU: z * h, r * (U h + b))
    Mul(x, y)            = x * y                  (a plain product of two nodes)

Fusing the gate's sigmoid into the product lets a method bound the whole function with planes
(`relax.products`: Cert-RNN's parallel planes, POPQORN's lower/upper planes, McCormick), which is much
tighter than bounding sigmoid, then tanh, then a product. Both inputs have the same per-sample shape.

Interval rule: each function is monotone in each argument once the other is fixed (sigmoid > 0, tanh
increasing; the direction in x flips with the sign of the second factor), so the extremes over a box are
attained at its four corners: the interval image is the min / max over the corners.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.interval import Interval
from .base import Op


class _Product(Op):
    affine = False
    needs_input_bounds = True

    def fn(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.fn(x, y)

    def interval(self, ctx, x: Interval, y: Interval) -> Interval:
        corners = torch.stack([self.fn(x.lower, y.lower), self.fn(x.lower, y.upper),
                               self.fn(x.upper, y.lower), self.fn(x.upper, y.upper)])
        return Interval(corners.amin(0), corners.amax(0))


class SigmoidTanhMul(_Product):
    kind = "sigmoid_tanh_mul"

    def fn(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(x) * torch.tanh(y)


class SigmoidMul(_Product):
    kind = "sigmoid_mul"

    def fn(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(x) * y


class Mul(_Product):
    kind = "mul"

    def fn(self, x: Tensor, y: Tensor) -> Tensor:
        return x * y


PRODUCTS = {c.kind: c for c in (SigmoidTanhMul, SigmoidMul, Mul)}
