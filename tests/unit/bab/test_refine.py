"""MILP-refined intermediate bounds (bab/refine.py): sound (contain sampled points' and PGD's extreme
pre-activations), never looser than CROWN's, equal to exact MILP bounds with a generous time limit, within
their time limit, and branch and bound on them still gives the MILP ground truth's verdicts."""
from __future__ import annotations

import time

import pytest
import torch

import certnn
from certnn.bab import BabConfig, Problem, branch_and_bound
from certnn.bab.refine import TOLERANCE, is_relu_mlp, refine_bounds, targets, wants_refinement
from certnn.certify.bounds import make_spec
from certnn.certify.targets import margin_matrix
from certnn.engine.backward import compute_intermediate_bounds
from certnn.engine.context import RunContext
from certnn.engine.methods import get_method
from certnn.graph.ir import Graph
from certnn.testing import random_relu_mlp

pytestmark = pytest.mark.solvers
GENEROUS = BabConfig(refine="on", refine_layers=8, refine_solve_seconds=30.0)
LP_FIRST = BabConfig(refine="on", refine_layers=8, refine_solve_seconds=30.0, refine_lp=True)


def _net(seed: int, d: int = 3, h: int = 8, depth: int = 3, eps: float = 0.4):
    model = random_relu_mlp(seed, d=d, h=h, depth=depth, out=3)
    graph = certnn.from_torch(model, (d,))
    x = torch.rand(1, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    spec = make_spec(graph, x, eps, "inf")
    ctx = RunContext(graph, spec, get_method("crown"))
    with torch.no_grad():
        compute_intermediate_bounds(ctx)
    return model, graph, spec, dict(ctx.bounds)


def _points(spec, n: int, seed: int) -> torch.Tensor:
    box = spec.box()
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(n, box.lower.shape[1], generator=g, dtype=torch.float64)
    corners = (torch.rand(n, box.lower.shape[1], generator=g) < 0.5).double()
    return torch.cat([box.lower + (box.upper - box.lower) * r, box.lower + (box.upper - box.lower) * corners])


def _pgd_extremes(graph: Graph, spec, name: str, steps: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) per neuron of `name` found by projected sign-gradient steps from the box's centre and
    random points, one start per neuron, side and restart (batched)."""
    box = spec.box()
    n = graph.nodes[name].shape[0]
    sign = torch.cat([torch.eye(n), -torch.eye(n)]).double()  # rows 0..n-1 minimise, n..2n-1 maximise
    best = torch.full((2 * n,), float("inf"), dtype=torch.float64)
    for restart in range(4):
        g = torch.Generator().manual_seed(restart)
        x = box.lower + (box.upper - box.lower) * torch.rand(2 * n, box.lower.shape[1], generator=g,
                                                             dtype=torch.float64)
        step = (box.upper - box.lower) / 10
        for _ in range(steps):
            x.requires_grad_(True)
            obj = (graph.forward_all(x, upto=name)[name] * sign).sum(1)
            grad, = torch.autograd.grad(obj.sum(), x)
            with torch.no_grad():
                best = torch.minimum(best, obj.detach())
                x = torch.clamp(x - step * grad.sign(), box.lower, box.upper)
                step = step * 0.95
        with torch.no_grad():
            best = torch.minimum(best, (graph.forward_all(x, upto=name)[name] * sign).sum(1))
    return best[:n], -best[n:]


def _exact(graph: Graph, spec, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact min / max of every neuron of `name` (engine.milp.exact_bounds on the graph cut at `name`)."""
    from certnn.engine.milp import exact_bounds

    pos = graph.order.index(name)
    cut = Graph([graph.nodes[n] for n in graph.order[:pos + 1]], name)
    lo, hi = exact_bounds(cut, spec)
    return lo[0], hi[0]


@pytest.mark.parametrize("seed", range(6))
def test_refined_bounds_are_sound_and_never_looser(seed):
    model, graph, spec, crown = _net(seed)
    cfg = LP_FIRST if seed % 2 else GENEROUS  # odd seeds: the LP pass, then the MILP pass
    refined, deepest, stats = refine_bounds(graph, spec, crown, {}, cfg, time.perf_counter() + 60)
    assert deepest == targets(graph)[-1] and stats.failed == 0
    pts = _points(spec, 3000, seed)
    vals = graph.forward_all(pts)
    for name in targets(graph):
        lo, hi = refined[name].lower[0], refined[name].upper[0]
        assert (lo >= crown[name].lower[0]).all() and (hi <= crown[name].upper[0]).all()
        assert (vals[name] >= lo - 1e-9).all() and (vals[name] <= hi + 1e-9).all()
        pmin, pmax = _pgd_extremes(graph, spec, name)
        assert (pmin >= lo - 1e-9).all() and (pmax <= hi + 1e-9).all()


@pytest.mark.parametrize("seed", range(6))
def test_generous_time_limit_gives_the_exact_bounds(seed):
    """Neurons left unstable had both sides solved by the MILP pass: they equal the exact MILP bounds up to
    the proof margin; neurons made stable (by the LP or the MILP pass) are stable in the exact range."""
    model, graph, spec, crown = _net(seed)
    refined, _, stats = refine_bounds(graph, spec, crown, {}, GENEROUS, None)
    assert stats.timeouts == 0 and stats.failed == 0
    for name in targets(graph):
        exact_lo, exact_hi = _exact(graph, spec, name)
        lo, hi = refined[name].lower[0], refined[name].upper[0]
        was_unstable = (crown[name].lower[0] < 0) & (crown[name].upper[0] > 0)
        tol = 1e-3 * (1 + exact_hi.abs().max())  # the margin TOLERANCE * (1 + |b| + X) and solver slack
        assert tol > TOLERANCE
        still = was_unstable & (lo < 0) & (hi > 0)  # both sides solved by the MILP pass
        assert still.any() or not was_unstable.any()
        assert ((hi - exact_hi).abs() <= tol)[still].all() and ((lo - exact_lo).abs() <= tol)[still].all()
        stable = was_unstable & ~still  # made stable by a pass: so is the exact range
        assert (exact_hi <= tol)[stable & (hi <= 0)].all() and (exact_lo >= -tol)[stable & (lo >= 0)].all()
        # exact_bounds' values are HiGHS' bounds too (within its MIP gap of the optimum): equal within tol
        assert (lo <= exact_lo + tol).all() and (hi >= exact_hi - tol).all()


def test_time_limit_holds():
    """The stage stops by its deadline (plus at most one solve's overrun and one encoding)."""
    model, graph, spec, crown = _net(0, d=20, h=64, depth=4, eps=0.3)
    cfg = BabConfig(refine="on", refine_layers=3, refine_solve_seconds=0.2)
    t0 = time.perf_counter()
    refined, _, stats = refine_bounds(graph, spec, crown, {}, cfg, t0 + 1.0)
    assert time.perf_counter() - t0 < 1.0 + 1.5
    assert stats.solves > 0
    for name in targets(graph):
        assert (refined[name].lower >= crown[name].lower).all() and (refined[name].upper <= crown[name].upper).all()


def test_only_relu_mlps_with_a_layer_to_refine():
    _, graph, _, _ = _net(0, depth=1)
    assert is_relu_mlp(graph) and not targets(graph)
    assert not wants_refinement(graph, BabConfig(refine="on"), torch.tensor([-100.0]))
    _, graph, _, _ = _net(0)
    assert wants_refinement(graph, BabConfig(refine="auto"), torch.tensor([-20.0]))
    assert not wants_refinement(graph, BabConfig(refine="auto"), torch.tensor([-5.0]))
    assert not wants_refinement(graph, BabConfig(refine="auto", refine_max_relus=4), torch.tensor([-20.0]))
    assert not wants_refinement(graph, BabConfig(refine="off"), torch.tensor([-100.0]))
    cnn = certnn.from_torch(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                                torch.nn.Linear(8, 4), torch.nn.ReLU(),
                                                torch.nn.Linear(4, 2)).double(), (1, 4, 4))
    assert not is_relu_mlp(cnn)


def test_bab_root_after_refinement_is_sound():
    """Branch and bound's root with refinement: its intermediate bounds contain sampled points'
    pre-activations, its margin is below the sampled margins, and the counters are reported."""
    from certnn.bab import driver

    model, graph, spec, _ = _net(1, d=4, h=10, depth=3, eps=0.5)
    x = spec.center
    prob = Problem.robustness(spec, margin_matrix(model(x).argmax(1), 3))
    bab = driver._BaB(graph, prob, BabConfig(refine="on"), "alpha-crown")
    doms, margin = bab.root(None)
    assert bab.profile.counts["refine_solves"] > 0 and "refine" in bab.profile.seconds
    assert bab.profile.counts["refine_margin_after"] >= bab.profile.counts["refine_margin_before"] - 1e-9
    pts = _points(spec, 3000, 1)
    vals = graph.forward_all(pts)
    for n in bab.relus:
        pre = bab.relu_inputs[n]
        assert (vals[pre] >= doms.bounds[pre].lower[0] - 1e-9).all()
        assert (vals[pre] <= doms.bounds[pre].upper[0] + 1e-9).all()
    rows = torch.einsum("sk,nk->ns", prob.C[0], vals[graph.output_name])
    assert (rows.min(1).values >= margin[0] - 1e-9).all()


def test_off_leaves_no_counters():
    model, graph, spec, _ = _net(1, d=4, h=10, depth=3, eps=0.5)
    prob = Problem.robustness(spec, margin_matrix(model(spec.center).argmax(1), 3))
    res = branch_and_bound(graph, prob, BabConfig(refine="off", batch=16), deadline=time.perf_counter() + 3)
    assert not any(k.startswith("refine") for k in res.stats)
