"""Which backward passes alpha-CROWN optimises, and their parameters.

A *start* is one family of backward passes: the identity rows of an intermediate node whose bounds the
backward engine refines (the same neurons CROWN refines: `engine.backward.rows_needing_refinement`), or
the output specification C. Each start gets its own relaxation parameters for every optimisable
activation upstream of it, one per neuron and per spec row (`optimize.lines`). Intermediate starts bound
both sides with lower-bound passes only: rows [I; -I] (the upper bound of x is minus the lower bound of
-x), so every row has exactly one set of parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..engine.backward import _refine, rows_needing_refinement
from ..engine.targets import interval_is_exact
from ..engine.context import RunContext
from ..ops.activation import Activation
from .compact_slopes import compact_params
from .lines import OPTIMISABLE, PRODUCTS, make_params
from .product_mix import make_plane_params


@dataclass
class Start:
    """One family of backward passes: `name` (a refined node or the output), its rows (B, R) or None
    (every neuron) with the per-sample `needed` mask, `n_rows` spec rows of the lower-bound pass, and
    the parameters of each optimisable activation upstream (activation node -> lines.*Slopes)."""

    name: str
    rows: Tensor | None
    needed: Tensor | None
    n_rows: int
    params: dict = field(default_factory=dict)

    def tensors(self) -> list[Tensor]:
        return [t for p in self.params.values() for t in p.tensors()]


class ReferenceRecorder:
    """A refine function for compute_intermediate_bounds that runs the base method's refinement and
    records, per refined node, (rows, needed, interval after refinement) in `record`."""

    def __init__(self):
        self.record: dict[str, tuple] = {}

    def __call__(self, ctx: RunContext, name: str, iv: Interval) -> Interval:
        if interval_is_exact(ctx, name):
            return iv
        sel = rows_needing_refinement(ctx, name, iv)
        out = _refine(ctx, name, iv)
        rows, needed = sel if sel is not None else (None, None)
        self.record[name] = (rows, needed, out)
        return out


def upstream_optimisable(ctx: RunContext, start: str) -> list[str]:
    """Activation and product nodes with optimisable relaxations that `start` depends on (excluded
    itself), in topological order."""
    g = ctx.graph
    out = []
    for n in g.ancestors(start)[:-1]:
        op = g.nodes[n].op
        if (isinstance(op, Activation) and op.kind in OPTIMISABLE) or op.kind in PRODUCTS:
            out.append(n)
    return out


def _needs_params(ctx: RunContext, node_name: str, bounds: dict[str, Interval]) -> bool:
    node = ctx.graph.nodes[node_name]
    ivs = [bounds.get(i) for i in node.inputs]
    if any(iv is None for iv in ivs):
        return False
    exact = node.op.exact_on(ivs[0].lower, ivs[0].upper) if len(ivs) == 1 else None
    return exact is None or not bool(exact.all())


def build_start(ctx: RunContext, name: str, rows: Tensor | None, needed: Tensor | None, n_rows: int,
                bounds: dict[str, Interval], max_params: int, warm: dict | None = None,
                compact: bool = False) -> Start:
    """A start with parameters initialised at the base method's lines on `bounds` (the reference), or
    taken from `warm` ((start, node) -> Params of the same kind and shape, e.g. a parent domain's).
    compact: ReLU slopes for the unstable neurons only (optimize/compact_slopes.py; an intermediate
    start's reference bounds are never loosened, so its stable neurons stay stable)."""
    st = Start(name, rows, needed, n_rows)
    B = ctx.batch
    for act in upstream_optimisable(ctx, name):
        if not _needs_params(ctx, act, bounds):
            continue
        node = ctx.graph.nodes[act]
        ivs = [bounds[i] for i in node.inputs]
        n = ivs[0].lower[0].numel()
        r = n_rows if B * n_rows * n <= max_params else 1
        p = _initial_params(ctx, act, node.op, ivs, r, compact)
        w = (warm or {}).get((name, act))
        if p is not None and w is not None and type(w) is type(p) and all(
                a.shape == b.shape for a, b in zip(w.tensors(), p.tensors())) and all(
                torch.equal(getattr(w, f), getattr(p, f)) for f in p.match_fields):
            p = w._copy(**{f: t.detach().clone() for f, t in zip(w.opt_fields, w.tensors())})
        if p is not None:
            for t in p.tensors():
                t.requires_grad_(True)
            st.params[act] = p
    return st


def _initial_params(ctx: RunContext, name: str, op, ivs: list[Interval], rows: int, compact: bool):
    """Parameters of an activation or product op on its inputs' bounds, at the base method's lines. The
    base method's lines / planes come from the context's caches (ctx.relaxation / ctx.planes, keyed by
    node and bound tensors): every start upstream of a node sees the same reference bounds."""
    if op.kind in PRODUCTS:
        box = [t for iv in ivs for t in (iv.lower, iv.upper)]
        pl = ctx.planes(op, name, *box)
        return make_plane_params(op, pl, *(t.detach() for t in box), rows)
    p = compact_params(op, ivs[0].lower, ivs[0].upper, rows) if compact else None
    if p is None:
        base = ctx.relaxation(op, name, ivs[0].lower, ivs[0].upper)
        p = make_params(op, base, ivs[0].lower.detach(), ivs[0].upper.detach(), rows)
    return p


def bind(ctx: RunContext, start: Start, index: Tensor | None = None) -> None:
    """Make the backward engine use `start`'s parameters (the rows `index` of them, when chunked)."""
    params = start.params if index is None else {k: p.rows(index) for k, p in start.params.items()}
    ctx.line_params = {k: p for k, p in params.items() if not p.planes}
    ctx.plane_params = {k: p for k, p in params.items() if p.planes}


def unbind(ctx: RunContext) -> None:
    ctx.line_params = {}
    ctx.plane_params = {}


def stack_negated(A):
    """Rows [A; -A] of coefficients (a tensor (B, R, ...) or Patches)."""
    from ..engine.patches import Patches, is_patches

    if is_patches(A):
        return Patches(torch.cat([A.data, -A.data], 1), torch.cat([A.offset, A.offset], 1), A.spatial)
    return torch.cat([A, -A], 1)
