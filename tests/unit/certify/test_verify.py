"""VNN-LIB verification on hand-made nets and properties whose answers are known, and agreement of every
stage (bounds + splitting, lp, milp) with the exact answer on tiny random ReLU nets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from certnn.certify.verify import VerifyConfig, verify_property
from certnn.engine.milp import exact_bounds
from certnn.errors import SpecError
from certnn.graph.from_torch import from_torch
from certnn.specs.vnnlib import parse_vnnlib, property_violated
from certnn.testing import random_relu_mlp

pytest.importorskip("highspy")


def _header(n, m):
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + "".join(
        f"(declare-const Y_{j} Real)\n" for j in range(m))


def _box(lo, hi):
    return "".join(f"(assert (>= X_{i} {a!r}))\n(assert (<= X_{i} {b!r}))\n" for i, (a, b) in enumerate(zip(map(float, lo), map(float, hi))))


def _linear_net():
    lin = nn.Linear(2, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        lin.bias.zero_()
    return from_torch(nn.Sequential(lin), (2,))


FAST = VerifyConfig(timeout=10.0, exact="none")


def test_linear_holds_and_violated_with_checked_counterexample():
    g = _linear_net()  # y0 = x0 + x1 in [0, 2] on [0, 1]^2
    safe = parse_vnnlib(_header(2, 2) + _box([0, 0], [1, 1]) + "(assert (>= Y_0 2.5))")
    assert verify_property(g, safe, FAST).verdict == "holds"
    bad = parse_vnnlib(_header(2, 2) + _box([0, 0], [1, 1]) + "(assert (>= Y_0 1.9))")
    res = verify_property(g, bad, FAST)
    assert res.verdict == "violated"
    assert property_violated(bad, res.x, res.y)
    assert np.all(res.x >= 0) and np.all(res.x <= 1)
    assert np.array_equal(res.x.astype(np.float32).astype(np.float64), res.x)  # float32-representable


def test_disjunction_of_outputs_and_regions():
    g = _linear_net()
    # unsafe: y0 >= 2.5 or y1 <= -1.5 (both impossible on [0,1]^2: y1 = x0 - x1 >= -1)
    p = parse_vnnlib(_header(2, 2) + _box([0, 0], [1, 1]) +
                     "(assert (or (and (>= Y_0 2.5)) (and (<= Y_1 -1.5))))")
    assert verify_property(g, p, FAST).verdict == "holds"
    # add a region where the second disjunct is reachable: x in [0,0.1] x [2, 3] gives y1 <= -1.9
    p2 = parse_vnnlib(_header(2, 2) + "(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1)) "
                      "(and (>= X_0 0) (<= X_0 0.1) (>= X_1 2) (<= X_1 3))))\n"
                      "(assert (or (and (>= Y_0 4.5)) (and (<= Y_1 -1.5))))")
    res = verify_property(g, p2, FAST)
    assert res.verdict == "violated" and property_violated(p2, res.x, res.y)
    assert res.x[1] >= 2  # found in the second region


def test_conjunction_needs_every_row():
    g = _linear_net()
    # y0 >= 1.5 and y1 >= 0.9 : needs x0 + x1 >= 1.5 and x0 - x1 >= 0.9 -> x0 = 1, x1 in [0.5, 0.1]: empty
    p = parse_vnnlib(_header(2, 2) + _box([0, 0], [1, 1]) + "(assert (>= Y_0 1.5))\n(assert (>= Y_1 0.9))")
    res = verify_property(g, p, VerifyConfig(timeout=20.0, exact="none"))
    assert res.verdict == "holds"
    # y0 >= 1.2 and y1 >= 0.6 : x0 = 1, x1 in [0.2, 0.4]: feasible
    p = parse_vnnlib(_header(2, 2) + _box([0, 0], [1, 1]) + "(assert (>= Y_0 1.2))\n(assert (>= Y_1 0.6))")
    res = verify_property(g, p, FAST)
    assert res.verdict == "violated" and property_violated(p, res.x, res.y)


def test_reference_must_confirm_counterexample():
    g = _linear_net()
    bad = parse_vnnlib(_header(2, 2) + _box([0, 0], [1, 1]) + "(assert (>= Y_0 1.9))")

    def liar(x):  # a "reference" that never reaches the unsafe set
        return np.zeros((len(x), 2))

    res = verify_property(g, bad, VerifyConfig(timeout=2.0), reference=liar)
    assert res.verdict == "unknown"


def test_zero_width_box_and_no_output_constraint():
    g = _linear_net()
    p = parse_vnnlib(_header(2, 2) + _box([0.5, 0.25], [0.5, 0.25]) + "(assert (>= Y_0 0.75))")
    res = verify_property(g, p, FAST)
    assert res.verdict == "violated" and res.x.tolist() == [0.5, 0.25]
    p = parse_vnnlib(_header(2, 2) + _box([0.5, 0.25], [0.5, 0.25]) + "(assert (>= Y_0 0.76))")
    assert verify_property(g, p, FAST).verdict == "holds"
    p = parse_vnnlib(_header(2, 2) + _box([0, 0], [1, 1]))  # no output constraint: everything is unsafe
    assert verify_property(g, p, FAST).verdict == "violated"


def test_size_mismatch_is_a_spec_error():
    p = parse_vnnlib(_header(3, 2) + _box([0, 0, 0], [1, 1, 1]) + "(assert (>= Y_0 1))")
    with pytest.raises(SpecError, match="3 inputs"):
        verify_property(_linear_net(), p, FAST)


def _tiny(seed, d=2, h=8):
    return from_torch(random_relu_mlp(seed, d, h), (d,))


@pytest.mark.solvers
@pytest.mark.parametrize("seed", range(4))
def test_every_stage_agrees_with_the_exact_answer(seed):
    """Unsafe: Y_0 - Y_1 <= c. Exact min of Y_0 - Y_1 by MILP decides the truth; thresholds just below and
    above it give one property that holds and one that is violated (margin 5%)."""
    from certnn.specs.lp import LpBall

    g = _tiny(seed)
    lo, hi = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
    spec = LpBall.make(torch.tensor(((lo + hi) / 2)[None]), 1.0, "inf", scale=torch.tensor((hi - lo) / 2))
    C = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    mn, mx = exact_bounds(g, spec, C)
    mn, mx = float(mn), float(mx)
    gap = 0.05 * (mx - mn) + 1e-3
    for c, truth in ((mn - gap, "holds"), (mn + gap, "violated")):
        p = parse_vnnlib(_header(2, 2) + _box(lo, hi) + f"(assert (<= (- Y_0 Y_1) {c!r}))")
        split = verify_property(g, p, VerifyConfig(timeout=20.0, exact="none"))
        milp = verify_property(g, p, VerifyConfig(timeout=20.0, exact="milp", split=False, attack=False))
        lp = verify_property(g, p, VerifyConfig(timeout=20.0, exact="lp", split=False, attack=False))
        assert split.verdict == truth, (c, mn, split)
        assert milp.verdict == truth, (c, mn, milp)
        assert lp.verdict in (truth, "unknown") and not (lp.verdict == "holds" and truth != "holds")
        for r in (split, milp):
            if r.verdict == "violated":
                assert property_violated(p, r.x, r.y)


@pytest.mark.solvers
@pytest.mark.parametrize("branching", ["gradient", "sb", "mixed"])
@pytest.mark.parametrize("seed", range(3))
def test_input_split_branching_rules_agree_with_the_exact_answer(seed, branching):
    """Input splitting alone (no attack, no exact stage) with each branching rule: proves the property
    just below the exact minimum and finds a checked counterexample just above it."""
    from certnn.specs.lp import LpBall

    g = _tiny(seed + 10)
    lo, hi = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
    spec = LpBall.make(torch.tensor(((lo + hi) / 2)[None]), 1.0, "inf", scale=torch.tensor((hi - lo) / 2))
    mn, mx = (float(v) for v in exact_bounds(g, spec, torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)))
    gap = 0.02 * (mx - mn) + 1e-4
    cfg = VerifyConfig(timeout=20.0, exact="none", attack=False, bab=False, split_branching=branching)
    for c, truth in ((mn - gap, "holds"), (mn + gap, "violated")):
        p = parse_vnnlib(_header(2, 2) + _box(lo, hi) + f"(assert (<= (- Y_0 Y_1) {c!r}))")
        r = verify_property(g, p, cfg)
        assert r.verdict == truth, (c, mn, r)
        if r.verdict == "violated":
            assert property_violated(p, r.x, r.y)


@pytest.mark.solvers
def test_lp_and_milp_methods_through_bounds_for_spec():
    from certnn.certify.bounds import bounds_for_spec, make_spec
    from certnn.testing.soundness import check_bounds_contain, sample_ball

    g = _tiny(7)
    x = torch.rand(2, 2, dtype=torch.float64)
    spec = make_spec(g, x, 0.3, "inf")
    out = {}
    for m in ("crown", "lp", "milp"):
        lo, hi, _ = bounds_for_spec(g, spec, m)
        out[m] = (lo, hi)
        pts = sample_ball(spec, 400, torch.Generator().manual_seed(0))
        assert check_bounds_contain(g.forward, pts, lo, hi) <= 1e-9
    tol = 1e-7
    assert (out["crown"][0] <= out["lp"][0] + tol).all() and (out["lp"][0] <= out["milp"][0] + tol).all()
    assert (out["milp"][1] <= out["lp"][1] + tol).all() and (out["lp"][1] <= out["crown"][1] + tol).all()


@pytest.mark.solvers
def test_milp_stage_on_a_tiny_conv_net_uses_the_dense_form():
    pytest.importorskip("certnn.ops.conv")
    g0 = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g0, dtype=torch.float64))
    g = from_torch(net, (1, 3, 3))
    lo, hi = np.zeros(9), np.full(9, 0.3)
    xs = torch.rand(4000, 1, 3, 3, generator=g0, dtype=torch.float64) * 0.3
    with torch.no_grad():
        v = (net(xs)[:, 0] - net(xs)[:, 1])
    smax = float(v.max())
    # unsafe: Y_0 - Y_1 >= c. Reachable (sampled) just below the sampled max -> violated
    p = parse_vnnlib(_header(9, 2) + _box(lo, hi) + f"(assert (>= (- Y_0 Y_1) {smax - 1e-3!r}))")
    r = verify_property(g, p, VerifyConfig(timeout=20.0, exact="milp", split=False, attack=False, bab=False))
    assert r.verdict == "violated" and r.decided_by == "milp" and property_violated(p, r.x, r.y)
    # the exact max from the MILP on the dense form, a bit above it -> holds
    from certnn.graph.passes import unroll_convs
    from certnn.specs.lp import LpBall
    spec = LpBall.make(torch.full((1, 1, 3, 3), 0.15, dtype=torch.float64), 0.15, "inf")
    _, mx = exact_bounds(unroll_convs(g), spec, torch.tensor([[[1.0, -1.0]]], dtype=torch.float64))
    assert float(mx) >= smax - 1e-9
    p = parse_vnnlib(_header(9, 2) + _box(lo, hi) + f"(assert (>= (- Y_0 Y_1) {float(mx) + 1e-3!r}))")
    r = verify_property(g, p, VerifyConfig(timeout=20.0, exact="milp", split=False, attack=False))
    assert r.verdict == "holds"
