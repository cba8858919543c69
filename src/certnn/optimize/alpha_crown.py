"""alpha-CROWN: CROWN's backward bounds with relaxations optimised by projected gradient ascent.

Xu, Zhang, Wang, Wang, Jana, Lin, Hsieh, "Fast and Complete: Enabling Complete Neural Network
Verification with Rapid and Massively Parallel Incomplete Verifiers", ICLR 2021.

Every start (an intermediate node whose bounds CROWN refines, or the output spec C; optimize/plan.py)
has its own relaxation parameters per neuron and per spec row (optimize/lines.py), initialised at CROWN's
lines (warm start: the first iterate is CROWN's bound). One iteration recomputes, in topological order,
every refined intermediate bound with its start's parameters (intersected with CROWN's, both sound) and
then the output bound; the loss is minus the sum of the output lower bounds, and Adam updates every
parameter (intermediate ones through the intermediate bounds' effect on later relaxations), followed by a
projection onto the parameters' ranges (optimize/loop.py). Upper bounds are lower bounds of -C.

With split constraints (branch and bound, optimize/beta.py) the intermediate bounds are given (the
sub-domain's), only the output's parameters and the split multipliers beta are optimised.

Soundness: every parameter value in its range gives sound relaxations (optimize/lines.py), the
intermediate bounds of every iterate are sound, so every iterate's bound is sound, and the best bound
seen per sample and row (their elementwise maximum, floored at CROWN's own bound) is too.

Batch independence: the loss is a sum over samples, Adam acts elementwise, and early stopping is per
sample (a stopped sample's parameters are frozen, then it leaves the batch), so a sample's bounds depend
on its batch only through floating-point rounding of batched products. Gradients must not turn those
last-ulp differences into different steps: where an offset is an extreme over tied candidates, or a
candidate point sits on a face of the box, the gradient is decided with a tolerance (relax.ties,
relax.product_extremes._candidate). Measured over 20 iterations (tests/unit/engine/
test_batch_independence.py, seed 5011): ReLU MLPs and RNNs agree to 1e-15 relative, LSTM / GRU cells to
<= 2e-13 (GRU under L2; no growth over the iterations). Parameters can differ more where the bound does
not depend on them (Adam's normalised step on a near-zero gradient; one tangent position of a
bidirectional GRU under L2 differs by its whole range with the bounds equal to 1e-13). One decision is
per batch: a pass's parameters are shared by its rows when B · rows · neurons exceeds
`AlphaConfig.max_params` (only for very wide layers or large batches).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..engine.backward import compute_intermediate_bounds, identity_start, merge_rows, propagate, rows_per_pass
from ..engine.context import RunContext
from .beta import SplitBetas
from .config import AlphaConfig
from .plan import ReferenceRecorder, Start, bind, build_start, stack_negated, unbind


@dataclass
class AlphaResult:
    """Best bounds found (B, S) (None for a side not asked for), the tightest intermediate bounds seen
    (node -> Interval, detached), iterations run, and the best parameters per sample (detached, for warm
    starts): `params` maps (start, node) -> lines.Params, `betas` maps a ReLU node -> SplitBetas."""

    lower: Tensor | None
    upper: Tensor | None
    bounds: dict
    iterations: int
    params: dict
    betas: dict
    #: start name -> (rows, needed) of each optimised backward pass (optimize/plan.Start), full batch
    starts: dict = field(default_factory=dict)


def _spec_rows(C: Tensor, lower: bool, upper: bool) -> Tensor:
    parts = ([C] if lower else []) + ([-C] if upper else [])
    return torch.cat(parts, 1)


class _Problem:
    """Everything with a batch dim: the context, spec rows, reference bounds and parameters.
    `select(index)` keeps the samples `index` (for stopping samples that are done)."""

    def __init__(self, ctx: RunContext, Cs: Tensor, cfg: AlphaConfig, reference: dict | None,
                 splits: dict | None, warm: dict | None, stop: Tensor | None = None):
        self.ctx, self.Cs, self.cfg = ctx, Cs, cfg
        self.stop = stop  # (B, S') per-row thresholds: a sample is done once every best bound exceeds its own
        if reference is None:
            # CROWN's bounds: the reference every iterate is intersected with, and the warm start
            rec = ReferenceRecorder()
            with torch.no_grad():
                compute_intermediate_bounds(ctx, refine=rec)
            self.ref = dict(ctx.bounds)
            self.refined = dict(rec.record)
        else:
            self.ref, self.refined = dict(reference), {}
        self.ref_all = dict(self.ref)
        self.ref_all.update({k: v[2] for k, v in self.refined.items()})
        self.seen: dict[str, Interval] = {}
        self.starts: dict[str, Start] = {}
        if cfg.intermediate and reference is None:
            for name, (rows, needed, _) in self.refined.items():
                n = rows.shape[1] if rows is not None else math.prod(ctx.graph.nodes[name].shape)
                if n:
                    self.starts[name] = build_start(ctx, name, rows, needed, 2 * n, self.ref_all, cfg.max_params,
                                                    warm, compact=True)
        out = ctx.graph.output_name
        self.starts[out] = build_start(ctx, out, None, None, Cs.shape[1], self.ref_all, cfg.max_params, warm)
        self.betas = {}
        for node, sign in (splits or {}).items():
            b0 = sign.new_zeros((sign.shape[0], Cs.shape[1]) + tuple(sign.shape[1:]))
            w = (warm or {}).get(("beta", node))
            if w is not None and w.beta.shape == b0.shape:
                b0 = w.beta.detach().clone() * (sign.unsqueeze(1) != 0)
            self.betas[node] = SplitBetas(sign, b0.requires_grad_(True))
        # CROWN's own output bound floors the best-so-far: never looser than CROWN, even where rounding
        # moves the first iterate (a 1e-16 change of a box can change a product's plane choice)
        with torch.no_grad():
            ctx.bounds = dict(self.ref)
            ctx.split_terms = {k: b.term() for k, b in self.betas.items()}
            zeros = Cs.new_zeros(ctx.batch, Cs.shape[1])
            self.crown, _ = propagate(ctx, out, Cs, None, zeros, zeros)
            ctx.split_terms = {}

    def params(self) -> list:
        """(key, Params) pairs: key (start, node) for lines, ('beta', node) for split multipliers."""
        out = [((s, k), p) for s, st in self.starts.items() for k, p in st.params.items()]
        return out + [(("beta", k), b) for k, b in self.betas.items()]

    def select(self, index: Tensor) -> None:
        ctx = self.ctx
        self.ctx = RunContext(ctx.graph, ctx.spec.select(index), ctx.method, max_rows=ctx.max_rows,
                              max_elements=ctx.max_elements, patches=ctx.patches)
        self.ctx.timers = ctx.timers
        self.Cs, self.crown = self.Cs[index], self.crown[index]
        self.stop = None if self.stop is None else self.stop[index]
        pick = lambda iv: Interval(iv.lower[index], iv.upper[index])  # noqa: E731
        self.ref = {k: pick(v) for k, v in self.ref.items()}
        self.ref_all = {k: pick(v) for k, v in self.ref_all.items()}
        self.refined = {k: (None if r is None else r[index], None if n is None else n[index], pick(iv))
                        for k, (r, n, iv) in self.refined.items()}
        for st in self.starts.values():
            st.rows = None if st.rows is None else st.rows[index]
            st.needed = None if st.needed is None else st.needed[index]
            st.params = {k: p.select(index) for k, p in st.params.items()}
        self.betas = {k: b.select(index) for k, b in self.betas.items()}

    # -- one evaluation -----------------------------------------------------------------------------
    def refine(self, ctx: RunContext, name: str, iv: Interval) -> Interval:
        ref = self.ref_all.get(name)
        st = self.starts.get(name)
        if st is None:
            return iv if ref is None else iv.intersect(ref)
        rows = st.rows
        if rows is None:
            rows = torch.arange(st.n_rows // 2, device=ctx.spec.center.device)
        R = rows.shape[-1]
        step = rows_per_pass(ctx, name)
        los, his = [], []
        for r0 in range(0, R, step):
            r1 = min(R, r0 + step)
            A, node, bias = identity_start(ctx, name, rows[..., r0:r1])
            k = r1 - r0
            b = ctx.spec.center.new_zeros(ctx.batch, k) if bias is None else bias
            idx = torch.cat([torch.arange(r0, r1), R + torch.arange(r0, r1)]).to(ctx.spec.center.device)
            bind(ctx, st, None if (r0 == 0 and r1 == R) else idx)
            lo2, _ = propagate(ctx, node, stack_negated(A), None, torch.cat([b, -b], 1), torch.cat([b, -b], 1))
            los.append(lo2[:, :k])
            his.append(-lo2[:, k:])
        unbind(ctx)
        # the value is the intersection with the interval image (sound), the gradient the optimised
        # bounds' even where the interval is tighter: otherwise those rows' parameters get no gradient and
        # stay where a bad early step left them (MNIST 256x4 VNN-COMP net, prop 14, 20 iterations: mean
        # margin -1.778 with the exact gradient, -1.526 with this; auto_LiRPA -1.647)
        out = merge_rows(ctx, name, iv, st.rows, st.needed, torch.cat(los, 1), torch.cat(his, 1),
                         straight_through=True)
        out = _intersect_reference(out, ref)
        self.seen[name] = Interval(out.lower.detach(), out.upper.detach())
        return out

    def tighten_reference(self) -> None:
        """Intersect the reference with the intermediate bounds of the last evaluation: later iterations
        start from the tightest bounds found so far (all sound), so improvements compound through depth
        (measured: MNIST 256x4 VNN-COMP net, 20 iterations, margins -1.785 without, see docs)."""
        for name, iv in self.seen.items():
            self.ref_all[name] = self.ref_all[name].intersect(iv)
        self.seen = {}

    def evaluate(self) -> Tensor:
        """Lower bounds (B, S') of the stacked spec rows [C; -C] for the current parameters."""
        ctx = self.ctx
        g = ctx.graph
        ctx.relax_cache.clear()
        ctx.plane_cache.clear()
        if self.starts.keys() - {g.output_name}:
            ctx.bounds = {g.input_name: self.ref[g.input_name]}
            compute_intermediate_bounds(ctx, refine=self.refine)
        else:
            ctx.bounds = dict(self.ref)
        bind(ctx, self.starts[g.output_name])
        ctx.split_terms = {k: b.term() for k, b in self.betas.items()}
        zeros = self.Cs.new_zeros(ctx.batch, self.Cs.shape[1])
        lo, _ = propagate(ctx, g.output_name, self.Cs, None, zeros, zeros)
        unbind(ctx)
        ctx.split_terms = {}
        return lo


def _intersect_reference(iv: Interval, ref: Interval) -> Interval:
    """iv ∩ ref (ref: CROWN's bounds, constant) in value, with iv's gradient everywhere (straight-through):
    at the warm start iv equals ref up to rounding, and the gradient of an exact max / min would follow
    which side rounding made larger."""
    lo = iv.lower + (torch.maximum(iv.lower, ref.lower) - iv.lower).detach()
    hi = iv.upper + (torch.minimum(iv.upper, ref.upper) - iv.upper).detach()
    return Interval(lo, hi)


def optimized_bounds(ctx: RunContext, C: Tensor | None, lower: bool = True, upper: bool = True,
                     config: AlphaConfig = AlphaConfig(), on_iterate: Callable | None = None,
                     reference: dict | None = None, splits: dict | None = None,
                     warm: dict | None = None, deadline: float | None = None,
                     stop: Tensor | None = None) -> AlphaResult:
    """alpha-CROWN bounds of C · output (C (B, S, *out) or None for every output) over ctx.spec, with
    ctx.method's relaxations (CROWN's) as the warm start. See the module docstring.

    on_iterate(iteration, lower, upper) sees every iterate's bounds (of the samples still optimised, in
    their original positions; None for a side not asked for). reference: given intermediate bounds
    (node -> Interval, e.g. a branch-and-bound sub-domain's; then only the output is optimised). splits:
    ReLU node -> sign (B, *shape) in {-1, 0, 1} of split constraints on its input (beta-CROWN; lower
    bounds only). warm: parameters to start from, as AlphaResult.params (used where shapes match).
    deadline: a time.perf_counter() value; no iteration starts that would end past it (at the last one's pace). stop: (B, S)
    thresholds of the lower bounds (lower side only; -inf for a row that does not matter): a sample stops
    once its best lower bound exceeds the threshold in every row (e.g. branch and bound's sub-domain is
    proved), like AlphaConfig.stop_at with one value per row."""
    from .loop import run

    g = ctx.graph
    if C is None:
        K = math.prod(g.output_shape)
        C = torch.eye(K, dtype=ctx.spec.center.dtype, device=ctx.spec.center.device)
        C = C.reshape((1, K) + g.output_shape).expand((ctx.batch, K) + g.output_shape)
    if not (lower or upper):
        raise ValueError("ask for at least one side")
    if splits and upper:
        raise ValueError("split constraints (beta) bound the lower side only; bound -C for upper bounds")
    if stop is not None and (upper or not lower or stop.shape != C.shape[:2]):
        raise ValueError("stop thresholds (B, S) apply to lower bounds only")
    S = C.shape[1]
    prob = _Problem(ctx, _spec_rows(C, lower, upper), config, reference, splits, warm, stop)

    def split(stacked: Tensor) -> tuple[Tensor | None, Tensor | None]:
        lo = stacked[:, :S] if lower else None
        hi = -(stacked[:, S:] if lower else stacked) if upper else None
        return lo, hi

    hook = None if on_iterate is None else (lambda it, stacked: on_iterate(it, *split(stacked)))
    starts = {n: (st.rows, st.needed) for n, st in prob.starts.items()}  # before samples leave the batch
    best, bounds, its, params = run(prob, config, hook, deadline)
    return AlphaResult(*split(best), bounds, its,
                       {k: p for k, p in params.items() if k[0] != "beta"},
                       {k[1]: p for k, p in params.items() if k[0] == "beta"}, starts)


def bound_with(ctx: RunContext, C: Tensor, reference: dict, params: dict | None = None, betas: dict | None = None,
               capture: tuple[str, ...] = ()) -> Tensor:
    """Lower bounds (B, S) of C · output in one backward pass with given intermediate bounds
    (`reference`), output-start parameters (`params`, as AlphaResult.params; missing ones take the
    method's lines) and split multipliers (`betas`, node -> SplitBetas); the lower-bound coefficients of
    the `capture` nodes are left in ctx.captured. Sound for any parameter values in their ranges."""
    out = ctx.graph.output_name
    ctx.bounds = dict(reference)
    ctx.relax_cache.clear()
    ctx.plane_cache.clear()
    st = Start(out, None, None, C.shape[1], {k[1]: p for k, p in (params or {}).items() if k[0] == out})
    bind(ctx, st)
    ctx.split_terms = {k: b.term() for k, b in (betas or {}).items()}
    ctx.capture, ctx.captured = set(capture), {}
    zeros = C.new_zeros(ctx.batch, C.shape[1])
    try:
        lo, _ = propagate(ctx, out, C, None, zeros, zeros)
    finally:
        unbind(ctx)
        ctx.split_terms, ctx.capture = {}, set()
    return lo
