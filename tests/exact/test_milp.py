"""Exact level: on tiny ReLU nets, every method's bounds contain the exact range found by MILP (HiGHS),
LP (triangle relaxation) lies between CROWN and the exact range, and the MILP matches a dense grid."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.engine.milp import exact_bounds
from certnn.testing import random_relu_mlp

pytestmark = pytest.mark.solvers


def tiny(seed, d=2, h=6, depth=2):
    return random_relu_mlp(seed, d, h, depth)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("norm", ["inf", "1"])
def test_bounds_contain_exact_range(seed, norm):
    torch.manual_seed(seed)
    model = tiny(seed)
    x = torch.rand(2, 2, dtype=torch.float64)
    graph = certnn.from_torch(model, (2,))
    spec = make_spec(graph, x, 0.4, norm)
    ex_lo, ex_hi = exact_bounds(graph, spec)
    lp_lo, lp_hi = exact_bounds(graph, spec, relax=True)
    for method in ["ibp", "fastlin", "crown", "crown-ibp", "lipschitz"]:
        lo, hi, _ = bounds_for_spec(graph, spec, method)
        assert (lo <= ex_lo + 1e-7).all() and (hi >= ex_hi - 1e-7).all(), method
    crown_lo, crown_hi, _ = bounds_for_spec(graph, spec, "crown")
    assert (crown_lo <= lp_lo + 1e-7).all() and (lp_lo <= ex_lo + 1e-7).all()
    assert (crown_hi >= lp_hi - 1e-7).all() and (lp_hi >= ex_hi - 1e-7).all()
    if norm == "inf":  # MILP range equals the dense-grid range up to the grid's resolution
        t = torch.linspace(-1, 1, 301, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2) * 0.4
        for b in range(2):
            out = model(x[b] + grid)
            assert (out.min(0).values >= ex_lo[b] - 1e-7).all() and (out.max(0).values <= ex_hi[b] + 1e-7).all()
            assert (out.min(0).values - ex_lo[b]).abs().max() < 0.05
            assert (out.max(0).values - ex_hi[b]).abs().max() < 0.05


def test_crown_margin_bounds_contain_exact_deeper():
    torch.manual_seed(0)
    for seed, norm in itertools.product(range(3), ["inf", "1"]):
        model = tiny(10 + seed, d=4, h=8, depth=3)
        x = torch.rand(1, 4, dtype=torch.float64)
        graph = certnn.from_torch(model, (4,))
        spec = make_spec(graph, x, 0.2, norm, clip=(0.0, 1.0))
        C = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
        ex_lo, _ = exact_bounds(graph, spec, C)
        lo, _, _ = bounds_for_spec(graph, spec, "crown", C)
        assert (lo <= ex_lo + 1e-7).all()


def test_all_stable_network_has_no_binaries_and_is_still_exact():
    """Regression: with every ReLU stable the model has no integer column; HiGHS then solves an LP and
    its MIP dual bound is meaningless (0), which must not be read as the optimum."""
    lin1 = nn.Linear(2, 3).double()
    lin2 = nn.Linear(3, 1).double()
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        lin1.bias.fill_(5.0)  # all pre-activations far above 0: every ReLU is active
        lin2.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        lin2.bias.fill_(3.0)
    model = nn.Sequential(lin1, nn.ReLU(), lin2)
    x = torch.tensor([[0.3, 0.6]], dtype=torch.float64)
    graph = certnn.from_torch(model, (2,))
    spec = make_spec(graph, x, 0.1, "inf")
    lo, hi = exact_bounds(graph, spec)
    # f(x) = (x1+5) - 2(x2+5) + 0.5(x1+x2+5) + 3 = 1.5 x1 - 1.5 x2 + 0.5 on the box
    f0 = 1.5 * 0.3 - 1.5 * 0.6 + 0.5
    assert abs(lo.item() - (f0 - 0.3)) < 1e-9 and abs(hi.item() - (f0 + 0.3)) < 1e-9


@pytest.mark.parametrize("act", [nn.Tanh, nn.Sigmoid])
def test_smooth_nets_contain_dense_sampled_range(act):
    """No exact solver for tanh/sigmoid: CROWN's bounds must contain the range found by a dense grid."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 10), act(), nn.Linear(10, 10), act(), nn.Linear(10, 2)).double()
    x = torch.rand(3, 2, dtype=torch.float64)
    iv = certnn.compute_bounds(model, x, 0.5, "inf", "crown")
    t = torch.linspace(-1, 1, 401, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2) * 0.5
    for b in range(3):
        out = model(x[b] + grid)
        assert (out.min(0).values >= iv.lower[b] - 1e-9).all() and (out.max(0).values <= iv.upper[b] + 1e-9).all()


def test_milp_and_lp_in_float32_match_float64():
    """Issue 16, finding 5: a float32 graph and ball ended in a HiGHS RuntimeError (kInfeasible); the
    encoding is built in float64 whatever the inputs' dtype, so the bounds equal the float64 run's."""
    import certnn
    from certnn.engine.milp import exact_bounds
    from certnn.specs.lp import LpBall

    torch.manual_seed(7)
    m = torch.nn.Sequential(torch.nn.Linear(6, 20), torch.nn.ReLU(), torch.nn.Linear(20, 20), torch.nn.ReLU(),
                            torch.nn.Linear(20, 3))
    x = torch.rand(2, 6)
    g64 = certnn.from_torch(m, (6,))
    for relax in (False, True):
        ref = exact_bounds(g64, LpBall.make(x.double(), 0.05, "inf", clip=(0.0, 1.0)), relax=relax)
        got = exact_bounds(g64.to(torch.float32), LpBall.make(x, 0.05, "inf", clip=(0.0, 1.0)), relax=relax)
        for a, b in zip(got, ref):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-6)
