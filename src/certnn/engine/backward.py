"""Backward linear bound propagation (Fast-Lin / CROWN / CNN-Cert / POPQORN engine).

For a node `target` and a specification matrix C (B, S, *target_shape), coefficients are pushed from the
target back to the input through every op's backward rule; nonlinear ops use lines from the method's
relaxation table on their input's interval bounds, which are computed first, in topological order, by
the same engine (or by IBP when the method says so). Finally the linear function of the input is
concretised over the input set by the spec (dual norm over the whole input).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..errors import SoundnessError
from ..ops.affine import Linear
from .context import RunContext
from .interval import interval_pass, interval_spec


def _identity_rows(ctx: RunContext, name: str, r0: int, r1: int) -> tuple[Tensor, str, Tensor | None]:
    """Start coefficients for rows r0:r1 of the identity spec on node `name`.

    Returns (A, node_to_start_from, bias). For a Linear node with a 1-D input the identity is pushed
    through it analytically (A = W[r0:r1]) to save one matmul.
    """
    g = ctx.graph
    node = g.nodes[name]
    B = ctx.batch
    ref = ctx.spec.center
    if isinstance(node.op, Linear) and len(g.nodes[node.inputs[0]].shape) == 1:
        W = node.op.weight[r0:r1]
        A = W.unsqueeze(0).expand(B, *W.shape)
        bias = None
        if node.op.bias is not None:
            bias = node.op.bias[r0:r1].unsqueeze(0).expand(B, r1 - r0)
        return A, node.inputs[0], bias
    n = 1
    for s in node.shape:
        n *= s
    eye = torch.eye(n, dtype=ref.dtype, device=ref.device)[r0:r1]
    A = eye.reshape((r1 - r0,) + node.shape).unsqueeze(0).expand((B, r1 - r0) + node.shape)
    return A, name, None


def _propagate(ctx: RunContext, start: str, lA: Tensor | None, uA: Tensor | None,
               lbias: Tensor, ubias: Tensor) -> tuple[Tensor | None, Tensor | None]:
    g = ctx.graph
    coeffs: dict[str, tuple[Tensor | None, Tensor | None]] = {start: (lA, uA)}
    for name in reversed(g.ancestors(start)):
        if name == g.input_name or name not in coeffs:
            continue
        node = g.nodes[name]
        cl, cu = coeffs.pop(name)
        ins, lb, ub = node.op.backward(ctx, name, node.inputs, cl, cu)
        if lb is not None:
            lbias = lbias + lb
        if ub is not None:
            ubias = ubias + ub
        for inp, (il, iu) in zip(node.inputs, ins):
            if inp in coeffs:
                ol, ou = coeffs[inp]
                il = il if ol is None else (ol if il is None else ol + il)
                iu = iu if ou is None else (ou if iu is None else ou + iu)
            coeffs[inp] = (il, iu)
    A_in = coeffs.get(g.input_name, (None, None))
    spec = ctx.spec
    lo = hi = None
    if lA is not None:
        lo = lbias if A_in[0] is None else spec.concretize(A_in[0], lbias, "lower")
    if uA is not None:
        hi = ubias if A_in[1] is None else spec.concretize(A_in[1], ubias, "upper")
    return lo, hi


def backward_bounds(ctx: RunContext, target: str, C: Tensor | None = None, lower: bool = True,
                    upper: bool = True) -> tuple[Tensor | None, Tensor | None]:
    """Lower/upper bounds (B, S) of C · value(target); C=None means the identity (all neurons).

    Needs interval bounds in ctx.bounds for the inputs of every nonlinear op upstream of target.
    """
    B = ctx.batch
    ref = ctx.spec.center
    if C is not None:
        zeros = ref.new_zeros(B, C.shape[1])
        return _propagate(ctx, target, C if lower else None, C if upper else None, zeros, zeros)
    n = 1
    for s in ctx.shape(target):
        n *= s
    los, his = [], []
    step = max(1, ctx.max_rows)
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        A, start, bias = _identity_rows(ctx, target, r0, r1)
        b0 = ref.new_zeros(B, r1 - r0) if bias is None else bias.clone()
        lo, hi = _propagate(ctx, start, A if lower else None, A if upper else None, b0, b0)
        los.append(lo)
        his.append(hi)
    lo = torch.cat(los, 1) if lower else None
    hi = torch.cat(his, 1) if upper else None
    return lo, hi


def nodes_needing_bounds(ctx: RunContext, upto: str | None = None) -> list[str]:
    """Inputs of nonlinear ops (upstream of `upto`), in topological order."""
    g = ctx.graph
    scope = set(g.ancestors(upto or g.output_name))
    need = set()
    for name in scope:
        node = g.nodes[name]
        if node.op.needs_input_bounds:
            need.update(node.inputs)
    return [n for n in g.order if n in need]


def compute_intermediate_bounds(ctx: RunContext, upto: str | None = None) -> None:
    """Fill ctx.bounds for every node that a nonlinear op needs bounds of.

    IBP bounds are computed first (cheap) and intersected with the backward bounds: both are sound, so
    their intersection is too.
    """
    g = ctx.graph
    with ctx.timer("interval"):
        ibp = interval_pass(ctx, upto)
    for name in nodes_needing_bounds(ctx, upto):
        if name in ctx.bounds:
            continue
        if ctx.method.intermediate == "interval" or name == g.input_name:
            ctx.bounds[name] = ibp[name]
            continue
        with ctx.timer("intermediate"):
            lo, hi = backward_bounds(ctx, name)
        shape = (ctx.batch,) + ctx.shape(name)
        iv = Interval(lo.reshape(shape), hi.reshape(shape)).intersect(ibp[name])
        tol = 1e-6 * (1 + iv.lower.abs() + iv.upper.abs())
        if (iv.lower > iv.upper + tol).any():
            raise SoundnessError(f"empty interval at node {name!r}: an intermediate bound is unsound")
        ctx.bounds[name] = Interval(torch.minimum(iv.lower, iv.upper), torch.maximum(iv.lower, iv.upper))


def bound_output(ctx: RunContext, C: Tensor | None = None, lower: bool = True,
                 upper: bool = True) -> tuple[Tensor | None, Tensor | None]:
    """Bounds of C · output for the method in ctx (engine 'interval' or 'backward')."""
    g = ctx.graph
    if ctx.method.engine == "interval":
        with ctx.timer("interval"):
            iv = interval_pass(ctx)[g.output_name]
        lo, hi = interval_spec(iv, C)
        return (lo if lower else None), (hi if upper else None)
    compute_intermediate_bounds(ctx)
    with ctx.timer("final"):
        return backward_bounds(ctx, g.output_name, C, lower, upper)
