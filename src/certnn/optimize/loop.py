"""The optimisation loop of alpha/beta-CROWN: Adam steps with projection, the best bound and parameters
kept per sample, per-sample early stopping, and samples that are done leaving the batch.

A sample stops when every lower bound exceeds `stop_at` or its own row thresholds `prob.stop` (e.g. a
proof is found), or its bound sum has not improved for `patience` iterations. Stopped samples are
frozen; once at least a quarter of the batch has stopped, they leave it (their results are written out
and every batch-dim tensor, Adam's moments included, is cut to the rest), so proved samples no longer
cost anything.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..domains.interval import Interval
from .config import AlphaConfig


def _adam(prob, cfg: AlphaConfig, state: dict | None = None, old: list | None = None):
    """Adam over the problem's parameters, one group per step-size scale; `state` (old tensor -> Adam
    state, already cut to the kept samples) is carried over to the new tensors (same order as `old`)."""
    groups: dict[float, list[Tensor]] = {}
    for _, p in prob.params():
        groups.setdefault(p.step_size(cfg), []).extend(p.tensors())
    if not groups:
        return None
    opt = torch.optim.Adam([{"params": g, "lr": k, "base_lr": k} for k, g in groups.items()], lr=cfg.lr)
    if state is not None:
        new = _flat(prob)
        for o, n in zip(old, new):
            if o in state:
                opt.state[n] = state[o]
    return opt


def _flat(prob) -> list[Tensor]:
    return [t for _, p in prob.params() for t in p.tensors()]


def _snap_noise(params: list[Tensor]) -> None:
    """Zero gradient entries at rounding-noise level (<= 1000 ulps of the sample's largest gradient entry
    of that tensor, plus an absolute floor: bounds are O(1)). Adam divides by the gradient's running
    magnitude, so a pure-noise gradient would take a full step, and noise differs between batches."""
    for p in params:
        g = p.grad
        if g is None:
            continue
        flat = g.reshape(g.shape[0], -1).abs()
        tol = 1000 * torch.finfo(g.dtype).eps * (1 + flat.amax(1, keepdim=True))
        g.masked_fill_((flat <= tol).reshape(g.shape), 0.0)


class _Record:
    """Full-batch results: best bounds, tightest intermediate bounds and best parameters per sample."""

    def __init__(self, prob):
        self.best = prob.crown.clone()
        self.bounds: dict[str, Interval] = {}
        self.params = {k: p._copy(**{f: t.detach().clone() for f, t in zip(p.opt_fields, p.tensors())})
                       for k, p in prob.params()}

    def write(self, index: Tensor, rows: Tensor, best: Tensor, bounds: dict, best_params: dict) -> None:
        """Write the samples `rows` of the current batch (original positions index[rows])."""
        orig = index[rows]
        self.best[orig] = best[rows]
        for name, iv in bounds.items():
            if name not in self.bounds:
                shape = (self.best.shape[0],) + tuple(iv.lower.shape[1:])
                self.bounds[name] = Interval(iv.lower.new_full(shape, -math.inf), iv.upper.new_full(shape, math.inf))
            self.bounds[name].lower[orig] = iv.lower[rows]
            self.bounds[name].upper[orig] = iv.upper[rows]
        for k, tensors in best_params.items():
            for f, t in zip(self.params[k].opt_fields, tensors):
                getattr(self.params[k], f)[orig] = t[rows]


class _Live:
    """Per-sample state of the samples still in the batch (original positions `index`): best bounds, kept
    intermediate bounds, best parameters, the best bound sum, iterations without improvement, and which
    samples are still optimised."""

    def __init__(self, prob):
        B0 = prob.ctx.batch
        dev = prob.Cs.device
        self.index = torch.arange(B0, device=dev)
        self.best = prob.crown.clone()
        self.bounds: dict[str, Interval] = {}
        self.best_params = {k: [t.detach().clone() for t in p.tensors()] for k, p in prob.params()}
        self.active = torch.ones(B0, dtype=torch.bool, device=dev)
        self.stale = torch.zeros(B0, dtype=torch.long, device=dev)
        self.best_sum = torch.full((B0,), -math.inf, dtype=prob.Cs.dtype, device=dev)

    def observe(self, prob, lo: Tensor, cfg: AlphaConfig) -> None:
        """Keep the best bounds / parameters after an evaluation with bounds `lo` (detached), and stop the
        samples that are proved, past their threshold or stale for `patience` iterations."""
        self.best = torch.maximum(self.best, lo)
        _keep_bounds(prob, self.bounds)
        prob.tighten_reference()
        total = lo.sum(1)
        best_sum = self.best_sum
        tol = torch.where(torch.isfinite(best_sum), 1e-12 * (1 + best_sum.abs()), torch.zeros_like(best_sum))
        improved = total > best_sum + tol
        self.best_sum = torch.where(improved, total, best_sum)
        self.stale = torch.where(improved, torch.zeros_like(self.stale), self.stale + 1)
        _keep_improved(prob, self.best_params, improved)
        self.active &= self.stale < cfg.patience
        if cfg.stop_at is not None:
            self.active &= ~(self.best > cfg.stop_at).all(1)
        if prob.stop is not None:
            self.active &= ~(self.best > prob.stop).all(1)

    def write(self, rec: _Record, rows: Tensor) -> None:
        rec.write(self.index, rows, self.best, self.bounds, self.best_params)

    def cut(self, keep: Tensor) -> None:
        """Keep only the samples `keep` (positions in the current batch)."""
        self.index, self.best, self.stale = self.index[keep], self.best[keep], self.stale[keep]
        self.best_sum, self.active = self.best_sum[keep], self.active[keep]
        self.bounds = {k: Interval(v.lower[keep], v.upper[keep]) for k, v in self.bounds.items()}
        self.best_params = {k: [t[keep] for t in ts] for k, ts in self.best_params.items()}


def run(prob, cfg: AlphaConfig, hook=None, deadline: float | None = None):
    """Optimise `prob` (optimize.alpha_crown._Problem); returns (best (B, S'), intermediate bounds,
    iterations, best parameters per sample). Stops early at `deadline` (a time.perf_counter() value): no
    iteration starts that would end past it at the pace of the last one; every iterate is sound, so the
    best so far is a valid result."""
    import time

    rec = _Record(prob)
    live = _Live(prob)
    opt = _adam(prob, cfg)
    it = 0
    t_check = time.perf_counter()
    for it in range(1, cfg.iterations + 1):
        with torch.enable_grad(), prob.ctx.timer("alpha:evaluate"):
            lo = prob.evaluate()
        with torch.no_grad():
            if hook is not None:
                full = rec.best.clone()
                full[live.index] = lo.detach()
                hook(it, full)
            live.observe(prob, lo.detach(), cfg)
        if it == cfg.iterations or opt is None or not bool(live.active.any()):
            break
        if deadline is not None:
            # the next step and evaluation cost about what the last ones did: do not start them unless
            # they end by the deadline (a deadline is a promise to the caller, not a time to start at)
            now = time.perf_counter()
            if now + (now - t_check) > deadline:
                break
            t_check = now
        with prob.ctx.timer("alpha:step"):
            _step(prob, opt, lo, live.active, cfg, it)
        if prob.ctx.batch > 1 and int((~live.active).sum()) * 4 >= prob.ctx.batch:
            opt = _leave(prob, cfg, opt, rec, live)
    live.write(rec, torch.arange(live.index.numel(), device=live.index.device))
    return rec.best, rec.bounds, it, rec.params


def _leave(prob, cfg: AlphaConfig, opt, rec: _Record, live: _Live):
    """The stopped samples leave the batch: their results are written out and the problem, Adam's moments
    and the live state are cut to the rest; returns the optimiser over the remaining parameters."""
    live.write(rec, torch.nonzero(~live.active).reshape(-1))
    keep = torch.nonzero(live.active).reshape(-1)
    old = _flat(prob)
    state = {o: _cut_state(opt.state[o], keep) for o in old if o in opt.state}
    prob.select(keep)
    opt = _adam(prob, cfg, state, old)
    live.cut(keep)
    return opt


def _keep_improved(prob, best_params: dict, improved: Tensor) -> None:
    """Copy the parameters of the samples whose bound improved into best_params (only those samples'
    slices are written: the parameters can be far larger than the bounds)."""
    if not bool(improved.any()):
        return
    rows = None if bool(improved.all()) else torch.nonzero(improved).reshape(-1)
    for k, p in prob.params():
        for b, t in zip(best_params[k], p.tensors()):
            if rows is None:
                b.copy_(t.detach())
            else:
                b.index_copy_(0, rows, t.detach().index_select(0, rows))


def _cut_state(state: dict, keep: Tensor) -> dict:
    return {k: (v[keep] if isinstance(v, Tensor) and v.dim() > 0 else v) for k, v in state.items()}


def _step(prob, opt, lo: Tensor, active: Tensor, cfg: AlphaConfig, it: int) -> None:
    params = _flat(prob)
    loss = -(lo * active.to(lo.dtype).unsqueeze(1)).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    _snap_noise(params)
    frozen = [p.detach().clone() for p in params] if not bool(active.all()) else None
    for group in opt.param_groups:
        group["lr"] = group["base_lr"] * cfg.lr_decay ** (it - 1)
    opt.step()
    opt.zero_grad(set_to_none=True)  # the gradients are not needed until the next backward: free them now
    with torch.no_grad():
        if frozen is not None:  # stopped samples keep their parameters (batch independence)
            for p, f in zip(params, frozen):
                keep = active.reshape((-1,) + (1,) * (p.dim() - 1))
                p.copy_(torch.where(keep, p, f))
        for _, prm in prob.params():
            prm.project()


def _keep_bounds(prob, bounds: dict[str, Interval]) -> None:
    for name, iv in prob.ctx.bounds.items():
        iv = Interval(iv.lower.detach(), iv.upper.detach())
        bounds[name] = iv if name not in bounds else bounds[name].intersect(iv)
