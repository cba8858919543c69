"""Backward linear bound propagation (Fast-Lin / CROWN / CNN-Cert / POPQORN engine).

For a node `target` and a specification matrix C (B, S, *target_shape), coefficients are pushed from the
target back to the input through every op's backward rule; nonlinear ops use lines from the method's
relaxation table on their input's interval bounds, which are computed first, in topological order, by
the same engine (or by IBP when the method says so). Finally the linear function of the input is
concretised over the input set by the spec (dual norm over the whole input).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..errors import SoundnessError
from ..ops.affine import Linear
from ..ops.shape import Slice
from . import patches, rounding
from .accumulate import CoeffSums
from .context import RunContext
from .fold import backward_node
from .frame_projection import frame_sink
from .input_projection import concretize_projection, input_projection
from .interval import affine_chain_bounds, ball_chain, interval_pass, interval_spec
from .targets import interval_is_exact, refine_targets


def _identity_rows(ctx: RunContext, name: str, rows: Tensor) -> tuple[Tensor, str, Tensor | None]:
    """Start coefficients for rows of the identity spec on node `name`.

    rows: flat neuron indices, (R,) shared by the batch or (B, R) per sample. Returns
    (A (B, R, *shape-of-start-node), node_to_start_from, bias (B, R) or None). For a Linear node with a
    1-D input the identity is pushed through it analytically (A = W[rows]) to save one matmul.
    """
    g = ctx.graph
    node = g.nodes[name]
    B = ctx.batch
    ref = ctx.spec.center
    if rows.ndim == 1:
        rows = rows.unsqueeze(0).expand(B, rows.numel())
    r = rows.shape[1]
    if isinstance(node.op, Linear) and len(g.nodes[node.inputs[0]].shape) == 1:
        A = node.op.weight[rows]  # (B, R, in)
        bias = None if node.op.bias is None else node.op.bias[rows]
        return A, node.inputs[0], bias
    n = 1
    for s in node.shape:
        n *= s
    eye = ref.new_zeros(B, r, n)
    eye.scatter_(2, rows.unsqueeze(-1), 1.0)
    return eye.reshape((B, r) + node.shape), name, None


def propagate(ctx: RunContext, start: str, lA: Tensor | None, uA: Tensor | None,
              lbias: Tensor, ubias: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Push coefficients lA / uA (B, S, *shape of `start`) with biases (B, S) back to the input and
    concretise them over ctx.spec: lower / upper bounds (B, S) of the linear functions they stand for."""
    g = ctx.graph
    coeffs = CoeffSums()
    coeffs.put(start, lA, uA)
    sound = ctx.rounding is not None  # float32-sound: widen by the rounding error of every step
    lerr = uerr = None
    first = input_projection(ctx)  # L2 sets: concretised at the first Linear (engine/input_projection.py)
    sink = frame_sink(ctx, first)  # per-frame balls: at its single-frame slices (engine/frame_projection.py)
    for name in reversed(g.ancestors(start)):
        if name == g.input_name or name not in coeffs:
            continue
        node = backward_node(ctx, name)  # a BatchNorm after a conv: the folded conv (engine/fold.py)
        cl, cu = coeffs.pop(name)
        if name in ctx.capture:  # e.g. branch and bound's branching scores: coefficients of a node's output
            ctx.captured[name] = patches.densify(cl)
        if name == first and _dense(cl) and _dense(cu):  # the input's only consumer: nothing else is left
            with ctx.timer("concretize"):
                lo = None if lA is None else concretize_projection(ctx, name, cl, lbias, "lower")
                hi = None if uA is None else concretize_projection(ctx, name, cu, ubias, "upper")
            return lo, hi
        if sink is not None and sink.takes(name) and _dense(cl) and _dense(cu):
            with ctx.timer("concretize"):
                sink.add(name, cl, cu)
            continue
        if not sound and isinstance(node.op, Slice) and _dense(cl) and _dense(cu):
            with ctx.timer("backward"):  # written straight into the selected entries of the input's sum
                coeffs.add_slice(node.inputs[0], node.op.in_shape, node.op.index, cl, cu)
            continue
        res = None
        if patches.is_patches(cl) or patches.is_patches(cu):
            res = patches.backward(ctx, node, cl, cu)
            if res is None:  # no patch rule for this op: continue with dense coefficients
                dl = patches.densify(cl)
                cl, cu = dl, (dl if cu is cl else patches.densify(cu))
        with ctx.timer("backward"):
            ins, lb, ub = res if res is not None else node.op.backward(ctx, name, node.inputs, cl, cu)
        if lb is not None:
            lbias = lbias + lb
        if ub is not None:
            ubias = ubias + ub
        if sound:
            lerr, uerr = _step_errors(ctx, name, cl, cu, ins, lbias, ubias, lerr, uerr)
        for inp, (il, iu) in zip(node.inputs, ins):
            merged = inp in coeffs
            coeffs.add(inp, il, iu)
            if sound and merged:  # the sum of two paths' coefficients is rounded too
                lerr, uerr = rounding.merge_errors(ctx, inp, *coeffs.get(inp), lerr, uerr)
    A_in = coeffs.get(g.input_name)
    if g.input_name in ctx.capture:
        ctx.captured[g.input_name] = patches.densify(A_in[0])
    with ctx.timer("concretize"):
        lo = _concretize(ctx, A_in[0], lbias, "lower", lerr) if lA is not None else None
        hi = _concretize(ctx, A_in[1], ubias, "upper", uerr) if uA is not None else None
    return (lo, hi) if sink is None else sink.finish(lo, hi)


def _concretize(ctx: RunContext, A, bias: Tensor, side: str, acc: Tensor | None) -> Tensor:
    """The `side` bound (B, S) of A x + bias over ctx.spec (A None: the bias alone); in float32-sound mode
    moved outward by the rounding of the concretisation and of all earlier steps (acc)."""
    if A is None:
        val = bias
    elif patches.is_patches(A):
        val = patches.concretize(ctx.spec, A, bias, side)
    else:
        val = ctx.spec.concretize(A, bias, side)
    if ctx.rounding is not None:
        err = (rounding.sum_error(ctx, bias) if A is None else rounding.concretize_error(ctx, A, bias))
        err = err if acc is None else err + acc
        val = val - err if side == "lower" else val + err
    return val


def _dense(t) -> bool:
    return t is None or isinstance(t, Tensor)


def _step_errors(ctx: RunContext, name: str, cl, cu, ins, lbias: Tensor, ubias: Tensor, lerr, uerr):
    """Accumulated rounding-error bounds (B, S) of the lower / upper passes after the step through `name`."""
    out = []
    for side, (A, bias, acc) in enumerate(((cl, lbias, lerr), (cu, ubias, uerr))):
        if A is None:
            out.append(acc)
            continue
        e = rounding.step_error(ctx, name, A, ins, side) + rounding.sum_error(ctx, bias)
        out.append(e if acc is None else acc + e)
    return out[0], out[1]


def backward_bounds(ctx: RunContext, target: str, C: Tensor | None = None, lower: bool = True,
                    upper: bool = True, rows: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
    """Lower/upper bounds (B, S) of C · value(target); C=None means the identity on the target's
    (flattened) neurons: all of them, or only `rows` ((R,) shared, or (B, R) per sample), giving S = R.

    Needs interval bounds in ctx.bounds for the inputs of every nonlinear op upstream of target.
    """
    B = ctx.batch
    ref = ctx.spec.center
    if C is not None:
        zeros = ref.new_zeros(B, C.shape[1])
        return propagate(ctx, target, C if lower else None, C if upper else None, zeros, zeros)
    if rows is None:
        n = 1
        for s in ctx.shape(target):
            n *= s
        rows = torch.arange(n, device=ref.device)
    los, his = [], []
    step = rows_per_pass(ctx, target)
    R = rows.shape[-1]
    for r0 in range(0, R, step):
        A, start, bias = identity_start(ctx, target, rows[..., r0:r0 + step])
        b0 = ref.new_zeros(B, A.shape[1]) if bias is None else bias.clone()
        lo, hi = propagate(ctx, start, A if lower else None, A if upper else None, b0, b0)
        los.append(lo)
        his.append(hi)
    lo = torch.cat(los, 1) if lower and los else (ref.new_zeros(B, 0) if lower else None)
    hi = torch.cat(his, 1) if upper and his else (ref.new_zeros(B, 0) if upper else None)
    return lo, hi


def identity_start(ctx: RunContext, target: str, rows: Tensor):
    """Coefficients (B, R, ...) of the identity rows `rows` ((R,) or (B, R) flat neuron indices) of
    `target`, the node to start the backward pass from, and a bias (B, R) or None: 1x1 patches for a
    (C, H, W) node in patches mode (CNN-Cert, engine/patches.py), W[rows] for a Linear on a 1-D input."""
    if ctx.patches and len(ctx.shape(target)) == 3:
        chunk = rows if rows.ndim == 2 else rows.unsqueeze(0).expand(ctx.batch, -1)
        return patches.identity_patches(chunk, ctx.shape(target), ctx.spec.center), target, None
    return _identity_rows(ctx, target, rows)


def rows_per_pass(ctx: RunContext, target: str) -> int:
    """Identity rows per backward pass: at most ctx.max_rows, and few enough that a coefficient tensor
    (B, rows, *shape) of the largest node between the input and target holds <= ctx.max_elements entries."""
    g = ctx.graph
    widest = 1
    for name in g.ancestors(target):
        n = 1
        for s in g.nodes[name].shape:
            n *= s
        widest = max(widest, n)
    return max(1, min(ctx.max_rows, ctx.max_elements // max(1, ctx.batch * widest)))


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


def compute_intermediate_bounds(ctx: RunContext, upto: str | None = None,
                                refine: Callable[[RunContext, str, Interval], Interval] | None = None) -> None:
    """Fill ctx.bounds for every node that a nonlinear op needs bounds of.

    One forward sweep in topological order keeps the best known interval of every node: the interval
    image of its inputs' best intervals, intersected, for nodes that feed a nonlinear op, with the bounds
    of the backward engine on the neurons where tighter bounds can matter (see
    `rows_needing_refinement`). Both are sound, so their intersection is too. `refine(ctx, name, iv)`
    replaces the backward engine's refinement (e.g. alpha-CROWN's optimised passes, certnn.optimize).
    """
    refine = refine or _refine
    g = ctx.graph
    need = set(nodes_needing_bounds(ctx, upto))
    targets = refine_targets(ctx, need)
    if g.input_name not in ctx.bounds:
        ctx.bounds[g.input_name] = ctx.spec.box()
    best: dict[str, Interval] = {g.input_name: ctx.bounds[g.input_name]}
    sound = ctx.rounding is not None
    if sound:
        rounding.record(ctx, g.input_name, best[g.input_name])
    for name in g.ancestors(upto or g.output_name)[1:]:
        node = g.nodes[name]
        if name in ctx.bounds:
            best[name] = ctx.bounds[name]
            if sound and name not in ctx.magnitudes:
                rounding.record(ctx, name, best[name])
            continue
        with ctx.timer("interval"):
            iv = node.op.interval(ctx, *[best[i] for i in node.inputs])
            if sound:
                iv = rounding.widen_interval(ctx, name, iv)
        refined = name in targets and ctx.method.intermediate != "interval"
        if (name in need or refined) and ball_chain(ctx, name):
            # an affine chain from the input: exact over the ball (cheap: coefficients shared by the batch;
            # e.g. a recurrent net's joint input projection, not T x m identity rows per sample)
            with ctx.timer("intermediate"):
                iv = affine_chain_bounds(ctx, name, iv)
        elif refined:
            iv = refine(ctx, name, iv)
        best[name] = iv
        if sound:
            rounding.record(ctx, name, iv)
        if name in need:
            ctx.bounds[name] = iv


def _refine(ctx: RunContext, name: str, iv: Interval) -> Interval:
    if interval_is_exact(ctx, name):
        return iv
    sel = rows_needing_refinement(ctx, name, iv)
    rows, needed = sel if sel is not None else (None, None)
    if rows is not None and rows.numel() == 0:
        return iv
    with ctx.timer("intermediate"):
        lo, hi = backward_bounds(ctx, name, rows=rows)
    return merge_rows(ctx, name, iv, rows, needed, lo, hi)


def merge_rows(ctx: RunContext, name: str, iv: Interval, rows: Tensor | None, needed: Tensor | None,
               lo: Tensor, hi: Tensor, straight_through: bool = False, check: bool = True) -> Interval:
    """`iv` with the backward bounds lo / hi (B, R) of `rows` ((B, R) flat indices, or None for all
    neurons) written in where the sample needs them (`needed`, (B, R) or (B, n), or None for all), then
    intersected with iv. Raises SoundnessError when an interval comes out empty (check=False: returns
    the intersection as it is, crossed or not, for callers to whom an empty interval means an empty
    set, e.g. a branch-and-bound sub-domain whose split constraints cannot all hold). straight_through: the
    intersection's value, but the gradient of the backward bounds (an optimiser keeps improving them
    where iv happens to be tighter)."""
    shape = (ctx.batch,) + ctx.shape(name)
    if rows is None:
        new = Interval(lo.reshape(shape), hi.reshape(shape))
        if needed is not None:  # every row was refined for some sample: keep the others' intervals too
            new = Interval(torch.where(needed.reshape(shape), new.lower, iv.lower),
                           torch.where(needed.reshape(shape), new.upper, iv.upper))
    else:
        # padding rows (another sample's inexact neurons) keep their interval: a sample's bounds must not
        # depend on which other samples share its batch
        flo, fhi = iv.lower.reshape(ctx.batch, -1), iv.upper.reshape(ctx.batch, -1)
        lo = torch.where(needed, lo, flo.gather(1, rows))
        hi = torch.where(needed, hi, fhi.gather(1, rows))
        flo = flo.clone().scatter_(1, rows, lo)
        fhi = fhi.clone().scatter_(1, rows, hi)
        new = Interval(flo.reshape(shape), fhi.reshape(shape))
    out = new.intersect(iv)
    if straight_through:
        out = Interval(new.lower + (out.lower - new.lower).detach(), new.upper + (out.upper - new.upper).detach())
    if not check:
        return out
    tol = 1e-6 * (1 + out.lower.abs() + out.upper.abs())
    if (out.lower > out.upper + tol).any():
        raise SoundnessError(f"empty interval at node {name!r}: an intermediate bound is unsound")
    return Interval(torch.minimum(out.lower, out.upper), torch.maximum(out.lower, out.upper))


def rows_needing_refinement(ctx: RunContext, name: str, iv: Interval) -> tuple[Tensor | None, Tensor] | None:
    """Per-sample flat neuron indices (B, R) of `name` whose bounds can still change a relaxation, and a
    (B, R) mask of which of them the sample itself needs (the rest pad to the batch's largest count);
    (None, mask (B, n)) when some sample needs every neuron; None when every neuron of every sample is
    needed (consumers whose relaxations are never known to be exact, e.g. smooth activations).

    Only the needed neurons take the backward bounds, the rest keep their interval: a sample's bounds are
    then the same whichever other samples share its batch.

    When every consumer of the node is an activation whose relaxation is exact on the current interval
    (e.g. a ReLU neuron that is stable), tighter bounds for that neuron change nothing downstream, so each
    sample refines only its own inexact neurons (padded to the batch's largest count).
    """
    g = ctx.graph
    masks = []
    for c in g.consumers(name):
        op = g.nodes[c].op
        exact = getattr(op, "exact_on", None)
        if exact is None:
            return None
        m = exact(iv.lower, iv.upper)
        if m is None:
            return None
        masks.append(m)
    if not masks:
        return None
    exact_all = masks[0]
    for m in masks[1:]:
        exact_all = exact_all & m
    need = (~exact_all).reshape(ctx.batch, -1)
    count = int(need.sum(1).max()) if need.numel() else 0
    if count == need.shape[1]:
        return None, need
    # per sample: its own inexact neurons first, padded with other (real) neurons up to the batch maximum
    order = torch.argsort((~need).to(torch.int8), dim=1, stable=True)
    rows = order[:, :count]
    return rows, need.gather(1, rows)


def bound_output(ctx: RunContext, C: Tensor | None = None, lower: bool = True,
                 upper: bool = True) -> tuple[Tensor | None, Tensor | None]:
    """Bounds of C · output for the method in ctx (engine 'interval' or 'backward')."""
    g = ctx.graph
    if ctx.method.engine == "interval":
        with ctx.timer("interval"):
            iv = interval_pass(ctx)[g.output_name]
        lo, hi = interval_spec(iv, C)
        if ctx.rounding is not None and C is not None:  # C . v over the box, rounded
            err = rounding.spec_error(ctx, C, iv)
            lo, hi = lo - err, hi + err
        return (lo if lower else None), (hi if upper else None)
    compute_intermediate_bounds(ctx)
    with ctx.timer("final"):
        return backward_bounds(ctx, g.output_name, C, lower, upper)
