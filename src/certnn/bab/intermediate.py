"""Intermediate bounds of branch-and-bound sub-domains, recomputed after a split.

A sub-domain starts from its parent's intermediate bounds (the root's alpha-CROWN bounds, split neurons
clipped to their side). A split at layer k can tighten every later layer: the split neuron's relaxation
becomes exact, so the backward bounds of later neurons improve, neurons turn stable and later
relaxations narrow. beta-CROWN (Wang et al., NeurIPS 2021) recomputes those bounds per sub-domain; here
they are recomputed node by node in topological order, each intersected with the stored bounds before the
next node uses it, only for nodes after the round's shallowest split (a split changes nothing upstream;
every parent's bounds were already recomputed for its own splits).

Two kinds of lines for the recomputation's backward passes:

* ``crown``: CROWN's lines on the sub-domain's bounds;
* ``alpha``: the root's optimised lower slopes of every intermediate start (alpha-CROWN's per-neuron,
  per-row parameters, optimize/plan.py), applied to the sub-domain's narrower bounds: each child's
  passes start from the slopes that made the root's bounds tight instead of CROWN's adaptive ones.

Soundness: both are backward bounds with valid lines on sound input bounds (any ReLU lower slope in
[0, 1] is valid on any interval, optimize/lines.py), and every result is intersected with the stored bound,
which is sound for the sub-domain; the sub-domain's set only shrinks, so the root's bounds stay valid.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..engine.backward import (backward_bounds, compute_intermediate_bounds, identity_start, merge_rows, propagate,
                               rows_needing_refinement, rows_per_pass)
from ..engine.targets import interval_is_exact
from ..engine.context import RunContext
from ..optimize.plan import Start, bind, stack_negated, unbind


def recompute(ctx: RunContext, stored: dict, cut: int, roots: Tensor,
              root_starts: dict | None) -> tuple[dict, Tensor]:
    """(new intermediate bounds (node -> Interval), empty (D,) bool) of the sub-domains in ctx (batch D,
    root index `roots` (D,)): nodes at graph position <= cut keep `stored`; later ones are recomputed and
    intersected with it. root_starts: None for CROWN's lines, else start name -> (rows, needed, params)
    of the root's alpha-CROWN (batch: the roots). `empty` marks sub-domains where a recomputed interval
    and the stored one do not meet (beyond a 1e-6 relative tolerance): both hold for every point of the
    sub-domain, so it has none (its split constraints cannot all hold); its bounds are then the stored
    ones, and it needs no further proof."""
    g = ctx.graph
    pos = {n: i for i, n in enumerate(g.order)}
    empty = torch.zeros(ctx.batch, dtype=torch.bool, device=ctx.spec.center.device)

    def refine(c: RunContext, name: str, iv: Interval) -> Interval:
        nonlocal empty
        st = None if root_starts is None else root_starts.get(name)
        if interval_is_exact(c, name):
            out = iv
        elif st is None:
            out = _refine_crown(c, name, iv)
        else:
            out = _refine_alpha(c, name, iv, roots, *st)
        if name not in stored:
            return out
        old = stored[name]
        out = out.intersect(old)
        tol = 1e-6 * (1 + out.lower.abs() + out.upper.abs())
        bad = (out.lower > out.upper + tol).reshape(c.batch, -1).any(1)
        empty = empty | bad
        keep = bad.reshape((-1,) + (1,) * (out.lower.dim() - 1))
        lo, hi = torch.where(keep, old.lower, out.lower), torch.where(keep, old.upper, out.upper)
        return Interval(torch.minimum(lo, hi), torch.maximum(lo, hi))

    ctx.bounds = {k: v for k, v in stored.items() if k == g.input_name or pos.get(k, math.inf) <= cut}
    with torch.no_grad():
        compute_intermediate_bounds(ctx, refine=refine)
    return {k: (v.intersect(ctx.bounds[k]) if k in ctx.bounds else v) for k, v in stored.items()}, empty


def _refine_crown(ctx: RunContext, name: str, iv: Interval) -> Interval:
    """CROWN's backward bounds of the neurons of `name` whose bounds can matter (engine.backward._refine,
    without its check for crossed intervals: here they mean an empty sub-domain, see `recompute`)."""
    sel = rows_needing_refinement(ctx, name, iv)
    rows, needed = sel if sel is not None else (None, None)
    if rows is not None and rows.numel() == 0:
        return iv
    lo, hi = backward_bounds(ctx, name, rows=rows)
    return merge_rows(ctx, name, iv, rows, needed, lo, hi, check=False)


def _refine_alpha(ctx: RunContext, name: str, iv: Interval, roots: Tensor, rows: Tensor | None,
                  needed: Tensor | None, params: dict) -> Interval:
    """Backward bounds of the root's refined rows of `name` with the root's optimised parameters, for
    sub-domains of roots `roots` (rows [I; -I]: upper bounds as minus lower bounds of -x, as alpha-CROWN's
    intermediate starts). With a single root its parameters broadcast over the sub-domains (no copy)."""
    dev = ctx.spec.center.device
    rows = None if rows is None else rows[roots]
    needed = None if needed is None else needed[roots]
    R = rows.shape[1] if rows is not None else math.prod(ctx.shape(name))
    ids = rows if rows is not None else torch.arange(R, device=dev)
    one_root = all(t.shape[0] == 1 for p in params.values() for t in p.tensors())
    step = rows_per_pass(ctx, name)
    los, his = [], []
    for r0 in range(0, R, step):
        r1 = min(R, r0 + step)
        k = r1 - r0
        A, node, bias = identity_start(ctx, name, ids[..., r0:r1])
        b = ctx.spec.center.new_zeros(ctx.batch, k) if bias is None else bias
        idx = torch.cat([torch.arange(r0, r1), R + torch.arange(r0, r1)]).to(dev)
        chunk = {n: p.rows(idx) for n, p in params.items()}
        if not one_root:
            chunk = {n: p.select(roots) for n, p in chunk.items()}
        bind(ctx, Start(name, None, None, 2 * k, chunk))
        lo2, _ = propagate(ctx, node, stack_negated(A), None, torch.cat([b, -b], 1), torch.cat([b, -b], 1))
        los.append(lo2[:, :k])
        his.append(-lo2[:, k:])
    unbind(ctx)
    return merge_rows(ctx, name, iv, rows, needed, torch.cat(los, 1), torch.cat(his, 1), check=False)


def root_starts(res, start_rows: dict, output: str) -> dict:
    """start name -> (rows, needed, {activation node: Params}) of a root alpha-CROWN result `res`
    (optimize.AlphaResult) whose starts' rows are `start_rows` (name -> (rows, needed)); intermediate
    starts only."""
    out = {}
    for name, (rows, needed) in start_rows.items():
        if name == output:
            continue
        params = {k[1]: p for k, p in res.params.items() if k[0] == name}
        if params:
            out[name] = (rows, needed, params)
    return out


__all__ = ["recompute", "root_starts"]
