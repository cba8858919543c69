"""alpha-CROWN: CROWN's backward bounds with relaxations optimised by projected gradient ascent.

Xu, Zhang, Wang, Wang, Jana, Lin, Hsieh, "Fast and Complete: Enabling Complete Neural Network
Verification with Rapid and Massively Parallel Incomplete Verifiers", ICLR 2021.

Every start (an intermediate node whose bounds CROWN refines, or the output spec C; optimize/plan.py)
has its own relaxation parameters per neuron and per spec row (optimize/lines.py), initialised at CROWN's
lines (warm start: the first iterate is CROWN's bound). One iteration recomputes, in topological order,
every refined intermediate bound with its start's parameters (intersected with CROWN's, both sound) and
then the output bound; the loss is minus the sum of the output lower bounds, and Adam updates every
parameter (intermediate ones through the intermediate bounds' effect on later relaxations), followed by a
projection onto the parameters' ranges. Upper bounds are lower bounds of -C.

Soundness: every parameter value in its range gives sound relaxations (optimize/lines.py), the
intermediate bounds of every iterate are sound, so every iterate's bound is sound, and the best bound
seen per sample and row (their elementwise maximum) is too.

Batch independence: the loss is a sum over samples, Adam acts elementwise, and early stopping is per
sample (a stopped sample's parameters are frozen), so a sample's bounds do not depend on its batch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..engine.backward import compute_intermediate_bounds, identity_start, merge_rows, propagate, rows_per_pass
from ..engine.context import RunContext
from .config import AlphaConfig
from .plan import ReferenceRecorder, Start, bind, build_start, stack_negated, unbind


@dataclass
class AlphaResult:
    """Best bounds found (B, S) (None for a side not asked for), the tightest intermediate bounds seen
    (node -> Interval, detached), iterations run, and the starts (their optimised parameters)."""

    lower: Tensor | None
    upper: Tensor | None
    bounds: dict
    iterations: int
    starts: dict


def _spec_rows(C: Tensor, lower: bool, upper: bool) -> Tensor:
    parts = ([C] if lower else []) + ([-C] if upper else [])
    return torch.cat(parts, 1)


class _Optimiser:
    def __init__(self, ctx: RunContext, C: Tensor, lower: bool, upper: bool, cfg: AlphaConfig,
                 on_iterate: Callable | None = None):
        self.ctx, self.cfg = ctx, cfg
        self.on_iterate = on_iterate
        self.lower, self.upper = lower, upper
        self.S = C.shape[1]
        self.Cs = _spec_rows(C, lower, upper)
        # CROWN's bounds: the reference every iterate is intersected with, and the parameters' warm start
        rec = ReferenceRecorder()
        with torch.no_grad():
            compute_intermediate_bounds(ctx, refine=rec)
        self.ref = dict(ctx.bounds)
        self.refined = {k: v for k, v in rec.record.items()}
        self.starts: dict[str, Start] = {}
        ref_all = dict(self.ref)
        ref_all.update({k: v[2] for k, v in self.refined.items()})
        self.ref_all = ref_all
        if cfg.intermediate:
            for name, (rows, needed, _) in self.refined.items():
                R = ctx.graph.nodes[name].shape if rows is None else None
                n = rows.shape[1] if rows is not None else math.prod(R)
                if n == 0:
                    continue
                self.starts[name] = build_start(ctx, name, rows, needed, 2 * n, ref_all, cfg.max_params)
        out = ctx.graph.output_name
        self.starts[out] = build_start(ctx, out, None, None, self.Cs.shape[1], ref_all, cfg.max_params)
        # CROWN's own output bound starts the best-so-far: the result is never looser than CROWN, even where
        # rounding moves the first iterate (a 1e-16 change of a box can change a product's plane choice)
        with torch.no_grad():
            zeros = self.Cs.new_zeros(ctx.batch, self.Cs.shape[1])
            self.crown, _ = propagate(ctx, out, self.Cs, None, zeros, zeros)

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
        out = merge_rows(ctx, name, iv, st.rows, st.needed, torch.cat(los, 1), torch.cat(his, 1))
        return _intersect_reference(out, ref)

    def evaluate(self) -> Tensor:
        """Lower bounds (B, S') of the stacked spec rows [C; -C] for the current parameters."""
        ctx = self.ctx
        g = ctx.graph
        ctx.relax_cache.clear()
        ctx.plane_cache.clear()
        if self.cfg.intermediate:
            ctx.bounds = {g.input_name: self.ref[g.input_name]}
            compute_intermediate_bounds(ctx, refine=self.refine)
        else:
            ctx.bounds = dict(self.ref)
        bind(ctx, self.starts[g.output_name])
        zeros = self.Cs.new_zeros(ctx.batch, self.Cs.shape[1])
        lo, _ = propagate(ctx, g.output_name, self.Cs, None, zeros, zeros)
        unbind(ctx)
        return lo

    # -- the loop -------------------------------------------------------------------------------------
    def run(self) -> AlphaResult:
        cfg = self.cfg
        groups: dict[float, list[Tensor]] = {}
        for st in self.starts.values():
            for prm in st.params.values():
                groups.setdefault(prm.lr_scale, []).extend(prm.tensors())
        params = [t for g in groups.values() for t in g]
        B = self.ctx.batch
        best = self.crown.clone()
        best_bounds: dict[str, Interval] = {}
        active = torch.ones(B, dtype=torch.bool, device=self.Cs.device)
        stale = torch.zeros(B, dtype=torch.long, device=self.Cs.device)
        best_sum = torch.full((B,), -math.inf, dtype=self.Cs.dtype, device=self.Cs.device)
        opt = torch.optim.Adam([{"params": g, "lr": cfg.lr * k, "scale": k} for k, g in groups.items()],
                               lr=cfg.lr) if params else None
        it = 0
        for it in range(1, cfg.iterations + 1):
            with torch.enable_grad():
                lo = self.evaluate()
            with torch.no_grad():
                if self.on_iterate is not None:
                    self.on_iterate(it, *self._split(lo.detach()))
                best = torch.maximum(best, lo.detach())
                self._keep_bounds(best_bounds)
                total = lo.detach().sum(1)
                improved = total > best_sum + 1e-12 * (1 + best_sum.abs())
                best_sum = torch.where(improved, total, best_sum)
                stale = torch.where(improved, torch.zeros_like(stale), stale + 1)
                active &= stale < cfg.patience
                if cfg.stop_at is not None:
                    active &= ~(best > cfg.stop_at).all(1)
            if it == cfg.iterations or opt is None or not bool(active.any()):
                break
            self._step(opt, params, lo, active, it)
        return self._result(best, best_bounds, it)

    def _step(self, opt, params: list[Tensor], lo: Tensor, active: Tensor, it: int) -> None:
        loss = -(lo * active.to(lo.dtype).unsqueeze(1)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _snap_noise(params)
        frozen = [p.detach().clone() for p in params] if not bool(active.all()) else None
        for group in opt.param_groups:
            group["lr"] = self.cfg.lr * group["scale"] * self.cfg.lr_decay ** (it - 1)
        opt.step()
        with torch.no_grad():
            if frozen is not None:  # stopped samples keep their parameters (batch independence)
                for p, f in zip(params, frozen):
                    keep = active.reshape((-1,) + (1,) * (p.dim() - 1))
                    p.copy_(torch.where(keep, p, f))
            for st in self.starts.values():
                for prm in st.params.values():
                    prm.project()

    def _keep_bounds(self, best_bounds: dict[str, Interval]) -> None:
        for name, iv in self.ctx.bounds.items():
            iv = Interval(iv.lower.detach(), iv.upper.detach())
            best_bounds[name] = iv if name not in best_bounds else best_bounds[name].intersect(iv)

    def _split(self, stacked: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Bounds of the stacked rows [C; -C] as (lower of C, upper of C)."""
        S = self.S
        lower = stacked[:, :S] if self.lower else None
        upper = None
        if self.upper:
            upper = -(stacked[:, S:] if self.lower else stacked)
        return lower, upper

    def _result(self, best: Tensor, best_bounds: dict, it: int) -> AlphaResult:
        return AlphaResult(*self._split(best), best_bounds, it, self.starts)


def _intersect_reference(iv: Interval, ref: Interval) -> Interval:
    """iv ∩ ref (ref: CROWN's bounds, constant) in value, with iv's gradient everywhere (straight-through):
    at the warm start iv equals ref up to rounding, and the gradient of an exact max / min would follow
    which side rounding made larger."""
    lo = iv.lower + (torch.maximum(iv.lower, ref.lower) - iv.lower).detach()
    hi = iv.upper + (torch.minimum(iv.upper, ref.upper) - iv.upper).detach()
    return Interval(lo, hi)


def _snap_noise(params: list[Tensor]) -> None:
    """Zero gradient entries at rounding-noise level (<= 1000 ulps of the sample's largest gradient entry
    of that tensor, or absolute for tensors of gradients near 0; bounds are O(1)). Adam divides by the gradient's running magnitude, so a pure-noise gradient would take
    a full step, and noise differs between batch compositions: without this, bounds of the same sample
    differ ~1e-8 between batches; with it, to rounding."""
    for p in params:
        g = p.grad
        if g is None:
            continue
        flat = g.reshape(g.shape[0], -1).abs()
        tol = 1000 * torch.finfo(g.dtype).eps * (1 + flat.amax(1, keepdim=True))
        g.masked_fill_((flat <= tol).reshape(g.shape), 0.0)


def optimized_bounds(ctx: RunContext, C: Tensor | None, lower: bool = True, upper: bool = True,
                     config: AlphaConfig = AlphaConfig(), on_iterate: Callable | None = None) -> AlphaResult:
    """alpha-CROWN bounds of C · output (C (B, S, *out) or None for every output) over ctx.spec, with
    ctx.method's relaxations (CROWN's) as the warm start. See the module docstring.

    on_iterate(iteration, lower, upper) sees every iterate's bounds (None for a side not asked for)."""
    g = ctx.graph
    if C is None:
        K = math.prod(g.output_shape)
        C = torch.eye(K, dtype=ctx.spec.center.dtype, device=ctx.spec.center.device)
        C = C.reshape((1, K) + g.output_shape).expand((ctx.batch, K) + g.output_shape)
    if not (lower or upper):
        raise ValueError("ask for at least one side")
    return _Optimiser(ctx, C, lower, upper, config, on_iterate).run()
