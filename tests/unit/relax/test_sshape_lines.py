"""S-shaped lines (relax/sshape.py): the default 'blend' lines, the minimal-area rule, CROWN's rule,
`sshape_lines` for arbitrary slopes (any broadcastable shapes, gradients) and `sshape_slope_range`.

Soundness is checked on dense grids, the endpoints and random points of intervals of every kind: l == u,
one side of the inflection point, crossing intervals skewed both ways, saturated ends (|x| up to 1e8),
scales 1e-3..1e8, in float32 and float64."""
from __future__ import annotations

import pytest
import torch

from certnn.relax.sshape import (ARCTAN, RULES, SIGMOID, TANH, lower_envelope_point, sshape_lines, sshape_relaxation,
                                 sshape_slope_range, sshape_slopes)
from certnn.relax.types import BLEND_KAPPA

torch.set_num_threads(1)
FNS = [SIGMOID, TANH, ARCTAN]
SCALES = (1e-3, 1e-1, 1.0, 3.0, 10.0, 1e3, 1e8)


def _intervals(dtype, n=150, seed=0):
    """(l, u) float tensors (N,): per scale random, positive, negative, zero-width, crossing skewed left
    and right, and saturated (both ends beyond +-20 on one side); plus hand-picked extremes."""
    g = torch.Generator().manual_seed(seed)
    r = lambda: torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    ls, us = [], []
    for s in SCALES:
        a, b = (r() * 2 - 1) * s, (r() * 2 - 1) * s
        w, k = r() * s, 10 ** (-3 * r())  # k in (1e-3, 1]: skew of the crossing intervals
        ls += [torch.minimum(a, b), a.abs() * 0.5, -a.abs(), a, -w, -w * k, 20 + w, -20 - w * 2]
        us += [torch.maximum(a, b), a.abs(), -a.abs() * 0.5, a.clone(), w * k, w, 20 + w * 2, -20 - w]
    extra = torch.tensor([[0.0, 0.0], [-1e8, 1e8], [-1e8, -1e8], [1e8, 1e8], [-1e8, 1e-3], [-1e-3, 1e8],
                          [-30.0, -20.0], [20.0, 30.0], [-1e-12, 1e-12], [-40.0, 40.0], [-5.0, 5e-7],
                          [-1e8, -1e8 + 1e2], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    l = torch.cat(ls + [extra[:, 0]]).to(dtype)
    u = torch.cat(us + [extra[:, 1]]).to(dtype)
    return torch.minimum(l, u), torch.maximum(l, u)


def _points(l, u, k=257, n_rand=64, seed=1):
    """(..., P) points of [l, u]: a grid, random points and both ends exactly."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, k, dtype=l.dtype)
    rnd = torch.rand(n_rand, generator=g).to(l.dtype)
    fr = torch.cat([t, rnd])
    x = l[..., None] + (u - l)[..., None] * fr
    x = torch.minimum(torch.maximum(x, l[..., None]), u[..., None])
    return torch.cat([x, l[..., None], u[..., None]], dim=-1)


def _assert_sound(rel, fn, l, u):
    """lower <= f <= upper at every point, up to the rounding of evaluating the line itself."""
    x = _points(l, u)
    e = lambda v: v[..., None]  # noqa: E731
    lo = e(rel.lower_slope) * x + e(rel.lower_bias)
    hi = e(rel.upper_slope) * x + e(rel.upper_bias)
    fx = fn.f(x)
    eps = torch.finfo(x.dtype).eps
    tol = 16 * eps * (1 + (e(rel.lower_slope) * x).abs() + e(rel.lower_bias).abs()
                      + (e(rel.upper_slope) * x).abs() + e(rel.upper_bias).abs())
    for name, bad in (("lower", lo - fx > tol), ("upper", fx - hi > tol)):
        rows = bad.any(-1)
        assert not rows.any(), f"{fn.name}: {name} line crosses f on [l, u] = {l.expand_as(rows)[rows][:3].tolist()}, " \
                               f"{u.expand_as(rows)[rows][:3].tolist()}"
    for v in (rel.lower_slope, rel.lower_bias, rel.upper_slope, rel.upper_bias):
        assert torch.isfinite(v).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_lines_sound(fn, rule, dtype):
    l, u = _intervals(dtype)
    rel = sshape_relaxation(fn, l, u, rule=rule)
    assert rel.lower_slope.dtype == dtype and rel.upper_bias.shape == l.shape
    _assert_sound(rel, fn, l, u)


def _moderate(n=400, seed=3):
    """float64 intervals with ends in [-12, 12] (crossing, one-sided, skewed, narrow) for area checks."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 12
    b = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 12
    c = torch.rand(n, generator=g, dtype=torch.float64) * 6
    l = torch.cat([torch.minimum(a, b), -c, -c * 0.05, c * 0.2 - 8, a])
    u = torch.cat([torch.maximum(a, b), c * 0.05, c, c * 0.2 - 7, a + 1e-3])
    return l, u


def _areas(rel, fn, l, u, k=4001):
    """Areas between f and the lower / upper line on [l, u] by the trapezoid rule (N,)."""
    t = torch.linspace(0, 1, k, dtype=l.dtype)
    x = l[:, None] + (u - l)[:, None] * t
    lo = rel.lower_slope[:, None] * x + rel.lower_bias[:, None]
    hi = rel.upper_slope[:, None] * x + rel.upper_bias[:, None]
    fx = fn.f(x)
    return torch.trapezoid(fx - lo, x, dim=1), torch.trapezoid(hi - fx, x, dim=1)


@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_min_area_lines_never_worse_in_area_than_crown(fn):
    """The minimal-area property: the 'min-area' lines leave no more area between line and f than CROWN's
    lines (Zhang et al.), on random intervals, and strictly less on skewed crossing intervals."""
    l, u = _moderate()
    ma = sshape_relaxation(fn, l, u, rule="min-area")
    cr = sshape_relaxation(fn, l, u, rule="crown")
    a_lo, a_up = _areas(ma, fn, l, u)
    c_lo, c_up = _areas(cr, fn, l, u)
    tol = 1e-9 * (1 + (u - l))
    assert (a_lo <= c_lo + tol).all() and (a_up <= c_up + tol).all()
    assert (a_lo < c_lo - 1e-6).any() and (a_up < c_up - 1e-6).any()
    # the same through the identity area = int f - (u - l) * line(m): min-area lines are highest at m
    m = (l + u) / 2
    lo_m, up_m = ma.evaluate(m)
    clo_m, cup_m = cr.evaluate(m)
    assert (lo_m >= clo_m - 1e-12).all() and (up_m <= cup_m + 1e-12).all()


def _blend_scores(rel, l, u, kappa):
    """(1 - kappa) * mean + kappa * min of the lower line on [l, u] (higher is better), and
    (1 - kappa) * mean + kappa * max of the upper line (lower is better)."""
    m = (l + u) / 2
    lo_m, up_m = rel.evaluate(m)
    lo_min = torch.minimum(rel.lower_slope * l, rel.lower_slope * u) + rel.lower_bias
    up_max = torch.maximum(rel.upper_slope * l, rel.upper_slope * u) + rel.upper_bias
    return (1 - kappa) * lo_m + kappa * lo_min, (1 - kappa) * up_m + kappa * up_max


@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_blend_lines_optimise_their_criterion(fn):
    """The default lines optimise (1 - kappa) mean + kappa worst over [l, u] among all sound lines: no
    CROWN line, min-area line or line of random slope (exact offsets) scores better."""
    l, u = _moderate(seed=4)
    best = sshape_relaxation(fn, l, u)
    s_lo, s_up = _blend_scores(best, l, u, BLEND_KAPPA)
    g = torch.Generator().manual_seed(0)
    others = [sshape_relaxation(fn, l, u, rule="crown"), sshape_relaxation(fn, l, u, rule="min-area")]
    for _ in range(20):
        k = torch.rand(l.shape, generator=g, dtype=torch.float64) * fn.peak_slope * 1.2
        others.append(sshape_lines(fn, l, u, k, k))
    tol = 1e-9
    for rel in others:
        o_lo, o_up = _blend_scores(rel, l, u, BLEND_KAPPA)
        assert (s_lo >= o_lo - tol).all() and (s_up <= o_up + tol).all()


def test_kappa_zero_is_min_area_and_rule_checks():
    l, u = _moderate(n=50)
    for fn in FNS:
        a = sshape_slopes(fn, l, u, rule="blend", kappa=0.0)
        b = sshape_slopes(fn, l, u, rule="min-area")
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError):
        sshape_slopes(TANH, l, u, rule="tangent")
    with pytest.raises(ValueError):
        sshape_slopes(TANH, l, u, kappa=1.5)
    with pytest.raises(ValueError):
        sshape_lines(TANH, u, l - 1, l, l)


def test_touch_points():
    """Convex part: the blend lower line touches f at q_lo = m - kappa (u - l)/2; concave part: the upper
    line touches at q_up = m + kappa (u - l)/2; crossing skewed left: the lower line touches at q_lo while
    q_lo is below CROWN's tangent point d_l, and is CROWN's line through (u, f(u)) beyond it."""
    l = torch.tensor([-4.0, 0.5, -9.0, -1.0], dtype=torch.float64)
    u = torch.tensor([-1.0, 3.5, 1.0, 6.0], dtype=torch.float64)
    m, h = (l + u) / 2, BLEND_KAPPA * (u - l) / 2
    q_lo, q_up = m - h, m + h
    for fn in FNS:
        rel = sshape_relaxation(fn, l, u)
        lo, _ = rel.evaluate(q_lo)
        _, up = rel.evaluate(q_up)
        assert torch.allclose(lo[0], fn.f(q_lo[0]), atol=1e-12)
        assert torch.allclose(up[1], fn.f(q_up[1]), atol=1e-12)
        d, chord = lower_envelope_point(fn, l, u)
        assert not chord[2] and q_lo[2] < d[2]
        assert torch.allclose(lo[2], fn.f(q_lo[2]), atol=1e-12)
        # interval [-1, 6]: q_lo = 1.75 lies past d_l, so the lower line is CROWN's, through (u, f(u))
        cr = sshape_relaxation(fn, l, u, rule="crown")
        assert torch.allclose(rel.lower_slope[3], cr.lower_slope[3]) and torch.allclose(rel.lower_bias[3], cr.lower_bias[3])
        assert torch.allclose(rel.lower_slope[3] * u[3] + rel.lower_bias[3], fn.f(u[3]), atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_sshape_lines_sound_for_arbitrary_slopes(fn, dtype):
    """Any slopes (negative, zero, tiny, beyond f'(0), huge), l, u of shape (B, 1, n) and slopes of shape
    (B, S, n): lines of shape (B, S, n), sound on every interval."""
    l, u = _intervals(dtype, n=20, seed=5)
    n = l.shape[0]
    lb, ub = l.view(1, 1, n).expand(2, 1, n), u.view(1, 1, n).expand(2, 1, n)
    g = torch.Generator().manual_seed(6)
    base = torch.tensor([-1.0, 0.0, 1e-30, 1e-8, 0.5 * fn.peak_slope, fn.peak_slope, 1.5 * fn.peak_slope, 1e3,
                         -1e3], dtype=torch.float64)
    k = torch.cat([base[:, None].expand(-1, n), (torch.rand(8, n, generator=g, dtype=torch.float64) * 3 - 1)
                   * fn.peak_slope]).to(dtype)
    S = k.shape[0]
    lo_k = torch.stack([k, k.flip(0)])  # (2, S, n)
    up_k = torch.stack([k.flip(0), k])
    rel = sshape_lines(fn, lb, ub, lo_k, up_k)
    assert rel.lower_bias.shape == (2, S, n) and rel.upper_slope.shape == (2, S, n)
    _assert_sound(rel, fn, lb.expand(2, S, n), ub.expand(2, S, n))
    # broadcasting the other way round (bounds per spec row, one slope per neuron) gives the same lines
    rel2 = sshape_lines(fn, lb.expand(2, S, n), ub.expand(2, S, n), lo_k, up_k)
    assert torch.equal(rel.lower_bias, rel2.lower_bias) and torch.equal(rel.upper_bias, rel2.upper_bias)


@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_sshape_lines_gradcheck(fn):
    """d offsets / d (slopes, l, u) by autograd match finite differences (float64, interior points: the
    extremiser is an interior stationary point or an end, never a tie)."""
    l = torch.tensor([-2.0, -0.7, 0.3, -3.0, -1.2], dtype=torch.float64)
    u = torch.tensor([1.5, 2.2, 2.4, -0.4, 0.9], dtype=torch.float64)
    k_lo = torch.tensor([0.3, 0.6, 0.2, 0.05, 0.9], dtype=torch.float64) * fn.peak_slope
    k_up = torch.tensor([0.4, 0.15, 0.5, 0.35, 0.7], dtype=torch.float64) * fn.peak_slope

    def offsets(a, b, lo, hi):
        rel = sshape_lines(fn, lo, hi, a, b)
        return rel.lower_bias, rel.upper_bias

    inputs = tuple(t.clone().requires_grad_(True) for t in (k_lo, k_up, l, u))
    assert torch.autograd.gradcheck(offsets, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_relaxation_gradients_are_finite():
    """Verified training differentiates the default lines: gradients wrt l, u stay finite on every kind
    of interval (zero width, saturated, crossing)."""
    l0, u0 = _intervals(torch.float64, n=10, seed=8)
    for fn in FNS:
        l, u = l0.clone().requires_grad_(True), u0.clone().requires_grad_(True)
        rel = sshape_relaxation(fn, l, u)
        (rel.lower_bias.sum() + rel.upper_bias.sum() + rel.lower_slope.sum() + rel.upper_slope.sum()).backward()
        assert torch.isfinite(l.grad).all() and torch.isfinite(u.grad).all()


@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_slope_range(fn):
    """Every rule's slopes lie in [k_min, k_max], and a slope outside the range is dominated: the line
    with the slope clamped into the range is at least as tight at every point of [l, u]."""
    l, u = _intervals(torch.float64, n=40, seed=9)
    k_min, k_max = sshape_slope_range(fn, l, u)
    assert (k_min <= k_max).all() and (k_min >= 0).all()
    tol = 1e-9 * k_max
    for rule in RULES:
        a, b = sshape_slopes(fn, l, u, rule=rule)
        for k in (a, b):
            assert ((k >= k_min - tol) & (k <= k_max + tol)).all(), rule
    g = torch.Generator().manual_seed(10)
    x = _points(l, u)
    for _ in range(6):
        k = (torch.rand(l.shape, generator=g, dtype=torch.float64) * 4 - 2) * fn.peak_slope
        kc = torch.minimum(torch.maximum(k, k_min), k_max)
        raw, clamped = sshape_lines(fn, l, u, k, k), sshape_lines(fn, l, u, kc, kc)
        e = lambda v: v[:, None]  # noqa: E731
        scale = 1e-12 * (1 + x.abs() * (k.abs()[:, None] + k_max[:, None]))
        assert ((e(clamped.lower_slope) * x + e(clamped.lower_bias))
                >= (e(raw.lower_slope) * x + e(raw.lower_bias)) - scale).all()
        assert ((e(clamped.upper_slope) * x + e(clamped.upper_bias))
                <= (e(raw.upper_slope) * x + e(raw.upper_bias)) + scale).all()
