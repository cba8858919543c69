"""Affine rules of the forward zonotope pass (engine/zonotope.py): linear, elementwise_affine, reshape,
permute, slice, add (with sign and broadcasting), concat, and any other AffineOp (e.g. a convolution)
through its bias-free forward. Each maps the zonotope exactly and charges the rounding of its arithmetic to
the error bound err (gamma_n of the magnitudes, see the engine's module docstring).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..domains.symbols import union_ids
from ..domains.zonotope import Zonotope, concat
from ..graph.ir import Node
from .zonotope_run import ZonotopeRun, ZVal, zonotope_rule


@zonotope_rule("linear")
def _linear(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins
    op = node.op
    W, b = op.weight, op.bias
    return ZVal(v.z.affine(W, b), linear_err(run, v.err, v.mag, W, b))


def linear_err(run: ZonotopeRun, err: Tensor, mag: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
    """The error bound of x -> x W^T + b for an input with error bound `err` and magnitude `mag` (both
    (B, n)): |W| err plus gamma_{n+1} (|W| mag + |b|), the rounding of the products and the bias."""
    Wa = W.abs()
    add = mag @ Wa.T
    if b is not None:
        add = add + b.abs()
    return err @ Wa.T + run.gamma(W.shape[1] + 1) * add


@zonotope_rule("elementwise_affine")
def _elementwise(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins
    op = node.op
    s, h = op.scale, op.shift
    fn = (lambda t: t) if s is None else (lambda t: t * s)
    z = v.z.linear_map(fn, h)
    mag = v.mag if s is None else v.mag * s.abs()
    err = (v.err if s is None else v.err * s.abs()) + run.gamma(2) * (mag + (0 if h is None else h.abs()))
    return ZVal(z, torch.broadcast_to(err, z.center.shape).clone())


def _moved_err(v: ZVal, fn) -> tuple[Tensor, float]:
    """The error bound moved by an exact coordinate map fn (slice / reshape / permute); a pending
    self-proportional term stays pending (the magnitude moves with the coordinates)."""
    if v._err is not None:
        return fn(v._err), 0.0
    return fn(v.base_err), v.self_coef


@zonotope_rule("reshape", "permute")
def _shape(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins
    return ZVal(v.z.linear_map(node.op.forward), *_moved_err(v, node.op.forward))


@zonotope_rule("slice")
def _slice(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins  # basic indexing: views of center and generators, no copy
    return ZVal(v.z[tuple(node.op.index)], *_moved_err(v, node.op.forward))


def _pad_dims(z: Zonotope, err: Tensor, nd: int) -> tuple[Zonotope, Tensor]:
    """Insert leading per-sample dims of size 1 so z has nd per-sample dims (right-aligned broadcasting)."""
    k = nd - len(z.shape)
    if k <= 0:
        return z, err
    shape = (1,) * k + tuple(z.shape)
    return z.reshape(shape), err.reshape((err.shape[0],) + shape)


@zonotope_rule("add")
def _add(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    """a + sign * b with right-aligned broadcasting of the per-sample shapes; symbols aligned by id (the
    union of both id sets; one output buffer, b's generators accumulated into it by index_add, or both
    parts copied into it where they share no symbol)."""
    a, b = ins
    sign = node.op.sign
    nd = max(len(a.z.shape), len(b.z.shape))
    za, ea = _pad_dims(a.z, a.err, nd)
    zb, eb = _pad_dims(b.z, b.err, nd)
    B = za.batch
    out = tuple(node.shape)
    ids = union_ids(za.ids, zb.ids)
    Ga = za.generators.expand(B, za.num_symbols, *out)
    Gb = zb.generators.expand(B, zb.num_symbols, *out)
    pos_b = torch.searchsorted(ids, zb.ids)
    if ids.shape == za.ids.shape and torch.equal(ids, za.ids):
        G = Ga.clone(memory_format=torch.contiguous_format)
        G.index_add_(1, pos_b, Gb, alpha=sign)
    elif ids.shape[0] == za.num_symbols + zb.num_symbols:  # disjoint symbols: every column written once
        G = Ga.new_empty((B, ids.shape[0], *out))  # (no zero fill: a recurrent cell's input + hidden parts)
        G.index_copy_(1, torch.searchsorted(ids, za.ids), Ga)
        G.index_copy_(1, pos_b, Gb if sign == 1 else Gb * sign)
    else:
        G = Ga.new_zeros((B, ids.shape[0], *out))
        G[:, torch.searchsorted(ids, za.ids)] = Ga
        G.index_add_(1, pos_b, Gb, alpha=sign)
    c = (za.center + sign * zb.center).expand(B, *out).contiguous()
    z = Zonotope(c, G, ids, za.table)
    base = torch.broadcast_to(ea + abs(sign) * eb, (B, *out)).clone()
    if abs(sign) == 1.0:  # fl(g_a +- g_b) is off by at most u |result| per coefficient
        return ZVal(z, base, run.gamma(2))
    extra = run.gamma(3) * (a.mag.reshape(ea.shape) + abs(sign) * b.mag.reshape(eb.shape))
    return ZVal(z, torch.broadcast_to(base + extra, (B, *out)).clone(), run.gamma(2))


@zonotope_rule("concat")
def _concat(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    d = node.op.dim
    return ZVal(concat([v.z for v in ins], d), torch.cat([v.err for v in ins], d + 1))


def generic_affine(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    """Any AffineOp T(x) = L x + t0 (e.g. a convolution): generators through L (the op without its bias,
    or T(x) - T(0)), center through T; |L| v for the error bound from the op's own interval rule on [-v, v]
    (radius |L| v, exact for an affine op)."""
    (v,) = ins
    op = node.op
    zero = v.z.center.new_zeros((1,) + tuple(v.z.shape))
    t0 = op.forward(zero)
    extra = 0.0
    lin = None
    if getattr(op, "bias", None) is not None:
        try:
            nb = copy.copy(op)
            nb.bias = None
            if bool((nb.forward(zero) == 0).all()):
                lin = nb.forward
        except Exception:  # noqa: BLE001 - fall back to subtraction below
            lin = None
    if lin is None:
        if bool((t0 == 0).all()):
            lin = op.forward
        else:
            lin = (lambda t: op.forward(t) - t0)  # noqa: E731
            extra = 1.0
    K = v.z.num_symbols
    c = op.forward(v.z.center)
    if K:
        G = lin(v.z.generators.reshape(v.z.batch * K, *v.z.shape))
        G = G.reshape(v.z.batch, K, *G.shape[1:])
    else:
        G = c.new_zeros((v.z.batch, 0, *c.shape[1:]))
    z = Zonotope(c, G, v.z.ids, v.z.table)

    def absmap(t: Tensor) -> Tensor:
        iv = op.interval(run.ctx, Interval(-t, t))
        return (iv.upper - iv.lower) / 2

    n = 1
    for s in v.z.shape:
        n *= s
    err = absmap(v.err) + run.gamma(n + 1) * (absmap(v.mag) + t0.abs())
    if extra:
        g1 = torch.linalg.vector_norm(v.z.generators, 1, dim=1)  # sum_k |g_k|
        err = err + run.gamma(K + 2) * K * t0.abs() + run.gamma(2) * absmap(g1)
    return ZVal(z, err)


__all__ = ["linear_err", "generic_affine"]
