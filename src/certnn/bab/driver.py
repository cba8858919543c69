"""Branch and bound on ReLU splits with beta-CROWN bounds (complete verification).

A problem is R roots (an input set each, spec rows C with thresholds d, and the conjunctions the rows
belong to). A root holds when, for every open conjunction, some row has C f(x) - d > 0 on the whole set;
a sub-domain (a root plus ReLU split decisions) is proved when that holds for its lower bounds (its
*margin*: min over open conjunctions of the max over their rows of lb - d, is > 0).

1. The root: alpha-CROWN with intermediate bounds optimised (BabConfig.root); on ReLU MLPs far from
   proved (BabConfig.refine), the first layers' intermediate bounds are then refined by MILP and the
   root's alpha-CROWN run again on them (bab/refine.py).
2. Each round takes the `batch` open sub-domains with the smallest margins, computes their branching
   scores and candidate counterexamples (the minimiser of the decisive row's linear bound over the
   input set) in one backward pass, splits one ReLU each (bab/branching.py) and bounds all children in one
   batched beta-CROWN optimisation (alpha and beta warm-started from the parent; a child stops once every
   row it needs is proved). A child's bound is the larger of its own and its parent's (both sound: the
   child's set is a subset of the parent's). Optionally (BabConfig.recompute_intermediate) its
   intermediate bounds after the split are recomputed first (bab/intermediate.py).
3. Proved children are dropped; the rest return to the pool. Every few rounds a short attack starts from
   the most violated sub-domains' points (the caller's `falsify`).
A root is `holds` when none of its sub-domains is left open; `violated` when the caller confirmed a
counterexample; otherwise `unknown` (time, domain budget, or a fully split sub-domain that stays unproved).

Soundness: every bound is a sound lower bound for its sub-domain (optimize/, including beta for its
split constraints), the sub-domains of a root cover its input set (each split keeps both sides), so a
root whose every sub-domain is proved holds; a sub-domain found empty (intermediate bounds that cannot all
hold, bab/intermediate.py) has no point to violate anything. Counterexamples are only ever reported by
the caller's check.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..certify.profile import Profile
from ..engine.context import RunContext
from ..engine.methods import get_method
from ..graph.ir import Graph
from ..optimize import SplitBetas, bound_with, optimized_bounds
from ..specs.lp import LpBall
from .branching import choose, scores
from .config import BabConfig
from .domains import Domains, split
from .intermediate import recompute, root_starts
from .refine import refine_root, wants_refinement


@dataclass
class Problem:
    """R roots: input sets `spec` (batch R), rows C (R, S, *out) with thresholds d (R, S) (+inf on padding
    rows), the conjunction of each row rowconj (R, S) (padding rows: J) and the open conjunctions (R, J)."""

    spec: LpBall
    C: Tensor
    d: Tensor
    rowconj: Tensor
    open: Tensor

    @staticmethod
    def robustness(spec: LpBall, C: Tensor) -> "Problem":
        """Every row must be proved positive (e.g. margins f_y - f_j of a classifier)."""
        R, S = C.shape[:2]
        return Problem(spec, C, C.new_zeros(R, S), torch.arange(S, device=C.device).expand(R, S).clone(),
                       torch.ones(R, S, dtype=torch.bool, device=C.device))

    def margin(self, lb: Tensor, root: Tensor) -> tuple[Tensor, Tensor]:
        """(margin (D,), decisive row (D,)) of sub-domains with row lower bounds lb (D, S)."""
        D = lb.shape[0]
        J = self.open.shape[1]
        g = lb - self.d[root]
        g = torch.where(torch.isfinite(self.d[root]), g, torch.full_like(g, -math.inf))
        conj = self.rowconj[root]
        cm = g.new_full((D, J + 1), -math.inf).scatter_reduce(1, conj, g, "amax", include_self=True)[:, :J]
        cm = torch.where(self.open[root], cm, torch.full_like(cm, math.inf))
        margin, j = cm.min(1)
        in_j = conj == j[:, None]
        row = torch.where(in_j, g, torch.full_like(g, -math.inf)).argmax(1)
        return margin, row

    def relevant(self, lb: Tensor, root: Tensor) -> Tensor:
        """(D, S): rows of open conjunctions not yet proved by lb (the only rows a sub-domain's children
        need bounds of: a proved row stays proved in every sub-domain, its parent's bound holds there)."""
        D = lb.shape[0]
        J = self.open.shape[1]
        g = lb - self.d[root]
        fin = torch.isfinite(self.d[root])
        g = torch.where(fin, g, torch.full_like(g, -math.inf))
        conj = self.rowconj[root]
        cm = g.new_full((D, J + 1), -math.inf).scatter_reduce(1, conj, g, "amax", include_self=True)
        open_ = torch.cat([self.open[root], self.open.new_zeros(D, 1)], 1)
        pending = open_ & (cm <= 0)
        return pending.gather(1, conj) & fin


@dataclass
class BabResult:
    status: list  # per root: 'holds' | 'violated' | 'unknown'
    rounds: int
    domains: int  # sub-domains bounded
    max_depth: int
    open_domains: int  # left when it stopped
    reason: str  # why it stopped: 'done', 'timeout', 'max_domains'
    #: where the time went: seconds per phase ('root', 'pool' (picking and storing sub-domains), 'capture',
    #: 'falsify', 'branch', 'bound', 'finish'; 'refine' (inside 'root'): MILP refinement and the second
    #: root alpha-CROWN, with counters 'refine_highs_s' (its LP / MILP seconds), 'refine_margin_before' /
    #: '_after', 'refine_solves', ... (bab/refine.py RefineStats))
    #: and counters ('iterations': optimiser iterations summed over the bound calls, 'bound_calls',
    #: 'worst_margin': the smallest margin of an open sub-domain when it stopped, a lower bound of the
    #: property's value over the whole search)
    stats: dict = field(default_factory=dict)


Falsify = Callable[[Tensor, Tensor, bool], Tensor]  # (points (N, *in), roots (N,), strong) -> violated roots


class _BaB:
    def __init__(self, graph: Graph, problem: Problem, cfg: BabConfig, method: str):
        self.g, self.p, self.cfg = graph, problem, cfg
        self.method = get_method(method)
        self.relus = [n for n in graph.order if graph.nodes[n].op.kind == "relu"]
        self.relu_inputs = {n: graph.nodes[n].inputs[0] for n in self.relus}
        self.sizes = [math.prod(graph.nodes[n].shape) for n in self.relus]
        self.profile = Profile()  # seconds per phase, counters (BabResult.stats)
        self.first_split: int | None = None  # index in self.relus of the shallowest split of this round


    def ctx(self, root: Tensor) -> RunContext:
        return RunContext(self.g, self.p.spec.select(root), self.method)

    def root(self, deadline: float | None = None) -> tuple[Domains, Tensor]:
        R = self.p.spec.batch
        every = torch.arange(R, device=self.p.C.device)
        res = optimized_bounds(self.ctx(every), self.p.C, lower=True, upper=False, config=self.cfg.root,
                               deadline=deadline)
        doms, margin = self.root_domains(res)
        if wants_refinement(self.g, self.cfg, margin):  # MILP-refined intermediate bounds (bab/refine.py)
            self.profile.counts["refine_margin_before"] = float(margin.min())
            with self.profile.phase("refine"):
                res, info = refine_root(self, res, self.capture(doms)[0], margin, deadline)
            doms, margin = self.root_domains(res)
            self.profile.counts.update(info, refine_margin_after=float(margin.min()))
        self.root_starts = root_starts(res, res.starts, self.g.output_name)
        return doms, margin

    def root_domains(self, res) -> tuple[Domains, Tensor]:
        """The roots as sub-domains (no split) from a root alpha-CROWN result, and their margins."""
        R = self.p.spec.batch
        every = torch.arange(R, device=self.p.C.device)
        margin, _ = self.p.margin(res.lower, every)
        out = self.g.output_name
        doms = Domains(every, res.bounds,
                       {n: res.bounds[self.relu_inputs[n]].lower.new_zeros((R,) + self.g.nodes[n].shape)
                        for n in self.relus},
                       res.lower, margin, {k: p for k, p in res.params.items() if k[0] == out}, {},
                       torch.zeros(R, dtype=torch.long, device=every.device))
        return doms, margin

    def rows(self, doms: Domains, idx: Tensor) -> tuple[Tensor, dict, dict]:
        """Spec rows idx (D, S') of each domain: C (D, S', *out), and its parameters for those rows."""
        C = self.p.C[doms.root]
        ix = idx.reshape(idx.shape + (1,) * (C.dim() - 2)).expand((C.shape[0], idx.shape[1]) + C.shape[2:])
        return (C.gather(1, ix), {k: p.gather_rows(idx) for k, p in doms.params.items()},
                {k: b.gather_rows(idx) for k, b in doms.betas.items()})

    def pending_rows(self, doms: Domains) -> Tensor:
        """(D, S') indices of each domain's unproved rows, padded with other rows (bounding a padding row
        again is harmless: its new bound is as sound as the old, the larger is kept)."""
        rel = self.p.relevant(doms.lb, doms.root)
        k = max(1, int(rel.sum(1).max()))
        return torch.argsort((~rel).to(torch.int8), dim=1, stable=True)[:, :k]

    def capture(self, doms: Domains) -> tuple[dict, Tensor]:
        """Coefficients of every ReLU output for each domain's decisive row, and the minimiser of that
        row's linear bound over the input set (a candidate counterexample)."""
        ctx = self.ctx(doms.root)
        _, row = self.p.margin(doms.lb, doms.root)
        C, params, betas = self.rows(doms, row[:, None])
        with torch.no_grad():
            bound_with(ctx, C, doms.bounds, params, betas, capture=tuple(self.relus) + (self.g.input_name,))
        lam = {n: ctx.captured[n][:, 0] for n in self.relus}
        return lam, ctx.spec.minimizer(ctx.captured[self.g.input_name][:, 0])

    def child_margin(self, kids: Domains, chunk: int = 1024) -> Tensor:
        """Margins of children bounded in one pass with the parent's parameters (FSB's estimate)."""
        out = []
        for i in range(0, len(kids), chunk):
            part = kids.index(torch.arange(i, min(len(kids), i + chunk), device=kids.root.device))
            idx = self.pending_rows(part)
            C, params, betas = self.rows(part, idx)
            with torch.no_grad():
                lb = bound_with(self.ctx(part.root), C, part.bounds, params, betas)
            full = part.lb.scatter(1, idx, torch.maximum(lb, part.lb.gather(1, idx)))
            out.append(self.p.margin(full, part.root)[0])
        return torch.cat(out)

    def tighten(self, kids: Domains) -> Tensor:
        """Recompute the domains' intermediate bounds after this round's shallowest split (bab/
        intermediate.py), with the root's optimised slopes or CROWN's lines (BabConfig.intermediate_lines);
        returns the mask of domains found empty (their split constraints cannot all hold)."""
        pos = {n: i for i, n in enumerate(self.g.order)}
        cut = -1 if self.first_split is None else pos[self.relu_inputs[self.relus[self.first_split]]]
        starts = self.root_starts if self.cfg.intermediate_lines == "alpha" else None
        kids.bounds, empty = recompute(self.ctx(kids.root), kids.bounds, cut, kids.root, starts)
        return empty

    def bound(self, kids: Domains, config=None, deadline: float | None = None) -> Domains:
        """Optimised bounds of the domains' unproved rows (alpha and beta warm-started from the parent)."""
        empty = self.tighten(kids) if self.cfg.recompute_intermediate else None
        splits = {n: s for n, s in kids.signs.items() if bool((s != 0).any())}
        idx = self.pending_rows(kids)
        C, params, betas = self.rows(kids, idx)
        warm = dict(params)
        warm.update({("beta", n): b for n, b in betas.items()})
        # a child stops optimising once every row it still needs is proved (lb > d); padding rows never block
        rel = self.p.relevant(kids.lb, kids.root).gather(1, idx)
        stop = torch.where(rel, self.p.d[kids.root].gather(1, idx), torch.full_like(kids.lb.gather(1, idx), -math.inf))
        res = optimized_bounds(self.ctx(kids.root), C, lower=True, upper=False,
                               config=config or self.cfg.domains, reference=kids.bounds, splits=splits, warm=warm,
                               deadline=deadline, stop=stop)
        self.profile.count("iterations", res.iterations)
        self.profile.count("bound_calls", 1)
        kids.lb = kids.lb.scatter(1, idx, torch.maximum(res.lower, kids.lb.gather(1, idx)))
        if empty is not None and bool(empty.any()):  # an empty sub-domain holds: no point violates anything
            kids.lb = torch.where(empty[:, None], torch.full_like(kids.lb, math.inf), kids.lb)
        kids.margin, _ = self.p.margin(kids.lb, kids.root)
        kids.params = {k: p.scatter_rows(idx, res.params[k]) for k, p in kids.params.items() if k in res.params}
        S = kids.lb.shape[1]
        betas = {}
        for n, b in res.betas.items():
            full = kids.betas.get(n)
            if full is None:
                full = SplitBetas(b.sign, b.beta.new_zeros((b.beta.shape[0], S) + tuple(b.beta.shape[2:])))
            betas[n] = full._copy(sign=b.sign).scatter_rows(idx, b)
        kids.betas = betas
        return kids

    def branch(self, cur: Domains) -> tuple[Domains, Tensor]:
        """Children of cur (one split each) and the mask of domains that could not be split."""
        lam, _ = self.lam_x
        sc = scores(cur, lam, self.relus, self.relu_inputs)
        fsb = self.child_margin if self.cfg.branching == "fsb" else None
        node_id, flat, ok = choose(cur, sc, self.relus, self.relu_inputs, self.sizes, self.cfg.candidates, fsb,
                                   self.cfg.fsb_reduce)
        keep = torch.nonzero(ok).reshape(-1)
        self.first_split = int(node_id[keep].min()) if keep.numel() else None
        kids = split(cur.index(keep), node_id[keep], flat[keep], self.relus, self.relu_inputs)
        return kids, ~ok


def _adapt(batch: int, cap: int, seconds: float, deadline: float | None) -> int:
    """Sub-domains per round: halved while a round takes more than half the time left (the optimiser
    stops at the deadline anyway, but a round's other passes do not), doubled back up to `cap` while
    rounds are quick."""
    left = math.inf if deadline is None else deadline - time.perf_counter()
    target = max(2.0, left / 2)
    if seconds > target and batch > 4:
        return batch // 2
    if seconds < target / 4 and batch < cap:
        return min(cap, batch * 2)
    return batch


def branch_and_bound(graph: Graph, problem: Problem, config: BabConfig = BabConfig(), deadline: float | None = None,
                     falsify: Falsify | None = None, method: str = "alpha-crown",
                     progress: Callable[[dict], None] | None = None) -> BabResult:
    """Complete verification of `problem` by branch and bound (see the module docstring). deadline: a
    time.perf_counter() value to stop at (None: no limit). falsify(points, roots, strong) checks candidate
    counterexamples (strong: also run a short attack from them) and returns the roots it confirmed
    violated. progress(info) is called after every round."""
    bab = _BaB(graph, problem, config, method)
    R = problem.spec.batch
    t0 = time.perf_counter()
    with bab.profile.phase("root"):
        pool, margin = bab.root(deadline)
    bab.violated = torch.zeros(R, dtype=torch.bool, device=margin.device)
    bab.unprovable = torch.zeros(R, dtype=torch.bool, device=margin.device)
    pool = pool.index(torch.nonzero(margin <= 0).reshape(-1))
    rounds, reason = 0, "done"
    bab.bounded, bab.depth = R, 0
    batch = config.batch
    if pool.root.numel() and not bab.relus:
        bab.unprovable[pool.root] = True
        pool = pool.index(torch.zeros(0, dtype=torch.long, device=margin.device))
    while len(pool):
        if deadline is not None and time.perf_counter() > deadline:
            reason = "timeout"
            break
        rounds += 1
        t_round = time.perf_counter()
        pool = _round(bab, pool, batch, rounds, falsify, deadline)
        batch = _adapt(batch, config.batch, time.perf_counter() - t_round, deadline)
        if progress is not None:
            progress({"round": rounds, "open": len(pool), "bounded": bab.bounded, "depth": bab.depth,
                      "batch": batch, "worst_margin": float(pool.margin.min()) if len(pool) else math.inf,
                      "seconds": time.perf_counter() - t0})
        if len(pool) > config.max_domains:
            reason = "max_domains"
            break
    left = torch.zeros(R, dtype=torch.bool, device=margin.device)
    if len(pool):
        left[pool.root] = True
        bab.profile.counts["worst_margin"] = float(pool.margin.min())
    open_ = (left | bab.unprovable).tolist()  # one transfer, not one per root
    status = ["violated" if v else ("unknown" if o else "holds") for v, o in zip(bab.violated.tolist(), open_)]
    stats = {**bab.profile.seconds, **bab.profile.counts}
    return BabResult(status, rounds, bab.bounded, bab.depth, len(pool), reason, stats)


def _round(bab: _BaB, pool: Domains, batch: int, rounds: int, falsify: Falsify | None,
           deadline: float | None) -> Domains:
    """One round: the `batch` open sub-domains with the smallest margins are split and their children
    bounded; returns the new pool (open sub-domains)."""
    config = bab.cfg
    with bab.profile.phase("pool"):
        order = torch.argsort(pool.margin)
        cur, pool = pool.index(order[:batch]), pool.index(order[batch:])
    with bab.profile.phase("capture"):
        bab.lam_x = bab.capture(cur)
    if falsify is not None:
        with bab.profile.phase("falsify"):
            hit = falsify(bab.lam_x[1], cur.root, rounds % config.attack_every == 1)
        if hit.numel():
            bab.violated[hit] = True
            cur = cur.index(torch.nonzero(~bab.violated[cur.root]).reshape(-1))
            pool = pool.index(torch.nonzero(~bab.violated[pool.root]).reshape(-1))
            if not len(cur):
                return pool
            with bab.profile.phase("capture"):
                bab.lam_x = bab.capture(cur)
    with bab.profile.phase("branch"):
        kids, stuck = bab.branch(cur)
    if stuck.any():  # every unstable ReLU split: converge beta to the exact (LP) bound, or give up
        with bab.profile.phase("finish"):
            done = bab.bound(cur.index(torch.nonzero(stuck).reshape(-1)), config.finish, deadline)
        bab.unprovable[done.root[done.margin <= 0]] = True
    if len(kids):
        with bab.profile.phase("bound"):
            kids = bab.bound(kids, deadline=deadline)
        bab.bounded += len(kids)
        bab.depth = max(bab.depth, int(kids.depth.max()))
        with bab.profile.phase("pool"):
            pool = Domains.cat([pool, kids.index(torch.nonzero(kids.margin <= 0).reshape(-1))])
    return pool
