"""Forward interval pass (IBP), with the first affine block bounded exactly under every norm.

Plain IBP bounds the input set by its bounding box, which for an L2 or L1 ball loses a factor of up to
sqrt(d) (or d) at the first layer. Like auto_LiRPA and the IBP papers, certnn bounds every node that is an
affine function of the input alone (Linear, reshape, slice, normalisation, ... before the first
nonlinearity) exactly over the set: value = W_eff x + c, so over the ball ∩ box the bounds are
W_eff x0 + c ± eps ||W_eff ⊙ scale||_q, intersected with the interval image of the box (both are sound,
the set lies in the ball and in the box).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..ops.base import AffineOp
from .context import RunContext


def interval_pass(ctx: RunContext, upto: str | None = None) -> dict[str, Interval]:
    """Interval bounds of every node (up to `upto`), stored in ctx.bounds unless already there."""
    g = ctx.graph
    if g.input_name not in ctx.bounds:
        ctx.bounds[g.input_name] = ctx.spec.box()
    out: dict[str, Interval] = {g.input_name: ctx.bounds[g.input_name]}
    sound = ctx.rounding is not None  # float32-sound: images widened by their rounding (engine/rounding.py)
    if sound:
        from .rounding import record, widen_interval

        record(ctx, g.input_name, out[g.input_name])
    names = g.ancestors(upto) if upto else g.order
    for name in names[1:] if names[0] == g.input_name else names:
        node = g.nodes[name]
        iv = node.op.interval(ctx, *[out[i] for i in node.inputs])
        if sound:
            iv = widen_interval(ctx, name, iv)
        elif needs_exact_affine(ctx, name):
            iv = affine_chain_bounds(ctx, name, iv)
        out[name] = iv
    return out


def affine_chain(ctx: RunContext, name: str) -> list[str] | None:
    """The nodes from the input to `name` (input excluded, `name` last) when `name` is a chain of
    single-input affine ops applied to the input alone; None otherwise."""
    g = ctx.graph
    chain = []
    cur = name
    while cur != g.input_name:
        node = g.nodes[cur]
        if not isinstance(node.op, AffineOp) or len(node.inputs) != 1:
            return None
        chain.append(cur)
        cur = node.inputs[0]
    return chain[::-1]


def ball_chain(ctx: RunContext, name: str) -> bool:
    """True when the backward engine bounds `name` by affine_chain_bounds (exact over an L2 / L1 set, no
    rounding model): for a recurrent net's joint input projection this replaces T x m identity rows per
    sample (measured: ~40% of a POPQORN evaluation) by one batch-free dual norm per neuron."""
    return not ctx.spec.is_box and ctx.rounding is None and affine_chain(ctx, name) is not None


def needs_exact_affine(ctx: RunContext, name: str) -> bool:
    """True when the ball is L2/L1 and `name` ends an affine chain from the input that feeds a
    non-affine op or is the output (intermediate reshapes of the chain need no bounds of their own)."""
    if ctx.spec.is_box or affine_chain(ctx, name) is None:
        return False
    g = ctx.graph
    if name == g.output_name:
        return True
    # a consumer that does not extend the chain (nonlinear, or several inputs) needs this node's bounds
    return any(not isinstance(g.nodes[c].op, AffineOp) or len(g.nodes[c].inputs) != 1 for c in g.consumers(name))


def affine_chain_bounds(ctx: RunContext, name: str, iv: Interval) -> Interval:
    """Exact-over-the-ball bounds of an affine chain from the input, intersected with `iv`.

    The chain's coefficients W_eff (n, *in_shape) are the same for every sample (affine ops carry no
    per-sample parameters), so they are computed once, by pushing identity rows back through the ops'
    backward rules (transposes; a batch of one) in chunks of ctx.max_rows rows: memory O(max_rows x input size), not O(batch x ...).
    Soundness: value(x) = W_eff x + value(x0) - W_eff x0 exactly (the chain is affine), and
    |W_eff (x - x0)| <= eps ||W_eff ⊙ scale||_q by Hölder for ||(x - x0)/scale||_p <= eps.
    """
    chain = affine_chain(ctx, name)
    assert chain is not None
    g = ctx.graph
    spec = ctx.spec
    # differentiable (verified training); certification runs the whole pass under no_grad anyway
    mid = spec.center
    for n in chain:
        mid = g.nodes[n].op.forward(mid)
    shape = g.nodes[name].shape
    numel = mid[0].numel()
    ref = spec.center
    scale = None if spec.scale is None else torch.broadcast_to(spec.scale, ref.shape[1:]).reshape(1, 1, -1)
    duals = []
    step = max(1, ctx.max_rows)
    direct = _input_linear_duals(ctx, chain)
    if direct is not None:
        duals, numel = [direct.reshape(-1)], 0
    for r0 in range(0, numel, step):
        r = min(step, numel - r0)
        A = ref.new_zeros(1, r, numel)
        A[0, torch.arange(r, device=A.device), torch.arange(r0, r0 + r, device=A.device)] = 1.0
        A = A.reshape((1, r) + shape)
        for n in reversed(chain):
            node = g.nodes[n]
            # the op's own backward rule (it knows its input's shape, e.g. a conv's output padding)
            ins, _, _ = node.op.backward(ctx, n, node.inputs, A, A)
            A = ins[0][0]
        A = A.reshape(1, r, -1)
        if scale is not None:
            A = A * scale
        duals.append(spec.dual_norm(A)[0])  # ||.||_q, or the per-frame sum of per-frame balls
    dual = torch.cat(duals).reshape(shape)
    # a few ulps against rounding in the dual norm and the forward pass
    eps = spec.eps.reshape((-1,) + (1,) * len(shape))
    rad = eps * dual * (1 + 16 * torch.finfo(ref.dtype).eps) + 16 * torch.finfo(ref.dtype).eps * mid.abs()
    ball = Interval(mid - rad, mid + rad)
    return ball.intersect(iv)


def _input_linear_duals(ctx: RunContext, chain: list[str]) -> Tensor | None:
    """The dual norms (*shape) of a Linear x W^T applied to the input itself ((T, d) or (d,)): neuron (t, j)
    reads frame t only, so its norm over the whole input (or the per-frame sum) is ||W_j * scale_t||_q,
    from W directly instead of identity rows pushed back. None for any other chain."""
    from ..config import dual_exponent

    g, spec = ctx.graph, ctx.spec
    op = g.nodes[chain[0]].op
    if len(chain) != 1 or op.kind != "linear" or not 1 <= len(g.input_shape) <= 2 or spec.is_box:
        return None
    W = op.weight  # (m, d)
    d = g.input_shape[-1]
    s = None if spec.scale is None else torch.broadcast_to(spec.scale, g.input_shape).reshape(-1, d)
    M = W.unsqueeze(0) if s is None else W.unsqueeze(0) * s.unsqueeze(1)  # (T or 1, m, d)
    q = dual_exponent(spec.frame_norm or spec.norm)
    dual = torch.linalg.vector_norm(M, ord=q, dim=-1)  # (T or 1, m)
    return torch.broadcast_to(dual, g.nodes[chain[0]].shape) if len(g.input_shape) == 2 else dual[0]


def interval_spec(iv: Interval, C: Tensor | None) -> tuple[Tensor, Tensor]:
    """Bounds of C v for v in the box iv: C (B, S, *shape) or None for the identity (flattened)."""
    B = iv.lower.shape[0]
    if C is None:
        return iv.lower.reshape(B, -1), iv.upper.reshape(B, -1)
    Cf = C.reshape(B, C.shape[1], -1)
    mid = torch.einsum("bsn,bn->bs", Cf, iv.center.reshape(B, -1))
    rad = torch.einsum("bsn,bn->bs", Cf.abs(), iv.radius.reshape(B, -1))
    return mid - rad, mid + rad
