"""Patches mode of the backward engine (CNN-Cert's convolutional form for intermediate bounds).

The coefficients of one neuron of a conv layer, pushed back through convs, activations and per-channel
affine ops, are nonzero only on that neuron's receptive field. A `Patches` holds them as

    data    (B, R, C, ph, pw)   the coefficients on a ph x pw window of a (C, H, W) node, per row
    offset  (B, R, 2)           top-left (row, col) of each row's window in the node's (H, W) grid

instead of a dense (B, R, C, H, W) tensor. Through a Conv the window grows to (ph - 1) s + d (k - 1) + 1
(one conv_transpose over the folded B*R rows, of window size, not image size); entries that fall on the
zero padding are dropped (they multiply constant zeros, so this is exact). Activations and elementwise
affine ops gather their per-neuron slopes / intercepts on the window. A residual Add merges two windows
whose relative position is the same for every row. Any other op, or a window as large as the image,
turns the patches into the dense tensor (`to_dense`) and the ordinary rules continue, so results equal
the dense conv form exactly (same sums, fewer zeros): tested to 1e-9.

Memory per pass: B * R * C * ph * pw instead of B * R * C * H * W (ph x pw <= the receptive field).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import dual_exponent
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine
from ..ops.conv import Conv, conv_transpose_rows
from ..ops.line_push import drop_zero, push_lines, rows_dot
from ..ops.shape import Add


@dataclass(frozen=True)
class Patches:
    data: Tensor  # (B, R, C, ph, pw)
    offset: Tensor  # (B, R, 2) long
    spatial: tuple[int, int]  # (H, W) of the node

    @property
    def shape(self) -> torch.Size:  # the dense shape this stands for
        B, R, C = self.data.shape[:3]
        return torch.Size((B, R, C) + tuple(self.spatial))

    def positions(self) -> tuple[Tensor, Tensor]:
        """Flat index into H*W (B, R, ph*pw), clamped, and the in-image mask (same shape)."""
        ph, pw = self.data.shape[3:]
        H, W = self.spatial
        dev = self.data.device
        r = self.offset[..., 0:1] + torch.arange(ph, device=dev)  # (B, R, ph)
        c = self.offset[..., 1:2] + torch.arange(pw, device=dev)  # (B, R, pw)
        valid = ((r >= 0) & (r < H)).unsqueeze(-1) & ((c >= 0) & (c < W)).unsqueeze(-2)  # (B, R, ph, pw)
        flat = r.clamp(0, H - 1).unsqueeze(-1) * W + c.clamp(0, W - 1).unsqueeze(-2)
        B, R = self.offset.shape[:2]
        return flat.reshape(B, R, ph * pw), valid.reshape(B, R, ph * pw)

    def gather(self, t: Tensor) -> Tensor:
        """Values of a per-neuron tensor t (broadcastable to (B, C, H, W), or per row (B, R or 1, C, H, W))
        on every row's window (B, R, C, ph, pw), 0 outside the image."""
        return self.gather_many([t])[0]

    def gather_many(self, ts: list[Tensor]) -> list[Tensor]:
        """`gather` of several tensors, sharing the window indices. The tensors are zero-padded around the
        image so far that every window lies inside, so no in-image mask is applied afterwards."""
        B, R, C, ph, pw = self.data.shape
        H, W = self.spatial
        off = self.offset.reshape(-1, 2)
        lo, hi = (off.amin(0).tolist(), off.amax(0).tolist()) if off.numel() else ([0, 0], [0, 0])
        top, left = max(0, -lo[0]), max(0, -lo[1])
        bottom, right = max(0, hi[0] + ph - H), max(0, hi[1] + pw - W)
        Wp, n = W + left + right, (H + top + bottom) * (W + left + right)
        dev = self.offset.device
        r = self.offset[..., 0:1] + (top + torch.arange(ph, device=dev))  # (B, R, ph) in the padded grid
        c = self.offset[..., 1:2] + (left + torch.arange(pw, device=dev))
        flat = (r.unsqueeze(-1) * Wp + c.unsqueeze(-2)).reshape(B, R, 1, ph * pw)
        # with gradients, per-neuron tensors are gathered from (B, C * n) by channel-offset indices: the
        # gather's backward then scatters into (B, C * n), not into a zero tensor (B, R, C, n) per tensor
        grad = any(t.requires_grad for t in ts)
        chan = (flat + n * torch.arange(C, device=dev).reshape(1, 1, C, 1)).reshape(B, -1) if grad else None
        out = []
        for t in ts:
            rows = t.shape[1] if t.dim() == 5 else 1
            t = torch.broadcast_to(t, (B, rows, C, H, W) if t.dim() == 5 else (B, C, H, W))
            t = F.pad(t, (left, right, top, bottom)).reshape(B, rows, C, n)
            if chan is not None and rows == 1:
                g = torch.gather(t.reshape(B, C * n), 1, chan)
            else:
                g = torch.gather(t.expand(B, R, C, n), 3, flat.expand(B, R, C, ph * pw))
            out.append(g.reshape(B, R, C, ph, pw))
        return out

    def with_data(self, data: Tensor) -> "Patches":
        return Patches(data, self.offset, self.spatial)

    def to_dense(self) -> Tensor:
        B, R, C, ph, pw = self.data.shape
        H, W = self.spatial
        flat, valid = self.positions()
        vals = (self.data.reshape(B, R, C, ph * pw) * valid.unsqueeze(2).to(self.data.dtype))
        out = self.data.new_zeros(B, R, C, H * W)
        out.scatter_add_(3, flat.unsqueeze(2).expand(B, R, C, ph * pw), vals)
        return out.reshape(B, R, C, H, W)

    def masked(self) -> "Patches":
        B, R, C, ph, pw = self.data.shape
        _, valid = self.positions()
        return self.with_data(self.data * valid.reshape(B, R, 1, ph, pw).to(self.data.dtype))


def is_patches(t) -> bool:
    return isinstance(t, Patches)


def densify(t):
    return t.to_dense() if isinstance(t, Patches) else t


def identity_patches(rows: Tensor, shape: tuple[int, ...], like: Tensor) -> Patches:
    """Identity rows (B, R) (flat neuron indices of a (C, H, W) node) as 1x1 windows."""
    C, H, W = shape
    B, R = rows.shape
    c, rest = rows // (H * W), rows % (H * W)
    data = like.new_zeros(B, R, C, 1, 1)
    data.scatter_(2, c.reshape(B, R, 1, 1, 1), 1.0)
    return Patches(data, torch.stack([rest // W, rest % W], -1), (H, W))


def add(a, b):
    """Sum of two coefficient terms (tensors, Patches or None) for the same node."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, Patches) and isinstance(b, Patches):
        m = _merge(a, b)
        if m is not None:
            return m
    return densify(a) + densify(b)


def _merge(a: Patches, b: Patches) -> Patches | None:
    d = a.offset - b.offset
    if not bool((d == d.reshape(-1, 2)[0]).all()):
        return None
    dr, dc = (int(v) for v in d.reshape(-1, 2)[0])
    ah, aw = a.data.shape[3:]
    bh, bw = b.data.shape[3:]
    top, left = min(0, dr), min(0, dc)  # union box relative to a's window... in b's frame: a at (dr, dc)
    bottom, right = max(dr + ah, bh), max(dc + aw, bw)
    H, W = bottom - top, right - left
    if H * W >= a.spatial[0] * a.spatial[1]:
        return None
    pa = F.pad(a.data, (dc - left, right - dc - aw, dr - top, bottom - dr - ah))
    pb = F.pad(b.data, (-left, right - bw, -top, bottom - bh))
    off = b.offset + torch.tensor([top, left], device=b.offset.device)
    return Patches(pa + pb, off, a.spatial)


def backward(ctx, node, lA, uA):
    """Patch rule for node's op, or None when the op has none (the caller densifies)."""
    op = node.op
    if isinstance(op, Conv) and op.nd == 2:
        return _conv(ctx, op, tuple(ctx.shape(node.inputs[0])), lA, uA)
    if isinstance(op, Activation):
        return _activation(ctx, op, node, lA, uA)
    if isinstance(op, ElementwiseAffine):
        return _elementwise(op, lA, uA)
    if isinstance(op, Add) and ctx.shape(node.inputs[0]) == ctx.shape(node.inputs[1]) == node.shape:
        neg = (lambda p: p) if op.sign > 0 else (lambda p: None if p is None else p.with_data(-p.data))
        return [(lA, uA), (neg(lA), neg(uA))], None, None
    return None


def _conv(ctx, op: Conv, in_shape: tuple[int, ...], lA, uA):
    spatial = tuple(in_shape[1:])
    dev = (lA if lA is not None else uA).offset.device

    def push(data: Tensor) -> Tensor:
        return conv_transpose_rows(data, op.weight, op.stride, (0, 0), (0, 0), op.groups, op.dilation)

    def place(P: Patches, xs: list[Tensor]) -> list:
        """The pushed data xs on P's windows moved to the input grid: dense when a window covers the image
        (to_dense keeps the in-image entries), else masked in place; one mask for all of xs."""
        off = P.offset * torch.tensor(op.stride, device=dev) - torch.tensor(op.padding, device=dev)
        if xs[0].shape[3] * xs[0].shape[4] >= spatial[0] * spatial[1]:
            return [Patches(x, off, spatial).to_dense() for x in xs]
        return _mask_fresh([Patches(x, off, spatial) for x in xs])

    def bias(P):
        if P is None or op.bias is None:
            return None
        return P.data.sum(dim=(3, 4)) @ op.bias  # windows only hold in-image entries

    if lA is not None and lA is uA:
        A = place(lA, [push(lA.data)])[0]
        b = bias(lA)
        return [(A, A)], b, b
    if lA is not None and uA is not None and same_windows(lA, uA):
        lo, hi = place(lA, [push(lA.data), push(uA.data)])
        return [(lo, hi)], bias(lA), bias(uA)
    lo = None if lA is None else place(lA, [push(lA.data)])[0]
    hi = None if uA is None else place(uA, [push(uA.data)])[0]
    return [(lo, hi)], bias(lA), bias(uA)


def _mask_fresh(ps: list[Patches]) -> list[Patches]:
    """p.masked() for patches on the same windows, writing into their data in place (tensors the caller has
    just made and nobody else holds; out of place when they carry gradients); the mask is computed once."""
    B, R, C, ph, pw = ps[0].data.shape
    _, valid = ps[0].positions()
    m = valid.reshape(B, R, 1, ph, pw).to(ps[0].data.dtype)
    return [p.with_data(p.data * m) if p.data.requires_grad else p.with_data(p.data.mul_(m)) for p in ps]


def _activation(ctx, op: Activation, node, lA, uA):
    bounds = ctx.bounds[node.inputs[0]]
    opt = ctx.line_params.get(node.name)
    if getattr(opt, "window_lines", None) is not None:
        # optimised lines that gather themselves onto the windows (optimize/compact_slopes.py)
        lines = lambda P, both: (*opt.window_lines(op, bounds.lower, bounds.upper, P), False)  # noqa: E731
    else:
        rel = ctx.relaxation(op, node.name, bounds.lower, bounds.upper)
        lines = lambda P, both: _gather_lines(rel, P, both)  # noqa: E731
    split = ctx.split_terms.get(node.name)
    if split is not None and uA is not None:
        raise ValueError("split constraints apply to lower bounds only (bound -C for upper bounds)")
    if lA is not None and uA is not None and lA is not uA and not same_windows(lA, uA):
        # windows differ: one side at a time
        lo, _, lbias, _ = _activation_sides(lines, lA, None, split)
        _, hi, _, ubias = _activation_sides(lines, None, uA, None)
        return [(lo, hi)], lbias, ubias
    lo, hi, lbias, ubias = _activation_sides(lines, lA, uA, split)
    return [(lo, hi)], lbias, ubias


def same_windows(a: Patches, b: Patches) -> bool:
    """Whether two patches cover the same windows (same size and offsets): per-neuron values gathered
    onto one serve the other."""
    return (a.spatial == b.spatial and a.data.shape == b.data.shape
            and (a.offset is b.offset or torch.equal(a.offset, b.offset)))


def _gather_lines(rel, P: Patches, both: bool):
    """rel's (lower slope, lower bias, upper slope, upper bias) on P's windows (a zero bias without
    gradient as None) and whether the slopes are the same (parallel lines; only asked when `both`)."""
    lb, ub = drop_zero(rel.lower_bias), drop_zero(rel.upper_bias)
    same = both and torch.equal(rel.lower_slope, rel.upper_slope)
    ts = [rel.lower_slope] + ([] if same else [rel.upper_slope]) + [b for b in (lb, ub) if b is not None]
    g = P.gather_many(ts)
    ls = g.pop(0)
    us = ls if same else g.pop(0)
    glb = None if lb is None else g.pop(0)
    gub = None if ub is None else g.pop(0)
    return ls, glb, us, gub, same


def _activation_sides(lines, lA, uA, split):
    """The line rule (ops/line_push.py) on the windows of lA and / or uA (the same Patches, or two on the
    same windows, when both); lines(P, both) gives the lines on P's windows, gathered once for both sides."""
    P = lA if lA is not None else uA
    ls, glb, us, gub, same = lines(P, lA is not None and lA is uA and split is None)
    ldata = None if lA is None else lA.data
    udata = None if uA is None else (ldata if uA is lA else uA.data)
    lo, hi, lbias, ubias = push_lines(ldata, udata, ls, glb, us, gub, rows_dot, same)
    if split is not None and lo is not None:
        lo = lo + lA.gather(split)
    return (None if lo is None else P.with_data(lo)), (None if hi is None else P.with_data(hi)), lbias, ubias


def _elementwise(op: ElementwiseAffine, lA, uA):
    def push(P):
        if P is None:
            return None
        return P if op.scale is None else P.with_data(P.data * P.gather(op.scale))

    def bias(P):
        if P is None or op.shift is None:
            return None
        return (P.data * P.gather(op.shift)).reshape(P.data.shape[0], P.data.shape[1], -1).sum(-1)

    if lA is not None and lA is uA:
        A = push(lA)
        b = bias(lA)
        return [(A, A)], b, b
    return [(push(lA), push(uA))], bias(lA), bias(uA)


def concretize(spec, P: Patches, bias: Tensor, side: str) -> Tensor:
    """min / max of the patch coefficients . x + bias over the input set (as LpBall.concretize)."""
    sign = -1.0 if side == "lower" else 1.0
    box = spec.box()
    B, R = P.data.shape[:2]
    A = P.data.reshape(B, R, -1)
    mid, rad = (t.reshape(B, R, -1) for t in P.gather_many([box.center, box.radius]))
    box_val = rows_dot(A, mid) + sign * rows_dot(A.abs(), rad) + bias
    if spec.norm == "inf":
        return box_val
    As = A if spec.scale is None else A * P.gather(torch.broadcast_to(spec.scale, spec.center.shape[1:])).reshape(B, R, -1)
    dual = torch.linalg.vector_norm(As, ord=dual_exponent(spec.norm), dim=-1)
    ball_val = (A * P.gather(spec.center).reshape(B, R, -1)).sum(-1) + sign * spec.eps.reshape(B, 1) * dual + bias
    return torch.maximum(ball_val, box_val) if side == "lower" else torch.minimum(ball_val, box_val)
