"""Shape ops: reshape/flatten, basic slicing, permutation, and the two-input merge ops (add, sub, concat)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.interval import Interval
from .base import AffineOp, Op


class Reshape(AffineOp):
    """Per-sample reshape (Flatten, view, reshape): (B, *in_shape) -> (B, *out_shape)."""

    kind = "reshape"

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape((x.shape[0],) + self.out_shape)

    def interval(self, ctx, x: Interval) -> Interval:
        return x.map(self.forward)

    def transpose(self, A: Tensor) -> Tensor:
        return A.reshape(A.shape[:2] + self.in_shape)

    def describe(self) -> str:
        return f"reshape({self.in_shape}->{self.out_shape})"


class Slice(AffineOp):
    """Basic indexing of one sample (slices and integers, no advanced indexing): y = x[:, *index]."""

    kind = "slice"

    def __init__(self, in_shape: tuple[int, ...], index: tuple):
        self.in_shape = tuple(in_shape)
        self.index = tuple(index)

    def forward(self, x: Tensor) -> Tensor:
        return x[(slice(None),) + self.index]

    def interval(self, ctx, x: Interval) -> Interval:
        return x.map(self.forward)

    def transpose(self, A: Tensor) -> Tensor:
        out = A.new_zeros(A.shape[:2] + self.in_shape)
        out[(slice(None), slice(None)) + self.index] = A
        return out


class Permute(AffineOp):
    """Permutation of the per-sample dims: y = x.permute(0, *(1 + p for p in perm))."""

    kind = "permute"

    def __init__(self, perm: tuple[int, ...]):
        self.perm = tuple(perm)
        inv = [0] * len(perm)
        for i, p in enumerate(perm):
            inv[p] = i
        self.inv = tuple(inv)

    def forward(self, x: Tensor) -> Tensor:
        return x.permute((0,) + tuple(p + 1 for p in self.perm))

    def interval(self, ctx, x: Interval) -> Interval:
        return x.map(self.forward)

    def transpose(self, A: Tensor) -> Tensor:
        return A.permute((0, 1) + tuple(p + 2 for p in self.inv))


class Add(Op):
    """y = x1 + x2 (residual connections), or x1 - x2 when sign = -1."""

    kind = "add"

    def __init__(self, sign: float = 1.0):
        self.sign = float(sign)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + self.sign * b

    def interval(self, ctx, a: Interval, b: Interval) -> Interval:
        if self.sign > 0:
            return Interval(a.lower + b.lower, a.upper + b.upper)
        return Interval(a.lower - b.upper, a.upper - b.lower)

    def backward(self, ctx, node_name, inputs, lA, uA):
        def neg(t):
            return None if t is None else (t if self.sign > 0 else -t)

        def unbroadcast(t, shape):
            return t if t is None else _sum_to(t, shape)

        sa, sb = ctx.shape(inputs[0]), ctx.shape(inputs[1])
        return [(unbroadcast(lA, sa), unbroadcast(uA, sa)),
                (unbroadcast(neg(lA), sb), unbroadcast(neg(uA), sb))], None, None


def _sum_to(A: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum coefficient dims that were broadcast in the forward pass: (B, S, *out) -> (B, S, *shape)."""
    out = tuple(A.shape[2:])
    if out == tuple(shape):
        return A
    lead = len(out) - len(shape)
    dims = list(range(2, 2 + lead))
    for i, (o, s) in enumerate(zip(out[lead:], shape)):
        if s == 1 and o != 1:
            dims.append(2 + lead + i)
    A = A.sum(dim=dims, keepdim=True) if dims else A
    return A.reshape(A.shape[:2] + tuple(shape))


class Concat(Op):
    """y = cat(xs, dim) along a per-sample dim (dim counts from 0 = first per-sample dim)."""

    kind = "concat"

    def __init__(self, dim: int, sizes: tuple[int, ...]):
        self.dim = dim
        self.sizes = tuple(sizes)

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=self.dim + 1)

    def interval(self, ctx, *xs: Interval) -> Interval:
        return Interval(torch.cat([x.lower for x in xs], self.dim + 1), torch.cat([x.upper for x in xs], self.dim + 1))

    def backward(self, ctx, node_name, inputs, lA, uA):
        ls = torch.split(lA, self.sizes, dim=self.dim + 2) if lA is not None else [None] * len(self.sizes)
        us = torch.split(uA, self.sizes, dim=self.dim + 2) if uA is not None else [None] * len(self.sizes)
        return list(zip(ls, us)), None, None
