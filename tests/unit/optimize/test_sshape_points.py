"""alpha-CROWN's tangent-point parameters of S-shaped activations (optimize/sshape_points.py).

Lines are sound at every position (inside, at the ends of and outside [0, 1]) on intervals of every kind
(zero width, one-sided, crossing and skewed, saturated, |x| up to 1e8) in float64 and float32; the warm
start reproduces the base method's lines; the ends of the ranges are the tangents at l and CROWN's tangent
through (u, f(u)); gradients match finite differences; and on random sigmoid / tanh / arctan nets every
iterate of the optimiser stays sound (sampled points and PGD), also with steps large enough to hit the
projection, while the result is strictly tighter than CROWN."""
from __future__ import annotations

import pytest
import torch

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.engine.context import RunContext
from certnn.engine.methods import get_method
from certnn.optimize import AlphaConfig, optimized_bounds
from certnn.optimize.sshape_points import SShapeTangents, tangent_ranges
from certnn.relax.sshape import ARCTAN, SIGMOID, TANH, sshape_relaxation
from certnn.testing import check_bounds_contain, pgd_against_bounds, random_mlp, sample_ball

torch.set_num_threads(1)
FNS = [SIGMOID, TANH, ARCTAN]


def _intervals(dtype, n=60, seed=0):
    """(l, u) of shape (N,): random per scale, one-sided both ways, crossing skewed both ways, zero width,
    saturated, and hand-picked extremes."""
    g = torch.Generator().manual_seed(seed)
    r = lambda: torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    ls, us = [], []
    for s in (1e-3, 0.3, 1.0, 4.0, 12.0, 1e3, 1e8):
        a, b = (r() * 2 - 1) * s, (r() * 2 - 1) * s
        w, k = r() * s, 10 ** (-3 * r())
        ls += [torch.minimum(a, b), a.abs() * 0.5, -a.abs(), a, -w, -w * k, 20 + w]
        us += [torch.maximum(a, b), a.abs(), -a.abs() * 0.5, a.clone(), w * k, w, 20 + w * 2]
    extra = torch.tensor([[0.0, 0.0], [-1e8, 1e8], [-1e8, -1e8], [1e8, 1e8], [-1e8, 1e-3], [-1e-3, 1e8],
                          [-1e-12, 1e-12], [-40.0, 40.0], [-5.0, 5e-7], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    l, u = torch.cat(ls + [extra[:, 0]]), torch.cat(us + [extra[:, 1]])
    return torch.minimum(l, u).to(dtype), torch.maximum(l, u).to(dtype)


def _lines(fn, l, u, s_lo, s_up):
    """The lines of positions s_lo, s_up (N, R) on [l, u] (N,), shaped (N, R)."""
    p = SShapeTangents(fn, s_lo, s_up)
    return p(None, l.unsqueeze(1), u.unsqueeze(1))


def _violation(rel, fn, l, u, k=301):
    """Worst amount by which a line crosses f on [l, u] (grid, random points, both ends), relative to
    the magnitudes of evaluating the line; rel's tensors (N, R), l, u (N,)."""
    g = torch.Generator().manual_seed(1)
    fr = torch.cat([torch.linspace(0, 1, k, dtype=torch.float64), torch.rand(64, generator=g, dtype=torch.float64)])
    x = (l[:, None] + (u - l)[:, None] * fr.to(l.dtype)).clamp(l[:, None], u[:, None])
    x = torch.cat([x, l[:, None], u[:, None]], 1)[:, None, :]  # (N, 1, P)
    e = lambda v: v[..., None]  # noqa: E731
    fx = fn.f(x)
    lo = e(rel.lower_slope) * x + e(rel.lower_bias)
    hi = e(rel.upper_slope) * x + e(rel.upper_bias)
    mag = 1 + (e(rel.lower_slope) * x).abs() + e(rel.lower_bias).abs() + (e(rel.upper_slope) * x).abs() \
        + e(rel.upper_bias).abs()
    eps = torch.finfo(l.dtype).eps
    return float(torch.maximum(lo - fx, fx - hi).div(mag).amax() / eps)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_lines_sound_at_every_position(fn, dtype):
    l, u = _intervals(dtype)
    g = torch.Generator().manual_seed(2)
    N = l.shape[0]
    fixed = torch.tensor([0.0, 1.0, 0.5, -0.3, 1.7], dtype=dtype).expand(N, 5)
    s_lo = torch.cat([fixed, torch.rand(N, 6, generator=g, dtype=torch.float64).to(dtype)], 1)
    s_up = torch.cat([fixed.flip(1), torch.rand(N, 6, generator=g, dtype=torch.float64).to(dtype)], 1)
    rel = _lines(fn, l, u, s_lo, s_up)
    assert rel.lower_slope.shape == (N, 11) and rel.lower_slope.dtype == dtype
    for v in (rel.lower_slope, rel.lower_bias, rel.upper_slope, rel.upper_bias):
        assert torch.isfinite(v).all()
    assert _violation(rel, fn, l, u) <= 16


@pytest.mark.parametrize("rule", ["blend", "min-area", "crown"])
@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_warm_start_reproduces_the_base_lines(fn, rule):
    l, u = _intervals(torch.float64, seed=3)
    keep = (l > -15) & (u < 15) & (u - l > 1e-6)  # slopes of saturated ends carry no tangent point
    l, u = l[keep], u[keep]
    base = sshape_relaxation(fn, l, u, rule=rule)
    s_lo, s_up = SShapeTangents.initial(fn, base, l, u, rows=2)
    assert s_lo.shape == (l.shape[0], 2, ) and bool(((s_lo >= 0) & (s_lo <= 1)).all())
    rel = _lines(fn, l, u, s_lo, s_up)
    for got, want in ((rel.lower_slope, base.lower_slope), (rel.upper_slope, base.upper_slope),
                      (rel.lower_bias, base.lower_bias), (rel.upper_bias, base.upper_bias)):
        assert torch.allclose(got, want.unsqueeze(1).expand_as(got), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_range_ends_are_the_tangent_at_l_and_crowns_tangent_through_u(fn):
    g = torch.Generator().manual_seed(4)
    l = -0.2 - 8 * torch.rand(300, generator=g, dtype=torch.float64)
    u = 0.05 + 8 * torch.rand(300, generator=g, dtype=torch.float64)
    _, _, lo_chord, _, _, up_chord, _ = tangent_ranges(fn, l, u)
    one, zero = torch.ones(300, 1, dtype=torch.float64), torch.zeros(300, 1, dtype=torch.float64)
    at_end = _lines(fn, l, u, one, zero)
    at_start = _lines(fn, l, u, zero, one)
    lc, uc = l[:, None], u[:, None]
    tangent = ~lo_chord[:, None]
    # s_lo = 1: the tangent whose line passes through (u, f(u)); s_lo = 0: the tangent at l
    thru_u = (at_end.lower_slope * uc + at_end.lower_bias - fn.f(uc)).abs()
    assert tangent.any() and float(thru_u[tangent].max()) <= 1e-8
    at_l = (at_start.lower_slope * lc + at_start.lower_bias - fn.f(lc)).abs()
    assert float(at_l[tangent].max()) <= 1e-12 and torch.allclose(at_start.lower_slope[tangent], fn.df(lc)[tangent])
    # mirrored: s_up = 0 passes through (l, f(l)), s_up = 1 is the tangent at u
    up_tangent = ~up_chord[:, None]
    thru_l = (at_end.upper_slope * lc + at_end.upper_bias - fn.f(lc)).abs()
    assert up_tangent.any() and float(thru_l[up_tangent].max()) <= 1e-8
    assert torch.allclose(at_start.upper_slope[up_tangent], fn.df(uc)[up_tangent])


@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_gradients_match_finite_differences(fn):
    g = torch.Generator().manual_seed(5)
    l = torch.tensor([-3.0, -2.0, -6.0, 0.5, -4.0], dtype=torch.float64)
    u = torch.tensor([2.0, -0.5, 1.0, 3.0, 4.0], dtype=torch.float64)
    s_lo = (0.2 + 0.6 * torch.rand(5, 1, generator=g, dtype=torch.float64)).requires_grad_(True)
    s_up = (0.2 + 0.6 * torch.rand(5, 1, generator=g, dtype=torch.float64)).requires_grad_(True)

    def f(a, b):
        rel = _lines(fn, l, u, a, b)
        return rel.lower_slope, rel.lower_bias, rel.upper_slope, rel.upper_bias
    assert torch.autograd.gradcheck(f, (s_lo, s_up), eps=1e-6, atol=1e-6)


def _sshape_problem(act: str, seed: int, eps: float):
    model, d = random_mlp(seed, act, d_in=5)
    x = torch.rand(3, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 0.5
    graph = certnn.from_torch(model, (d,))
    C = margin_matrix(model(x).argmax(1), 3)
    return model, graph, make_spec(graph, x, eps, "inf"), C


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "arctan"])
def test_every_iterate_sound_on_random_sshape_nets(act):
    """Wide balls (most neurons cross the inflection point) and a large step size (positions hit 0 and 1,
    the projection acts) as well as the default one: every iterate's bounds hold on sampled points, and
    PGD cannot push an output past the final bounds."""
    for seed, eps, lr in [(0, 0.4, 0.5), (1, 1.0, 20.0), (2, 0.15, 5.0), (3, 2.0, 0.5)]:
        model, graph, spec, C = _sshape_problem(act, seed, eps)
        pts = sample_ball(spec, 150, torch.Generator().manual_seed(seed))

        def record(it, lo, hi):
            assert check_bounds_contain(model, pts, lo, hi, C) <= 1e-9, f"seed {seed}: iterate {it} unsound"

        ctx = RunContext(graph, spec, get_method("alpha-crown"))
        res = optimized_bounds(ctx, C, config=AlphaConfig(iterations=10, lr=lr), on_iterate=record)
        assert res.iterations == 10
        assert pgd_against_bounds(model, spec, res.lower, res.upper, C, steps=20) <= 1e-9


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_tighter_than_crown_on_random_sshape_nets(act):
    gains = []
    for seed in range(4):
        model, graph, spec, C = _sshape_problem(act, 10 + seed, 0.3)
        lo_c, _, _ = bounds_for_spec(graph, spec, "crown", C, upper=False)
        lo_a, _, _ = bounds_for_spec(graph, spec, "alpha-crown", C, upper=False, alpha=AlphaConfig(iterations=10))
        assert (lo_a >= lo_c - 1e-9 * (1 + lo_c.abs())).all()
        gains.append(float((lo_a - lo_c).mean()))
    assert max(gains) > 0 and min(gains) >= 0, gains
