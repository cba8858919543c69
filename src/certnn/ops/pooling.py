"""Max pooling as a nonlinear op: windows are gathered with unfold, each window's max is bounded by the
lines of `certnn.relax.maxpool.max_relaxation`, and the backward rule scatters the chosen inputs'
coefficients back to the input positions (batched: no loop over windows or neurons).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..domains.interval import Interval
from ..relax.maxpool import MaxRelaxation, max_relaxation
from .base import Op
from .conv import _tuple


class MaxPool(Op):
    """y = max over each window (MaxPool1d/2d, ONNX MaxPool); x (B, C, *in) -> (B, C, *out).

    kernel/stride/padding/dilation: int or per spatial dim (stride defaults to the kernel); padding
    counts as -inf (never the max), as in PyTorch. Interval: [maxpool(l), maxpool(u)] (exact: max is
    monotone). Backward: lower line y >= x_j, upper line y <= a x_k + c per window (relax/maxpool.py).
    """

    kind = "maxpool"
    affine = False
    needs_input_bounds = True

    def __init__(self, kernel, stride=None, padding=0, dilation=1, ceil_mode: bool = False, nd: int | None = None):
        nd = nd or (len(kernel) if isinstance(kernel, (tuple, list)) else 2)
        self.nd = nd
        self.kernel = _tuple(kernel, nd)
        self.stride = _tuple(stride if stride is not None and stride != [] else kernel, nd)
        self.padding = _tuple(padding, nd)
        self.dilation = _tuple(dilation, nd)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        fn = F.max_pool1d if self.nd == 1 else F.max_pool2d
        return fn(x, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)

    def interval(self, ctx, x: Interval) -> Interval:
        return Interval(self.forward(x.lower), self.forward(x.upper))

    # -- windows ------------------------------------------------------------------------------
    def _as2d(self, t: tuple[int, ...]) -> tuple[int, int]:
        return (1, t[0]) if self.nd == 1 else (t[0], t[1])

    def _windows(self, t: Tensor, out_spatial: tuple[int, ...], fill: float) -> Tensor:
        """(N, C, *in) -> (N, C, L, K) window entries (L = out positions), padding = fill."""
        N, C = t.shape[:2]
        in2 = self._as2d(tuple(t.shape[2:]))
        out2 = self._as2d(tuple(out_spatial))
        k2, s2, d2 = (self._as2d(v) for v in (self.kernel, self.stride, self.dilation))
        p2 = (0, self.padding[0]) if self.nd == 1 else self.padding
        t2 = t.reshape(N, C, *in2)
        extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (i + 2 * p)) for o, s, d, k, i, p in zip(out2, s2, d2, k2, in2, p2)]
        tp = F.pad(t2, (p2[1], p2[1] + extra[1], p2[0], p2[0] + extra[0]), value=fill)
        cols = F.unfold(tp.reshape(N * C, 1, *tp.shape[2:]), k2, dilation=d2, stride=s2)  # (N*C, K, L')
        L = out2[0] * out2[1]
        cols = cols[:, :, :L]
        return cols.reshape(N, C, cols.shape[1], L).transpose(2, 3)

    def _index_map(self, in_spatial: tuple[int, ...], out_spatial: tuple[int, ...], device) -> Tensor:
        """(L, K) flat input index of each window entry (-1 for padding)."""
        n = 1
        for s in in_spatial:
            n *= s
        idx = torch.arange(n, dtype=torch.float64, device=device).reshape((1, 1) + tuple(in_spatial))
        return self._windows(idx, out_spatial, -1.0)[0, 0].round().long()

    def relaxation(self, l: Tensor, u: Tensor, out_spatial: tuple[int, ...]) -> tuple[MaxRelaxation, Tensor]:
        """Per-window relaxation (B, C, L) and the (L, K) index map, from input bounds (B, C, *in)."""
        rel = max_relaxation(self._windows(l, out_spatial, -torch.inf), self._windows(u, out_spatial, -torch.inf))
        return rel, self._index_map(tuple(l.shape[2:]), out_spatial, l.device)

    def backward(self, ctx, node_name, inputs, lA, uA):
        bounds = ctx.bounds[inputs[0]]
        in_shape = ctx.shape(inputs[0])
        out_spatial = tuple(ctx.shape(node_name)[1:])
        rel, imap = self.relaxation(bounds.lower, bounds.upper, out_spatial)
        B, C, L = rel.lower_index.shape
        L_arange = torch.arange(L, device=imap.device)
        jl = imap[L_arange.unsqueeze(0).unsqueeze(0), rel.lower_index].clamp(min=0)  # (B, C, L)
        ju = imap[L_arange.unsqueeze(0).unsqueeze(0), rel.upper_index].clamp(min=0)
        a = rel.upper_slope.unsqueeze(1)  # (B, 1, C, L)
        c = rel.upper_bias.unsqueeze(1)
        n_in = 1
        for s in in_shape[1:]:
            n_in *= s

        def push(A: Tensor, lower: bool) -> tuple[Tensor, Tensor]:
            S = A.shape[1]
            Af = A.reshape(B, S, C, L)
            pos, neg = Af.clamp(min=0), Af.clamp(max=0)
            # lower bound of A.y: positive coefficients take y's lower line, negative ones its upper line
            on_lower, on_upper = (pos, neg) if lower else (neg, pos)
            out = Af.new_zeros(B, S, C, n_in)
            out.scatter_add_(3, jl.unsqueeze(1).expand(B, S, C, L), on_lower)
            out.scatter_add_(3, ju.unsqueeze(1).expand(B, S, C, L), on_upper * a)
            bias = (on_upper * c).reshape(B, S, -1).sum(-1)
            return out.reshape((B, S) + tuple(in_shape)), bias

        lA_in = uA_in = lb = ub = None
        if lA is not None:
            lA_in, lb = push(lA, True)
        if uA is not None:
            uA_in, ub = push(uA, False)
        return [(lA_in, uA_in)], lb, ub

    def describe(self) -> str:
        return f"maxpool{self.nd}d(k={self.kernel}, s={self.stride}, p={self.padding}, d={self.dilation})"
