"""MILP-refined intermediate bounds of ReLU MLPs before branch and bound (issue 12).

On deep ReLU MLPs (VNN-COMP mnist_fc 256x4 / 256x6) the root's alpha-CROWN intermediate bounds of the deep
layers are so loose that ReLU splits gain little per level: a root margin of -580 gains ~10 per split level
(docs/benchmarks.md). alpha-beta-CROWN's `bab-refine` first tightens the first layers' intermediate bounds
by MILP; this module does the same with HiGHS (engine/milp.py's encoding, rows in bulk):

1. layer by layer from the first pre-activation with a ReLU upstream (the first hidden layer's bounds over
   a box are exact already), the network up to that layer is encoded per root, with the bounds known so
   far (the refined ones of earlier layers), and each *unstable* neuron's upper then lower bound is
   minimised / maximised with a short time limit per solve, the neurons in the order of their influence
   on the root's decisive bound (|its ReLU output's coefficient| x the triangle relaxation's gap
   u (-l) / (u - l)); a neuron proved stable by one side skips the other. Two passes, each optional: the
   LP (triangle relaxation; warm-started simplex, ~25 ms a solve on mnist_fc 256x6's second layer) over
   every unstable neuron (off by default: on alpha-CROWN's optimised bounds it tightened 5 of ~300 sides
   of 256x6 prop_8, alpha-CROWN reaches the LP), then the MILP (binaries integer) over those still
   unstable, in the time left (a MILP solve on that layer stops at a 1 s limit);
2. each new bound is the solver's *proved* bound (the LP optimum, or the MILP's dual bound when it stops at
   the time limit or the gap), never an incumbent, moved outwards by `proof_margin`, and intersected with
   the bound it replaces (never looser);
3. after each layer the later layers' bounds are recomputed with the root's optimised slopes on the
   tighter bounds (the caller's `after_layer`, bab/intermediate.recompute), so the next layer's unstable
   set and encoding use them;
4. the whole stage has a deadline; each layer gets an equal share of what is left (unused time rolls
   over), a layer stops when its share runs out and its other neurons keep their bounds (always sound).

The caller (refine_root) re-runs the root's alpha-CROWN with every node up to the deepest refined layer
fixed to the refined bounds (the later layers optimised again on them) and hands the result to branch
and bound, whose sub-domains start from these intermediate bounds.

Soundness. HiGHS reports no rigorous bound: its LPs are solved to feasibility tolerances (primal and dual
1e-7, MIP feasibility 1e-6, on the scaled model). A basis that is optimal within a dual tolerance eps is
optimal for costs perturbed by at most eps per column, which moves the minimum by at most
eps * sum_j max|x_j| over the columns (relaxed primal rows only lower a minimum: the safe side), and a MIP's
dual bound is a minimum of such node bounds. `proof_margin` moves every bound b outwards by
TOLERANCE * (1 + |b| + X) with TOLERANCE = 1e-6 (the MIP tolerance, 10x the LP ones) and X an upper
estimate of sum_j max|x_j| (every encoded node's bounds, plus one per binary); the 1 + |b| term covers the
float32 network (the verifier's) against the float64 encoding. The bounds fed into the encoding are
widened by WIDEN * (1 + |b|) first (float32 bounds from alpha-CROWN; wider bounds only loosen the MILP).
A solve that ends without a bound (or with one crossing the other side) changes nothing.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from ..certify.precision import round_away
from ..domains.interval import Interval
from ..engine import milp
from ..engine.context import RunContext
from ..engine.methods import get_method
from ..graph.ir import Graph
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.shape import Reshape
from ..specs.lp import LpBall

#: relative tolerance of a HiGHS bound (see the module docstring and `proof_margin`)
TOLERANCE = 1e-6
#: float32 bounds are widened by this (relative, + absolute) before they enter the float64 encoding
WIDEN = 1e-5


def proof_margin(bound: float, scale: float) -> float:
    """How far a HiGHS bound of value `bound` is moved outwards: TOLERANCE * (1 + |bound| + scale), scale an
    upper estimate of the sum over the model's columns of max |x_j| (module docstring)."""
    return TOLERANCE * (1.0 + abs(bound) + scale)


def is_relu_mlp(graph: Graph) -> bool:
    """Only single-input Linear (on flat inputs), per-neuron affine, reshape and ReLU nodes."""
    for name in graph.order[1:]:
        node = graph.nodes[name]
        op = node.op
        ok = isinstance(op, (Reshape, ElementwiseAffine)) or (isinstance(op, Activation) and op.kind == "relu")
        if isinstance(op, Linear):
            ok = len(graph.nodes[node.inputs[0]].shape) == 1
        if not ok or len(node.inputs) != 1:
            return False
    return True


def targets(graph: Graph) -> list[str]:
    """Pre-activation nodes (ReLU inputs) with a ReLU upstream, in topological order (the others are
    affine in the input: their interval bounds over a box are exact)."""
    relus = [n for n in graph.order if graph.nodes[n].op.kind == "relu"]
    out = []
    for n in relus:
        pre = graph.nodes[n].inputs[0]
        if any(graph.nodes[a].op.kind == "relu" for a in graph.ancestors(pre)) and pre not in out:
            out.append(pre)
    return out


@dataclass
class RefineStats:
    """solves: LP and MILP solves (milp_solves of them MILPs); timeouts: those stopped by their time limit
    (dual bound used); failed: those without a usable bound; tightened: neuron sides whose bound moved;
    stabilised: neurons made stable; layers: layers (x roots) refined."""

    solves: int = 0
    milp_solves: int = 0
    timeouts: int = 0
    failed: int = 0
    tightened: int = 0
    stabilised: int = 0
    layers: int = 0

    def as_dict(self) -> dict:
        """Every field, named refine_<field> (the keys of BabResult.stats)."""
        return {f"refine_{k}": v for k, v in asdict(self).items()}


def _widened(iv: Interval) -> Interval:
    lo, hi = iv.lower.detach().double().cpu(), iv.upper.detach().double().cpu()
    return Interval(lo - WIDEN * (1 + lo.abs()), hi + WIDEN * (1 + hi.abs()))


def _encoding(hp, g64: Graph, spec64: LpBall, bounds: dict, b: int, target: str, integer: bool):
    """(model, columns of `target`, scale X, has binaries) of root b's network up to `target`; the
    binaries relaxed to [0, 1] unless `integer` (the LP: the triangle relaxation of every unstable ReLU)."""
    m = milp._Model(hp)
    ctx = RunContext(g64, spec64, get_method("crown"))
    pos = {n: i for i, n in enumerate(g64.order)}
    ctx.bounds = {k: _widened(v) for k, v in bounds.items() if pos.get(k, math.inf) < pos[target]}
    cols, binaries = milp._encode(m, g64, ctx, b, spec64, upto=target)
    if integer:
        m.integer(np.array(binaries, dtype=np.int64))
    box = spec64.box()
    scale = float(torch.maximum(box.lower[b].abs(), box.upper[b].abs()).sum()) + len(binaries)
    for iv in list(ctx.bounds.values()) + [_widened(bounds[target])]:
        scale += 2.0 * float(torch.maximum(iv.lower[b].abs(), iv.upper[b].abs()).sum())
    return m, cols[target], scale, integer and len(binaries) > 0


def _solve(hp, m, col: int, sense: float, limit: float, has_int: bool) -> tuple[float | None, bool]:
    """(proved lower bound of sense * x[col] or None, stopped by the time limit)."""
    m.h.changeColCost(int(col), float(sense))
    # highspy 1.16, measured: a MIP run's time limit counts from its start, an LP run's from the model's
    # first run (HiGHS' run clock, summed over the runs: ERGO-Code/HiGHS issue 1477)
    start = 0.0 if has_int else m.h.getRunTime()
    m.h.setOptionValue("time_limit", float(start + limit))
    m.h.run()
    st = m.h.getModelStatus()  # read before the cost change below resets it
    info = m.h.getInfo()
    m.h.changeColCost(int(col), 0.0)
    timed_out = st == hp.HighsModelStatus.kTimeLimit
    val = None
    if st == hp.HighsModelStatus.kOptimal:
        val = info.objective_function_value
        if has_int and np.isfinite(info.mip_dual_bound):
            val = min(val, info.mip_dual_bound)
    elif has_int and timed_out and np.isfinite(info.mip_dual_bound):
        val = info.mip_dual_bound
    if val is not None and not np.isfinite(val):
        val = None
    return val, timed_out


def _refine_root_layer(hp, m, cols, scale: float, has_int: bool, lo: np.ndarray, hi: np.ndarray,
                       order: np.ndarray, cfg, end: float | None, stats: RefineStats) -> None:
    """Tighten lo / hi (flat, float64, in place) of neurons `order` (most influential first)."""
    for j in order.tolist():
        for sense in (-1.0, 1.0):  # upper bound first (max x = -min -x), then lower
            if lo[j] >= 0 or hi[j] <= 0:
                break
            limit = cfg.refine_solve_seconds if end is None else min(cfg.refine_solve_seconds,
                                                                     end - time.perf_counter())
            if limit < 0.01:
                return
            val, timed_out = _solve(hp, m, cols[j], sense, limit, has_int)
            stats.solves += 1
            stats.milp_solves += int(has_int)
            stats.timeouts += int(timed_out)
            if val is None:
                stats.failed += 1
                continue
            bound = sense * val - sense * proof_margin(val, scale)  # lower: val - margin; upper: -val + margin
            if (sense > 0 and bound > hi[j]) or (sense < 0 and bound < lo[j]):  # crosses the other side: never used
                stats.failed += 1
                continue
            if (sense > 0 and bound <= lo[j]) or (sense < 0 and bound >= hi[j]):
                continue  # no tighter
            if sense > 0:
                lo[j] = bound
            else:
                hi[j] = bound
            stats.tightened += 1
            stats.stabilised += int(lo[j] >= 0 or hi[j] <= 0)


def _round_out(lo: np.ndarray, hi: np.ndarray, like: Tensor) -> tuple[Tensor, Tensor]:
    """float64 bounds as `like`'s dtype, rounded outwards."""
    lo_t = round_away(torch.as_tensor(lo, dtype=torch.float64), up=False, dtype=like.dtype)
    hi_t = round_away(torch.as_tensor(hi, dtype=torch.float64), up=True, dtype=like.dtype)
    return lo_t.to(like.device), hi_t.to(like.device)


def refine_layer(hp, g64: Graph, spec64: LpBall, bounds: dict, name: str, score: Tensor | None, cfg,
                 end: float | None, stats: RefineStats, skip: Tensor | None = None) -> None:
    """Tighten bounds[name] (Interval (R, *shape)) of every root's unstable neurons by MILP, most
    influential first (score (R, n) or None: widest first), until `end` (a time.perf_counter() value); roots
    marked in `skip` (R,) keep their bounds. Roots are refined one after the other in the layer's time."""
    iv = bounds[name]
    R = iv.lower.shape[0]
    new_lo, new_hi = [], []
    for b in range(R):
        lo = iv.lower[b].detach().reshape(-1).double().cpu().numpy().copy()
        hi = iv.upper[b].detach().reshape(-1).double().cpu().numpy().copy()
        unstable = np.flatnonzero((lo < 0) & (hi > 0))
        busy = skip is not None and bool(skip[b])
        if unstable.size and not busy and (end is None or time.perf_counter() < end):
            key = (hi - lo) if score is None else score[b].reshape(-1).double().cpu().numpy()
            order = unstable[np.argsort(-key[unstable], kind="stable")]
            stats.layers += 1
            for integer in (False,) * cfg.refine_lp + (True,) * cfg.refine_milp:  # LP pass, then MILP pass
                order = order[(lo[order] < 0) & (hi[order] > 0)]
                if not order.size or (end is not None and time.perf_counter() >= end):
                    break
                m, cols, scale, has_int = _encoding(hp, g64, spec64, bounds, b, name, integer)
                _refine_root_layer(hp, m, cols, scale, has_int, lo, hi, order, cfg, end, stats)
        lo_t, hi_t = _round_out(lo, hi, iv.lower)
        new_lo.append(torch.maximum(lo_t.reshape(iv.lower.shape[1:]), iv.lower[b]))
        new_hi.append(torch.minimum(hi_t.reshape(iv.upper.shape[1:]), iv.upper[b]))
    bounds[name] = Interval(torch.stack(new_lo), torch.stack(new_hi))


def refine_bounds(graph: Graph, spec: LpBall, bounds: dict, scores: dict, cfg, end: float | None,
                  after_layer: Callable[[dict, str], dict] | None = None,
                  skip: Tensor | None = None) -> tuple[dict, str | None, RefineStats]:
    """(refined bounds, deepest refined node or None, stats): the first `cfg.refine_layers` targets'
    bounds tightened by MILP (module docstring), each layer with an equal share of the time left until
    `end`. after_layer(bounds, name) returns the bounds with the layers after `name` recomputed; roots
    marked in `skip` (R,) (e.g. already proved) are left as they are."""
    hp = milp._highs()
    g64, spec64 = milp._float64(graph, spec)
    bounds = dict(bounds)
    stats = RefineStats()
    layers = targets(graph)[:cfg.refine_layers]
    deepest = None
    for i, name in enumerate(layers):
        now = time.perf_counter()
        if end is not None and now >= end:
            break
        layer_end = None if end is None else now + (end - now) / (len(layers) - i)
        refine_layer(hp, g64, spec64, bounds, name, scores.get(name), cfg, layer_end, stats, skip)
        deepest = name
        if after_layer is not None and i + 1 < len(layers):
            bounds = after_layer(bounds, name)
    return bounds, deepest, stats


def influence(graph: Graph, bounds: dict, lam: dict) -> dict:
    """Per pre-activation node of a ReLU: (R, n) |coefficient of the ReLU's output in the root's decisive
    bound| x the triangle relaxation's gap u (-l) / (u - l) (0 for stable neurons)."""
    out = {}
    for relu, coef in lam.items():
        pre = graph.nodes[relu].inputs[0]
        iv = bounds.get(pre)
        if iv is None:
            continue
        lo, hi = iv.lower.reshape(iv.lower.shape[0], -1), iv.upper.reshape(iv.upper.shape[0], -1)
        gap = torch.where((lo < 0) & (hi > 0), hi * (-lo) / (hi - lo).clamp_min(1e-30), torch.zeros_like(lo))
        out[pre] = coef.reshape(coef.shape[0], -1).abs() * gap
    return out


def wants_refinement(graph: Graph, cfg, margin: Tensor) -> bool:
    """BabConfig.refine 'on': every ReLU MLP with a layer to refine; 'auto': those with at most
    cfg.refine_max_relus ReLU neurons whose worst root margin is below cfg.refine_below; 'off': never.
    Never without highspy."""
    if cfg.refine == "off" or not is_relu_mlp(graph) or not targets(graph):
        return False
    try:
        import highspy  # noqa: F401
    except ImportError:
        return False
    if cfg.refine == "on":
        return True
    return milp.relu_neurons(graph) <= cfg.refine_max_relus and float(margin.min()) < cfg.refine_below


def refine_root(bab, res, lam: dict, margin: Tensor, deadline: float | None) -> tuple[object, dict]:
    """(root alpha-CROWN result, stats) after MILP refinement of the root result `res` of branch and bound
    `bab` (bab/driver._BaB): its intermediate bounds refined (refine_bounds, with cfg.refine_share of the
    time left to `deadline`, neurons ranked by `influence` with the decisive row's ReLU coefficients `lam`),
    then alpha-CROWN again with every node up to the deepest refined layer fixed to the refined bounds. The
    result's bounds are intersected with the refined ones and its lower bounds with `res`'s (all sound).
    Roots whose `margin` (R,) is already > 0 are not refined."""
    from ..optimize import optimized_bounds
    from .intermediate import recompute, root_starts

    g, cfg = bab.g, bab.cfg
    every = torch.arange(bab.p.spec.batch, device=bab.p.C.device)
    t0 = time.perf_counter()
    end = None if deadline is None else t0 + cfg.refine_share * max(0.0, deadline - t0)
    starts = root_starts(res, res.starts, g.output_name)
    pos = {n: i for i, n in enumerate(g.order)}

    def after_layer(bounds: dict, name: str) -> dict:
        return recompute(bab.ctx(every), bounds, pos[name], every, starts)[0]

    refined, deepest, stats = refine_bounds(g, bab.p.spec, res.bounds, influence(g, res.bounds, lam), cfg, end,
                                            after_layer, margin > 0)
    info = {**stats.as_dict(), "refine_highs_s": time.perf_counter() - t0}
    if deepest is None or stats.tightened == 0:
        return res, info
    ctx = bab.ctx(every)
    ctx.bounds = {k: v for k, v in refined.items() if pos.get(k, math.inf) <= pos[deepest]}
    again = optimized_bounds(ctx, bab.p.C, lower=True, upper=False, config=cfg.root, deadline=deadline,
                             warm=res.params)
    again.bounds = {k: (v.intersect(refined[k]) if k in refined else v) for k, v in again.bounds.items()}
    again.lower = torch.maximum(again.lower, res.lower)
    return again, info


__all__ = ["TOLERANCE", "WIDEN", "RefineStats", "influence", "is_relu_mlp", "proof_margin", "refine_bounds",
           "refine_layer", "refine_root", "targets", "wants_refinement"]
