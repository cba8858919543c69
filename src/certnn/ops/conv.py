"""Convolutional affine ops in *convolutional form* (CNN-Cert, Boopathy et al. AAAI 2019).

Backward coefficients A (B, S, C_out, *out) are pushed through a convolution with a transposed
convolution (B and S folded into the batch dim of F.conv_transpose{1,2}d), never by unrolling the conv
into a dense (neurons x input-size) matrix. Pooling by averaging is the same idea with a ones kernel.

Every op here needs the spatial input size for its transpose (a strided conv maps several input sizes to
one output size). The backward rule takes it from the graph (`ctx.shape(input)`); a direct call of
`transpose(A, in_shape)` passes it explicitly (without it the smallest compatible input is assumed).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..domains.interval import Interval
from .base import AffineOp, sum_out


def _tuple(v, n: int) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return (int(v[0]),) * n
        if len(v) != n:
            raise ValueError(f"expected {n} values, got {tuple(v)}")
        return tuple(int(x) for x in v)
    return (int(v),) * n


class SpatialAffineOp(AffineOp):
    """An affine op whose transpose needs the per-sample input shape (taken from the graph)."""

    def transpose(self, A: Tensor, in_shape: tuple[int, ...] | None = None) -> Tensor:  # type: ignore[override]
        raise NotImplementedError

    def backward(self, ctx, node_name, inputs, lA, uA):
        in_shape = ctx.shape(inputs[0])
        if lA is not None and lA is uA:
            A_in = self.transpose(lA, in_shape)
            b = self.bias_term(lA)
            return [(A_in, A_in)], b, b
        lA_in = self.transpose(lA, in_shape) if lA is not None else None
        uA_in = self.transpose(uA, in_shape) if uA is not None else None
        lb = self.bias_term(lA) if lA is not None else None
        ub = self.bias_term(uA) if uA is not None else None
        return [(lA_in, uA_in)], lb, ub


def _fit(t: Tensor, spatial: tuple[int, ...], start: int = 0) -> Tensor:
    """Zero-pad (at the end) or crop the trailing len(spatial) dims of t to `spatial` (from index start)."""
    nd = len(spatial)
    idx = [slice(None)] * (t.ndim - nd)
    pads: list[int] = []
    for i, s in enumerate(spatial):
        have = t.shape[t.ndim - nd + i]
        idx.append(slice(start, start + s) if have >= start + s else slice(start, have))
    t = t[tuple(idx)]
    for i in reversed(range(nd)):
        have = t.shape[t.ndim - nd + i]
        pads += [0, max(0, spatial[i] - have)]
    return F.pad(t, pads) if any(pads) else t


#: largest im2col buffer (entries) of one conv_transpose3d call in `conv_transpose_rows` (2 MB in float64:
#: it stays in cache between the product and the scatter; 1.2-1.4x faster than 2^22 on 2000-row passes)
ROWS_COLUMNS = 1 << 18


def conv_transpose_rows(A: Tensor, weight: Tensor, stride, padding, output_padding, groups: int,
                        dilation) -> Tensor:
    """conv_transpose2d of every row of A (B, R, C_out, h, w) -> (B, R, C_in, H, W).

    float64 on CPU: the rows are the depth of one conv_transpose3d per sample with a depth-1 kernel.
    PyTorch's float64 CPU kernel (float64 has no oneDNN path) loops over the batch with one small product
    per image, so R rows as R images cost R small products, as a depth one large product (1.5-3x less CPU
    time at R ~ 2000 on windows of 3-12 pixels). Rows go in chunks whose im2col buffer stays under
    ROWS_COLUMNS entries. The same sums, in a different blocking of the products (results equal to ~1 ulp).
    float32 (oneDNN's conv_transpose2d is as fast or faster on most of these shapes), other devices and a
    single row take conv_transpose2d over the folded (B * R) batch."""
    B, R = A.shape[:2]
    if A.device.type != "cpu" or A.dtype != torch.float64 or R == 1:
        flat = A.reshape((B * R,) + tuple(A.shape[2:]))
        x = F.conv_transpose2d(flat, weight, None, stride, padding, output_padding, groups, dilation)
        return x.reshape((B, R) + tuple(x.shape[1:]))
    h, w = A.shape[3:]
    per_row = weight.shape[1] * groups * weight.shape[2] * weight.shape[3] * h * w
    step = max(1, ROWS_COLUMNS // max(1, per_row))
    w3 = weight.unsqueeze(2)
    args = ((1,) + tuple(stride), (0,) + tuple(padding), (0,) + tuple(output_padding), groups, (1,) + tuple(dilation))
    out = None
    for r0 in range(0, R, step):  # each chunk written into the result: one chunk-sized temporary at a time
        y = F.conv_transpose3d(A[:, r0:r0 + step].transpose(1, 2), w3, None, *args)
        if out is None:
            out = y.new_empty((B, R, y.shape[1]) + tuple(y.shape[3:]))
        out[:, r0:r0 + step] = y.transpose(1, 2)
    return out


class Conv(SpatialAffineOp):
    """y = conv(x, W) + b, 1-D or 2-D (Conv1d/Conv2d, ONNX Conv with symmetric pads).

    W: (C_out, C_in / groups, *k) with len(k) = 1 or 2; b: (C_out,) or None. stride/padding/dilation:
    an int or a tuple per spatial dim. x: (B, C_in, *in), y: (B, C_out, *out).
    Transpose: A (B, S, C_out, *out) -> (B, S, C_in, *in) by conv_transpose over the folded (B*S) batch,
    then zero-filled at the end for input rows/cols the strided windows never touch.
    Interval: center/radius form conv(mid, W) + b ± conv(rad, |W|), exact for one conv of a box.
    """

    kind = "conv"

    def __init__(self, weight: Tensor, bias: Tensor | None, stride=1, padding=0, dilation=1, groups: int = 1):
        if weight.ndim not in (3, 4):
            raise ValueError(f"conv weight must have 3 (1-D) or 4 (2-D) dims, got {tuple(weight.shape)}")
        self.weight = weight
        self.bias = bias
        nd = weight.ndim - 2
        self.stride = _tuple(stride, nd)
        self.padding = _tuple(padding, nd)
        self.dilation = _tuple(dilation, nd)
        self.groups = int(groups)

    @property
    def nd(self) -> int:
        return self.weight.ndim - 2

    def to(self, dtype=None, device=None):
        return Conv(self.weight.to(dtype=dtype, device=device),
                    None if self.bias is None else self.bias.to(dtype=dtype, device=device),
                    self.stride, self.padding, self.dilation, self.groups)

    def _conv(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        fn = F.conv1d if self.nd == 1 else F.conv2d
        return fn(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv(x, self.weight, self.bias)

    def interval(self, ctx, x: Interval) -> Interval:
        mid = self._conv(x.center, self.weight, self.bias)
        rad = self._conv(x.radius, self.weight.abs(), None)
        return Interval(mid - rad, mid + rad)

    def transpose(self, A: Tensor, in_shape: tuple[int, ...] | None = None) -> Tensor:
        B, S = A.shape[:2]
        out = A.shape[3:]
        # the input sizes that give `out` differ by r < stride rows at the end, which the last windows may
        # still touch: output_padding = r lets conv_transpose compute them instead of dropping them
        if in_shape is None:
            opad = (0,) * self.nd
        else:
            opad = tuple(int(i) - ((o - 1) * s - 2 * p + d * (k - 1) + 1) for i, o, s, p, d, k in
                         zip(in_shape[1:], out, self.stride, self.padding, self.dilation, self.weight.shape[2:]))
            if any(r < 0 or r >= max(s, d) for r, s, d in zip(opad, self.stride, self.dilation)):
                raise ValueError(f"conv transpose: input shape {in_shape} does not give output {tuple(out)}")
        if self.nd == 2:
            return conv_transpose_rows(A, self.weight, self.stride, self.padding, opad, self.groups, self.dilation)
        flat = A.reshape((B * S,) + tuple(A.shape[2:]))
        x = F.conv_transpose1d(flat, self.weight, None, self.stride, self.padding, opad, self.groups, self.dilation)
        return x.reshape((B, S) + tuple(x.shape[1:]))

    def bias_term(self, A: Tensor) -> Tensor | None:
        if self.bias is None:
            return None
        per_channel = A.reshape(A.shape[0], A.shape[1], A.shape[2], -1).sum(-1)  # (B, S, C_out)
        return per_channel @ self.bias

    def describe(self) -> str:
        w = self.weight.shape
        return (f"conv{self.nd}d({w[1] * self.groups}->{w[0]}, k={tuple(w[2:])}, s={self.stride}, p={self.padding}, "
                f"d={self.dilation}, g={self.groups})")


class ZeroPad(SpatialAffineOp):
    """Constant zero padding (ONNX Pad mode=constant value 0, asymmetric conv pads).

    pads in F.pad order, last dim first: (left, right) for 1-D, (left, right, top, bottom) for 2-D;
    nonnegative. Transpose: slice the padded coefficients back to the input window.
    """

    kind = "pad"

    def __init__(self, pads: tuple[int, ...]):
        pads = tuple(int(p) for p in pads)
        if len(pads) % 2 or any(p < 0 for p in pads):
            raise ValueError(f"pads must be an even number of nonnegative ints, got {pads}")
        self.pads = pads

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.pads)

    def interval(self, ctx, x: Interval) -> Interval:
        return x.map(self.forward)

    def transpose(self, A: Tensor, in_shape: tuple[int, ...] | None = None) -> Tensor:
        idx = [slice(None)] * A.ndim
        k = len(self.pads) // 2
        for i in range(k):
            left, right = self.pads[2 * i], self.pads[2 * i + 1]
            d = A.ndim - 1 - i
            idx[d] = slice(left, A.shape[d] - right)
        return A[tuple(idx)]

    def describe(self) -> str:
        return f"pad{self.pads}"


class AvgPool(SpatialAffineOp):
    """Average pooling (AvgPool1d/2d, ONNX AveragePool), y = D ⊙ (window sums of zero-padded x).

    D (per output position) is 1 / (number of summed entries, counted as PyTorch does: padding included
    when count_include_pad, never the extra ceil_mode overhang). Transpose: multiply by D, then
    conv_transpose with a ones kernel (channels folded into the batch), then drop the padding.
    Interval: the weights are nonnegative, so [avg(l), avg(u)] (exact).
    """

    kind = "avgpool"

    def __init__(self, kernel, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 nd: int | None = None):
        nd = nd or (len(kernel) if isinstance(kernel, (tuple, list)) else 2)
        self.nd = nd
        self.kernel = _tuple(kernel, nd)
        self.stride = _tuple(stride if stride is not None and stride != [] else kernel, nd)
        self.padding = _tuple(padding, nd)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x: Tensor) -> Tensor:
        if self.nd == 1:
            return F.avg_pool1d(x, self.kernel, self.stride, self.padding, self.ceil_mode, self.count_include_pad)
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def interval(self, ctx, x: Interval) -> Interval:
        return x.map(self.forward)

    def _sum_conv(self, x: Tensor, out_spatial: tuple[int, ...]) -> Tensor:
        """Window sums of x (N, *in) over the zero-padded input, sized to out_spatial."""
        pads: list[int] = []
        for i in reversed(range(self.nd)):
            need = (out_spatial[i] - 1) * self.stride[i] + self.kernel[i]
            have = x.shape[1 + i] + 2 * self.padding[i]
            pads += [self.padding[i], self.padding[i] + max(0, need - have)]
        xp = F.pad(x.unsqueeze(1), pads)
        w = x.new_ones((1, 1) + self.kernel)
        fn = F.conv1d if self.nd == 1 else F.conv2d
        return fn(xp, w, None, self.stride).squeeze(1)

    def divisor(self, in_spatial: tuple[int, ...], like: Tensor) -> Tensor:
        """D = forward(ones) / window sums of ones, shape *out (the per-output averaging weight)."""
        ones = like.new_ones((1, 1) + tuple(in_spatial))
        y = self.forward(ones)[0, 0]
        s = self._sum_conv(ones[0], tuple(y.shape))[0]
        return torch.where(s > 0, y / s.clamp(min=1), torch.zeros_like(y))

    def transpose(self, A: Tensor, in_shape: tuple[int, ...] | None = None) -> Tensor:
        B, S, C = A.shape[:3]
        out = tuple(A.shape[3:])
        if in_shape is None:
            in_spatial = tuple((o - 1) * s + k - 2 * p for o, s, k, p in zip(out, self.stride, self.kernel, self.padding))
        else:
            in_spatial = tuple(in_shape[1:])
        D = self.divisor(in_spatial, A)
        flat = (A * D).reshape((B * S * C, 1) + out)
        w = A.new_ones((1, 1) + self.kernel)
        fn = F.conv_transpose1d if self.nd == 1 else F.conv_transpose2d
        x = fn(flat, w, None, self.stride)[:, 0]  # padded input coordinates
        padded = tuple(i + 2 * p for i, p in zip(in_spatial, self.padding))
        x = _fit(x, padded)
        idx = [slice(None)] + [slice(p, p + i) for p, i in zip(self.padding, in_spatial)]
        x = x[tuple(idx)]
        return x.reshape((B, S, C) + in_spatial)

    def describe(self) -> str:
        return f"avgpool{self.nd}d(k={self.kernel}, s={self.stride}, p={self.padding})"


class GlobalAvgPool(SpatialAffineOp):
    """Mean over all spatial dims with keepdim (ONNX GlobalAveragePool): (B, C, *in) -> (B, C, 1, ...)."""

    kind = "global_avgpool"

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)

    def interval(self, ctx, x: Interval) -> Interval:
        return x.map(self.forward)

    def transpose(self, A: Tensor, in_shape: tuple[int, ...] | None = None) -> Tensor:
        if in_shape is None:
            raise ValueError("GlobalAvgPool.transpose needs the input shape")
        n = math.prod(in_shape[1:])
        return (A / n).expand(tuple(A.shape[:3]) + tuple(in_shape[1:]))


class DenseAffine(AffineOp):
    """An affine op over the flattened sample, y = reshape(W x_flat + b): the *dense form* of a conv or
    pool (`certnn.graph.passes.unroll_convs`), used to check the conv form and to compare speed.

    W: (n_out, n_in), b: (n_out,) or None; in_shape/out_shape per sample.
    """

    kind = "dense_affine"

    def __init__(self, weight: Tensor, bias: Tensor | None, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
        self.weight = weight
        self.bias = bias
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)

    def to(self, dtype=None, device=None):
        return DenseAffine(self.weight.to(dtype=dtype, device=device),
                           None if self.bias is None else self.bias.to(dtype=dtype, device=device),
                           self.in_shape, self.out_shape)

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x.reshape(x.shape[0], -1), self.weight, self.bias)
        return y.reshape((x.shape[0],) + self.out_shape)

    def interval(self, ctx, x: Interval) -> Interval:
        B = x.lower.shape[0]
        mid = F.linear(x.center.reshape(B, -1), self.weight, self.bias)
        rad = F.linear(x.radius.reshape(B, -1), self.weight.abs())
        return Interval((mid - rad).reshape((B,) + self.out_shape), (mid + rad).reshape((B,) + self.out_shape))

    def transpose(self, A: Tensor) -> Tensor:
        B, S = A.shape[:2]
        return (A.reshape(B, S, -1) @ self.weight).reshape((B, S) + self.in_shape)

    def bias_term(self, A: Tensor) -> Tensor | None:
        if self.bias is None:
            return None
        return A.reshape(A.shape[0], A.shape[1], -1) @ self.bias

    def describe(self) -> str:
        return f"dense({self.in_shape}->{self.out_shape})"
