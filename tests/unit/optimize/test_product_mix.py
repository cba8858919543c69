"""alpha-CROWN's parameters of product planes (optimize/product_mix.py, product_split.py): plain products get
weights between their two McCormick planes, sigma(x) y the split parameters (sigma's tangent points and
McCormick weights), sigma(x) tanh(y) the tilts; every iterate is sound on random GRUs (one- and
two-directional, L-inf and L2; sampled points and PGD) with these and with the tilts everywhere; the first
iterate is CROWN's bound on nets of plain products, whose weights move and tighten CROWN; a sample's bounds
do not depend on its batch."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.engine.context import RunContext
from certnn.engine.methods import get_method
from certnn.graph.ir import GraphBuilder
from certnn.ops.affine import Linear
from certnn.ops.product import Mul
from certnn.optimize import AlphaConfig, optimized_bounds
from certnn.optimize import product_mix
from certnn.optimize.lines import PlaneTilts
from certnn.optimize.product_mix import McCormickMix
from certnn.optimize.product_split import SigmoidMulSplit
from certnn.testing import check_bounds_contain, pgd_against_bounds, sample_ball
from certnn.testing.nets import LastFrameHead

torch.set_num_threads(1)
DT = torch.float64
TOL = 1e-9



def _gru(seed: int, bidirectional: bool, hidden: int = 3, scale: float = 2.0) -> nn.Module:
    torch.manual_seed(seed)
    rnn = nn.GRU(2, hidden, 1, batch_first=True, bidirectional=bidirectional)
    with torch.no_grad():
        for p in rnn.parameters():
            p.mul_(scale)
    return LastFrameHead(rnn, nn.Linear(hidden * (2 if bidirectional else 1), 3)).double().eval()


def _product_net(seed: int, d: int = 4, h: int = 6, layers: int = 2):
    """x -> (W_a x + b_a) * (W_b x + b_b) -> ... -> W_out; plain products only (no other optimisable op)."""
    g = torch.Generator().manual_seed(seed)
    b = GraphBuilder((d,), DT)
    cur, width = b.input_name, d
    for _ in range(layers):
        a, c = (b.add(Linear(torch.randn(h, width, generator=g, dtype=DT) / width ** 0.5,
                             torch.randn(h, generator=g, dtype=DT) * 0.5), [cur]) for _ in range(2))
        cur, width = b.add(Mul(), [a, c]), h
    out = b.add(Linear(torch.randn(3, width, generator=g, dtype=DT), None), [cur])
    return b.build(out)


@pytest.fixture
def parameterisation(request, monkeypatch):
    """"default" (McCormick weights for x * y, split sigma-line + McCormick tilts for sigma(x) y) or "tilt"
    (the tilts of optimize/lines.PlaneTilts for every product)."""
    if request.param == "tilt":
        for kind in ("mul", "sigmoid_mul"):
            monkeypatch.setitem(product_mix.PLANE_PARAMETERS, kind, PlaneTilts)
    return request.param


def test_products_get_their_parameterisations():
    model = _gru(0, False)
    graph = certnn.from_torch(model, (3, 2))
    x = torch.rand(2, 3, 2, dtype=DT, generator=torch.Generator().manual_seed(0)) - 0.5
    res = optimized_bounds(RunContext(graph, make_spec(graph, x, 0.3, "inf"), get_method("alpha-crown")), None,
                           config=AlphaConfig(iterations=2))
    kinds = {}
    for (_, node), p in res.params.items():
        kinds.setdefault(graph.nodes[node].op.kind, set()).add(type(p))
    assert kinds["mul"] == {McCormickMix}
    assert kinds["sigmoid_mul"] == {SigmoidMulSplit}
    assert all((p.r_lo >= 0).all() and (p.r_lo <= 1).all() and (p.r_up >= 0).all() and (p.r_up <= 1).all()
               for p in res.params.values() if isinstance(p, McCormickMix))


@pytest.mark.parametrize("parameterisation", ["default", "tilt"], indirect=True)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_every_iterate_sound_on_random_grus(parameterisation, bidirectional, norm):
    for seed in (1, 2):
        model = _gru(seed, bidirectional)
        graph = certnn.from_torch(model, (3, 2))
        x = torch.rand(3, 3, 2, dtype=DT, generator=torch.Generator().manual_seed(seed)) - 0.5
        spec = make_spec(graph, x, 0.3 if norm == "inf" else 0.6, norm)
        C = margin_matrix(model(x).argmax(1), 3)
        pts = sample_ball(spec, 150, torch.Generator().manual_seed(seed))
        seen = []

        def check(it, lo, hi):
            seen.append(it)
            assert check_bounds_contain(model, pts, lo, hi, C) <= TOL, f"iterate {it} unsound"

        res = optimized_bounds(RunContext(graph, spec, get_method("alpha-crown")), C,
                               config=AlphaConfig(iterations=6, patience=6), on_iterate=check)
        assert seen and res.iterations == len(seen)
        assert pgd_against_bounds(model, spec, res.lower, res.upper, C, steps=15) <= TOL
        lo_c, hi_c, _ = bounds_for_spec(graph, spec, "crown", C)
        assert (res.lower >= lo_c - 1e-9 * (1 + lo_c.abs())).all()
        assert (res.upper <= hi_c + 1e-9 * (1 + hi_c.abs())).all()


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_product_nets_first_iterate_is_crown_and_weights_tighten_it(norm):
    gains = []
    for seed in range(3):
        graph = _product_net(seed)
        x = torch.randn(4, 4, dtype=DT, generator=torch.Generator().manual_seed(seed))
        spec = make_spec(graph, x, 0.3 if norm == "inf" else 0.5, norm)
        pts = sample_ball(spec, 200, torch.Generator().manual_seed(seed))
        first = []

        def check(it, lo, hi):
            if it == 1:
                first.append((lo.clone(), hi.clone()))
            assert check_bounds_contain(graph, pts, lo, hi, None) <= TOL, f"iterate {it} unsound"

        res = optimized_bounds(RunContext(graph, spec, get_method("alpha-crown")), None,
                               config=AlphaConfig(iterations=10), on_iterate=check)
        assert pgd_against_bounds(graph, spec, res.lower, res.upper, None, steps=15) <= TOL
        lo_c, hi_c, _ = bounds_for_spec(graph, spec, "crown", None)
        assert torch.allclose(first[0][0], lo_c, rtol=1e-9, atol=1e-9)
        assert torch.allclose(first[0][1], hi_c, rtol=1e-9, atol=1e-9)
        gains.append(((hi_c - lo_c) - (res.upper - res.lower)).mean().item())
        moved = [p for p in res.params.values() if isinstance(p, McCormickMix)]
        assert moved and any((p.r_lo < 1).any() or (p.r_up < 1).any() for p in moved)
    assert min(gains) > 0, gains


@pytest.mark.parametrize("bidirectional,norm", [(True, "inf")] + [
    pytest.param(b, n, marks=pytest.mark.slow) for b, n in ((False, "inf"), (False, "2"), (True, "2"))])
def test_gru_alpha_batched_equal_alone(bidirectional, norm):
    """Per-sample eps (one sample at 0), 8 iterations: each sample's bounds equal its bounds alone (~25 CPU s
    each; three of the four in the slow suite)."""
    model = _gru(5011, bidirectional)
    graph = certnn.from_torch(model, (3, 2))
    x = torch.rand(4, 3, 2, dtype=DT, generator=torch.Generator().manual_seed(1)) - 0.5
    eps = torch.tensor([0.0, 1e-3, 0.5, 3.0], dtype=DT) * (1.0 if norm == "inf" else 2.0)
    cfg = AlphaConfig(iterations=8)
    lo, hi, _ = bounds_for_spec(graph, make_spec(graph, x, eps, norm), "alpha-crown", None, alpha=cfg)
    one = [bounds_for_spec(graph, make_spec(graph, x[i:i + 1], eps[i:i + 1], norm), "alpha-crown", None, alpha=cfg)
           for i in range(4)]
    lo1, hi1 = torch.cat([o[0] for o in one]), torch.cat([o[1] for o in one])
    assert ((lo - lo1).abs() / (1 + lo1.abs())).max() <= 1e-12
    assert ((hi - hi1).abs() / (1 + hi1.abs())).max() <= 1e-12
