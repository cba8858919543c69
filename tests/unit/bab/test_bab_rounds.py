"""Branch and bound's round mechanics: phase statistics, children that stop optimising once proved, and
intermediate bounds recomputed after each round's shallowest split (sound on sampled points of every
sub-domain, never looser, unchanged upstream of the split)."""
from __future__ import annotations

import time

import pytest
import torch

from certnn.bab import BabConfig, branch_and_bound
from certnn.bab import driver
from test_bab import _instance  # noqa: E402  (tests/unit/bab is on sys.path while pytest collects it)

PHASES = ("root", "pool", "capture", "branch", "bound")


def test_stats_name_the_phases_and_fit_in_the_run():
    model, graph, prob = _instance(24)  # needs many rounds, still open after 8 s
    t0 = time.perf_counter()
    res = branch_and_bound(graph, prob, BabConfig(batch=16), deadline=t0 + 8.0)
    wall = time.perf_counter() - t0
    assert res.rounds > 1, "the instance must need branching for this test"
    for k in PHASES:
        assert res.stats.get(k, 0) > 0, k
    assert sum(res.stats.get(k, 0) for k in PHASES + ("falsify", "finish")) <= wall + 1e-3
    assert res.stats["bound_calls"] >= res.rounds - 1 and res.stats["iterations"] >= res.stats["bound_calls"]
    if res.open_domains:
        assert res.stats["worst_margin"] <= 0


def test_proved_children_stop_early():
    """Children whose rows are all proved leave the optimiser before the iteration budget (a search that
    ends proved has a last round whose children are all proved)."""
    model, graph, prob = _instance(32)  # root margin -0.94, proved after a few rounds
    cfg = BabConfig(batch=16)  # 10 iterations per bound call
    calls = []
    orig = driver.optimized_bounds

    def spy(*a, **kw):
        res = orig(*a, **kw)
        calls.append((res.iterations, kw.get("stop")))
        return res

    driver.optimized_bounds = spy
    try:
        res = branch_and_bound(graph, prob, cfg, deadline=time.perf_counter() + 30)
    finally:
        driver.optimized_bounds = orig
    children = calls[1:]  # the first call is the root's
    assert res.status[0] == "holds" and children
    for _, stop in children:  # robustness rows: threshold 0 where a row is still needed, -inf elsewhere
        assert stop is not None and bool(((stop == 0) | (stop == -float("inf"))).all())
        assert bool((stop == 0).any(1).all())
    assert min(it for it, _ in children) < cfg.domains.iterations
@pytest.mark.parametrize("lines", ["alpha", "crown"])
def test_recompute_after_the_first_split_is_sound_and_never_looser(lines):
    """recompute_intermediate: nodes up to the round's shallowest split keep their bounds, later ones only
    tighten, and every point of a sub-domain (input box points meeting its split constraints) has its
    intermediate values inside the recomputed bounds."""
    model, graph, prob = _instance(26)
    seen = []
    orig = driver._BaB.tighten

    def spy(self, kids):
        before = dict(kids.bounds)
        empty = orig(self, kids)
        seen.append((self, self.first_split, before, kids.bounds, kids.signs))
        return empty

    driver._BaB.tighten = spy
    try:
        branch_and_bound(graph, prob, BabConfig(batch=8, recompute_intermediate=True, intermediate_lines=lines),
                         deadline=time.perf_counter() + 4)
    finally:
        driver._BaB.tighten = orig
    assert seen
    box = prob.spec.box()
    gen = torch.Generator().manual_seed(0)
    pts = box.lower + (box.upper - box.lower) * torch.rand(3000, box.lower.shape[1], generator=gen, dtype=torch.float64)
    vals = graph.forward_all(pts)
    pos = {n: i for i, n in enumerate(graph.order)}
    tightened = inside = 0
    for bab, first, before, after, signs in seen:
        cut = pos[bab.relu_inputs[bab.relus[first]]] if first is not None else -1
        for k, iv in after.items():
            b = before[k]
            assert (iv.lower >= b.lower).all() and (iv.upper <= b.upper).all(), k
            if pos.get(k, 1e9) <= cut:
                assert torch.equal(iv.lower, b.lower) and torch.equal(iv.upper, b.upper), k
            tightened += int((iv.lower > b.lower).sum() + (iv.upper < b.upper).sum())
        for i in range(before[graph.input_name].lower.shape[0]):
            ok = torch.ones(pts.shape[0], dtype=torch.bool)
            for n in bab.relus:
                z = vals[bab.relu_inputs[n]].reshape(pts.shape[0], -1)
                s = signs[n][i].reshape(-1)
                ok &= ((z >= 0) | (s <= 0)).all(1) & ((z <= 0) | (s >= 0)).all(1)
            for k, iv in after.items():
                if k == graph.input_name or not ok.any():
                    continue
                v = vals[k][ok].reshape(int(ok.sum()), -1)
                assert (v >= iv.lower[i].reshape(-1) - 1e-9).all() and (v <= iv.upper[i].reshape(-1) + 1e-9).all(), k
                inside += 1
    assert tightened > 0 and inside > 0
