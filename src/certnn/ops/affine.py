"""Affine ops: Linear, elementwise affine (input normalisation, arithmetic with constants)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.interval import Interval
from .base import AffineOp, sum_out


class Linear(AffineOp):
    """y = x W^T + b over the last dimension (nn.Linear, Gemm). W: (out, in), b: (out,) or None."""

    kind = "linear"

    def __init__(self, weight: Tensor, bias: Tensor | None):
        self.weight = weight
        self.bias = bias

    def to(self, dtype=None, device=None):
        return Linear(self.weight.to(dtype=dtype, device=device),
                      None if self.bias is None else self.bias.to(dtype=dtype, device=device))

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight, self.bias)

    def interval(self, ctx, x: Interval) -> Interval:
        mid = torch.nn.functional.linear(x.center, self.weight, self.bias)
        rad = torch.nn.functional.linear(x.radius, self.weight.abs())
        return Interval(mid - rad, mid + rad)

    def transpose(self, A: Tensor) -> Tensor:
        return A @ self.weight

    def bias_term(self, A: Tensor) -> Tensor | None:
        if self.bias is None:
            return None
        return sum_out(A @ self.bias)  # a matrix-vector product: no full-size temporary

    def identity_start(self, batch: int) -> tuple[Tensor, Tensor | None]:
        """Coefficients at the input and bias when the spec is the identity on this op's output (B, n, in)."""
        out = self.weight.shape[0]
        A = self.weight.unsqueeze(0).expand(batch, out, self.weight.shape[1])
        b = None if self.bias is None else self.bias.unsqueeze(0).expand(batch, out)
        return A, b

    def describe(self) -> str:
        return f"linear({self.weight.shape[1]}->{self.weight.shape[0]})"


class ElementwiseAffine(AffineOp):
    """y = x * scale + shift with per-sample-broadcastable constants (normalisation, x - c, x / c, ...)."""

    kind = "elementwise_affine"

    def __init__(self, scale: Tensor | float | None = None, shift: Tensor | float | None = None):
        self.scale = None if scale is None else torch.as_tensor(scale)
        self.shift = None if shift is None else torch.as_tensor(shift)

    def to(self, dtype=None, device=None):
        return ElementwiseAffine(None if self.scale is None else self.scale.to(dtype=dtype, device=device),
                                 None if self.shift is None else self.shift.to(dtype=dtype, device=device))

    def forward(self, x: Tensor) -> Tensor:
        y = x if self.scale is None else x * self.scale
        return y if self.shift is None else y + self.shift

    def interval(self, ctx, x: Interval) -> Interval:
        mid = self.forward(x.center)
        rad = x.radius if self.scale is None else x.radius * self.scale.abs()
        rad = torch.broadcast_to(rad, mid.shape)
        return Interval(mid - rad, mid + rad)

    def transpose(self, A: Tensor) -> Tensor:
        if self.scale is None:
            return A
        out = A * self.scale
        return out

    def bias_term(self, A: Tensor) -> Tensor | None:
        if self.shift is None:
            return None
        return sum_out(A * self.shift)


def normalize(mean, std) -> ElementwiseAffine:
    """(x - mean) / std as an affine op; mean/std broadcastable to one input (e.g. (C, 1, 1))."""
    mean = torch.as_tensor(mean, dtype=torch.float64)
    std = torch.as_tensor(std, dtype=torch.float64)
    return ElementwiseAffine(1.0 / std, -mean / std)
