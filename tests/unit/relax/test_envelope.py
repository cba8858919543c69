"""Envelope tangent points by safeguarded Newton (relax/envelope.py, the default of relax/sshape.py)
against a long bisection: the same points to ~ulps where they matter, the same lines to ~1e-12, sound
lines, and the stacked one-call forms (envelope_points, sshape_relaxation, narrowest_parallel) equal to
the separate calls they replace."""
from __future__ import annotations

import pytest
import torch

from certnn.relax.envelope import derivatives
from certnn.relax.parallel import narrowest_parallel
from certnn.relax.sshape import (ARCTAN, SIGMOID, TANH, envelope_points, exact_offsets, lower_envelope_point,
                                 parallel_relaxation, sshape_lines, sshape_relaxation, sshape_slopes,
                                 upper_envelope_point)

torch.set_num_threads(1)
FNS = [SIGMOID, TANH, ARCTAN]
FIELDS = ("lower_slope", "lower_bias", "upper_slope", "upper_bias")


def _parts(rel):
    return [getattr(rel, f) for f in FIELDS]


def _boxes(dtype=torch.float64, n=400, seed=0):
    """Crossing, one-sided, degenerate and saturated boxes at scales 1e-6 .. 1e8."""
    g = torch.Generator().manual_seed(seed)
    ls, us = [], []
    for s in (1e-6, 1e-3, 0.1, 1.0, 3.0, 10.0, 100.0, 1e4, 1e8):
        a = torch.rand(n, generator=g, dtype=torch.float64) * s
        b = torch.rand(n, generator=g, dtype=torch.float64) * s
        k = 10 ** (-4 * torch.rand(n, generator=g, dtype=torch.float64))
        ls += [-a, -a * k, -a, a * 0.5, -a]
        us += [b, b, b * k, a, -a * 0.5]
    extra = torch.tensor([[0.0, 0.0], [-1e8, 1e8], [-1e8, 1e-3], [-1e-3, 1e8], [-1.0, 0.0], [0.0, 1.0],
                          [-40.0, 40.0], [-5.0, 5e-7], [-1e-12, 1e-12]], dtype=torch.float64)
    l = torch.cat(ls + [extra[:, 0]]).to(dtype)
    u = torch.cat(us + [extra[:, 1]]).to(dtype)
    return torch.minimum(l, u), torch.maximum(l, u)


def _noise(fn, d, u):
    """How far a computed root of h(d) = f(d) + f'(d) (u - d) - f(u) can be from the true one because h
    is evaluated in floating point: 64 ulps of h's terms over |h'(d)| = f''(d) (u - d)."""
    f, df, d2f = derivatives(fn, d)
    # (u - d): f' = 1 - tanh^2 of a saturated d has an absolute error of ~1 ulp, times (u - d) in h
    scale = f.abs() + (df * (u - d)).abs() + fn.f(u).abs() + (u - d).abs()
    return 64 * torch.finfo(d.dtype).eps * scale / (d2f * (u - d)).abs()


@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_newton_point_is_the_bisection_point(fn):
    """Where the envelope point matters (crossing, not the chord), Newton's d (rounded up to the 40-step
    bisection's grid s_max 2^-40 in s = log1p(-d)) and the 40-step bisection's d lie within one grid cell,
    up to how precisely h can be evaluated at all (tiny boxes, where h ~ u^3 is below the ulps of its
    terms, and saturated ends); elsewhere both give the same d and chord flags."""
    l, u = _boxes()
    d_n, ch_n = lower_envelope_point(fn, l, u)
    d_b, ch_b = lower_envelope_point(fn, l, u, iters=40)
    assert torch.equal(ch_n, ch_b)
    need = (l < 0) & (u > 0) & ~ch_n
    assert need.sum() > 1000
    dn, db, un = d_n[need], d_b[need], u[need]
    cell = torch.log1p(-l[need]) * 2.0 ** -40 * (1 - db)  # one grid cell of s, in d
    tol = 1.01 * cell + 1e-15 * (1 + db.abs()) + 2 * torch.maximum(_noise(fn, dn, un), _noise(fn, db, un))
    assert ((dn - db).abs() <= tol).all()
    well = tol <= 1e-10 * (1 + db.abs())  # most boxes: the root is well conditioned
    assert well.float().mean() > 0.3
    one_side = (u <= 0) | (l >= 0)  # d = u or d = l (d of a chord does not matter)
    assert torch.equal(d_n[one_side], d_b[one_side])


@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_default_lines_match_bisection_lines(fn):
    """The default lines (Newton points) and the 40-step bisection's lines (the default before) agree to
    ~1e-10 of the lines' magnitude over the box, up to a few roundings of the slope across the box (a
    saturated tanh's slope 1 - tanh(d)^2 is itself only known to ~1 ulp absolute)."""
    l, u = _boxes()
    a = sshape_relaxation(fn, l, u)
    b = sshape_relaxation(fn, l, u, iters=40)
    ends = torch.maximum(l.abs(), u.abs())
    for k1, k2, b1, b2 in ((a.lower_slope, b.lower_slope, a.lower_bias, b.lower_bias),
                           (a.upper_slope, b.upper_slope, a.upper_bias, b.upper_bias)):
        # the largest gap between the two lines over [l, u], relative to their size there
        gap = (k1 - k2).abs() * ends + (b1 - b2).abs()
        size = 1 + (k2.abs() * ends + b2.abs())
        assert (gap <= 1e-10 * size + 16 * torch.finfo(l.dtype).eps * ends).all()


def test_points_do_not_depend_on_the_batch():
    """A box's envelope point alone and among others is the same number (vectorised tanh / sigmoid may
    differ by an ulp with a tensor's length; the grid absorbs that)."""
    l, u = _boxes(n=30)
    for fn in FNS:
        d_all, _ = lower_envelope_point(fn, l, u)
        d_one = torch.cat([lower_envelope_point(fn, l[i:i + 1], u[i:i + 1])[0] for i in range(0, l.numel(), 7)])
        assert ((d_all[::7] - d_one).abs() <= 1e-9 * (1 + d_one.abs())).all()
        assert (d_all[::7] == d_one).float().mean() > 0.99


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_stacked_calls_equal_separate_calls(fn, dtype):
    """envelope_points == (lower_envelope_point, upper_envelope_point) (up to the ulps in which vectorised
    transcendental kernels differ with a tensor's length, which move a root only as far as h's rounding
    allows); sshape_relaxation == sshape_lines of its slopes and narrowest_parallel == the narrower of the
    two parallel_relaxation pairs, bit for bit."""
    l, u = _boxes(dtype, n=50)
    d_lo, c_lo, d_up, c_up = envelope_points(fn, l, u)
    e_lo, f_lo = lower_envelope_point(fn, l, u)
    e_up, f_up = upper_envelope_point(fn, l, u)
    assert torch.equal(c_lo, f_lo) and torch.equal(c_up, f_up)
    for d1, d2, lo, hi in ((d_lo, e_lo, l, u), (d_up, e_up, -u, -l)):
        need = (lo < 0) & (hi > 0)
        sign = 1.0 if lo is l else -1.0
        noise = _noise(fn, sign * d2[need], hi[need]).nan_to_num(nan=0.0, posinf=1e30)
        assert ((d1 - d2)[need].abs() <= 1e-6 * (1 + d2[need].abs()) + 4 * noise).all()
        assert torch.equal(d1[~need], d2[~need])
    rel = sshape_relaxation(fn, l, u)
    ref = sshape_lines(fn, l, u, *sshape_slopes(fn, l, u))
    for x, y in zip(_parts(rel), _parts(ref)):
        assert torch.equal(x, y)
    par = narrowest_parallel(fn, l, u)
    s, d = parallel_relaxation(fn, l, u, "secant"), parallel_relaxation(fn, l, u, "deepz")
    pick = (d.upper_bias - d.lower_bias) < (s.upper_bias - s.lower_bias)
    for x, ys, yd in zip(_parts(par), _parts(s), _parts(d)):
        assert torch.equal(x, torch.where(pick, yd, ys))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fn", FNS, ids=lambda f: f.name)
def test_newton_lines_sound(fn, dtype):
    """Lines from Newton points bound f on a dense grid of every box (offsets exact whatever d is)."""
    l, u = _boxes(dtype, n=60)
    rel = sshape_relaxation(fn, l, u)
    t = torch.linspace(0, 1, 201, dtype=dtype)
    x = torch.minimum(torch.maximum(l[:, None] + (u - l)[:, None] * t, l[:, None]), u[:, None])
    fx = fn.f(x)
    lo = rel.lower_slope[:, None] * x + rel.lower_bias[:, None]
    hi = rel.upper_slope[:, None] * x + rel.upper_bias[:, None]
    tol = 16 * torch.finfo(dtype).eps * (1 + (rel.lower_slope[:, None] * x).abs() + rel.lower_bias[:, None].abs()
                                         + (rel.upper_slope[:, None] * x).abs() + rel.upper_bias[:, None].abs())
    assert (lo - fx <= tol).all() and (fx - hi <= tol).all()
    assert all(torch.isfinite(v).all() for v in _parts(rel))


def test_offsets_of_stacked_slopes_broadcast():
    """exact_offsets with slopes (2, n) and bounds (n,) gives each row's offsets (the one-call form)."""
    l, u = _boxes(n=20)
    k = torch.stack([torch.full_like(l, 0.3), torch.full_like(l, 0.9)])
    lo, hi = exact_offsets(TANH, k, l, u)
    for i in range(2):
        a, b = exact_offsets(TANH, k[i], l, u)
        assert torch.equal(lo[i], a) and torch.equal(hi[i], b)
