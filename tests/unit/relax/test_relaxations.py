"""Relaxation level: lower <= f <= upper on dense grids, endpoints and random points of many intervals,
including l == u, intervals on one side of the inflection point, and scales from 1e-3 to 1e8."""
from __future__ import annotations

import pytest
import torch

from certnn.relax import (ARCTAN, SIGMOID, TANH, hardtanh_relaxation, leaky_relu_relaxation, parallel_relaxation,
                          relu_relaxation, sshape_relaxation)


def _intervals(dtype, n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([1e-3, 1e-1, 1.0, 3.0, 10.0, 1e3, 1e8], dtype=dtype)
    ls, us = [], []
    for s in scales:
        a = (torch.rand(n, generator=g, dtype=dtype) * 2 - 1) * s
        b = (torch.rand(n, generator=g, dtype=dtype) * 2 - 1) * s
        ls.append(torch.minimum(a, b)); us.append(torch.maximum(a, b))
        ls.append(a.abs() * 0.5); us.append(a.abs())              # entirely positive
        ls.append(-a.abs()); us.append(-a.abs() * 0.5)            # entirely negative
        ls.append(a); us.append(a.clone())                        # zero width
    extra_l = torch.tensor([0.0, -1.0, 0.0, -5.0, 2.0, -1e-12, -20.0, -40.0], dtype=dtype)
    extra_u = torch.tensor([0.0, 0.0, 1.0, -5.0, 2.0, 1e-12, 0.5, 40.0], dtype=dtype)
    return torch.cat(ls + [extra_l]), torch.cat(us + [extra_u])


def _points(l, u, k=257):
    t = torch.linspace(0, 1, k, dtype=l.dtype)
    grid = l[:, None] + (u - l)[:, None] * t[None, :]
    rnd = l[:, None] + (u - l)[:, None] * torch.rand(l.shape[0], 64, dtype=l.dtype)
    return torch.cat([grid, rnd, l[:, None], u[:, None]], dim=1).clamp(l[:, None], u[:, None])


def _check(rel, f, l, u, dtype):
    x = _points(l, u)
    fx = f(x)
    lo = rel.lower_slope[:, None] * x + rel.lower_bias[:, None]
    hi = rel.upper_slope[:, None] * x + rel.upper_bias[:, None]
    # evaluation of the line itself rounds; allow that rounding only (a few ulps of the terms)
    tol = 16 * torch.finfo(dtype).eps * (1 + (rel.lower_slope[:, None] * x).abs() + rel.lower_bias[:, None].abs()
                                         + (rel.upper_slope[:, None] * x).abs() + rel.upper_bias[:, None].abs())
    bad_lo = (lo - fx > tol)
    bad_hi = (fx - hi > tol)
    assert not bad_lo.any(), f"lower bound above f at l={l[bad_lo.any(1)][:3]}, u={u[bad_lo.any(1)][:3]}"
    assert not bad_hi.any(), f"upper bound below f at l={l[bad_hi.any(1)][:3]}, u={u[bad_hi.any(1)][:3]}"
    assert torch.isfinite(rel.lower_slope).all() and torch.isfinite(rel.upper_bias).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fn", [SIGMOID, TANH, ARCTAN], ids=lambda f: f.name)
@pytest.mark.parametrize("rule", ["blend", "min-area", "crown"])
def test_sshape_lines_sound(fn, dtype, rule):
    l, u = _intervals(dtype)
    _check(sshape_relaxation(fn, l, u, rule=rule), fn.f, l, u, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fn", [SIGMOID, TANH, ARCTAN], ids=lambda f: f.name)
@pytest.mark.parametrize("slope", ["secant", "deepz"])
def test_sshape_parallel_sound(fn, dtype, slope):
    l, u = _intervals(dtype, seed=1)
    _check(parallel_relaxation(fn, l, u, slope), fn.f, l, u, dtype)


@pytest.mark.parametrize("mode", ["adaptive", "parallel", "zero"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_relu_sound(mode, dtype):
    l, u = _intervals(dtype, seed=2)
    _check(relu_relaxation(l, u, mode), torch.relu, l, u, dtype)


@pytest.mark.parametrize("a", [0.0, 0.01, 0.3, 1.0])
def test_leaky_relu_sound(a):
    l, u = _intervals(torch.float64, seed=3)
    _check(leaky_relu_relaxation(l, u, a), lambda x: torch.nn.functional.leaky_relu(x, a), l, u, torch.float64)


def test_hardtanh_sound():
    l, u = _intervals(torch.float64, seed=4)
    _check(hardtanh_relaxation(l, u), lambda x: x.clamp(-1, 1), l, u, torch.float64)


def test_tight_points_touch():
    """Designed tight points touch: CROWN's chord meets f at both ends in the convex region; the tangent
    touches at the midpoint; the crossing-case upper line passes through (l, f(l))."""
    l = torch.tensor([-3.0, 0.5, -2.0], dtype=torch.float64)
    u = torch.tensor([-1.0, 2.5, 3.0], dtype=torch.float64)
    rel = sshape_relaxation(TANH, l, u, rule="crown")
    f = torch.tanh
    # convex case: upper chord through both ends
    assert torch.allclose(rel.upper_slope[0] * l[0] + rel.upper_bias[0], f(l[0]), atol=1e-12)
    assert torch.allclose(rel.upper_slope[0] * u[0] + rel.upper_bias[0], f(u[0]), atol=1e-12)
    # concave case: upper tangent at the midpoint
    m = (l[1] + u[1]) / 2
    assert torch.allclose(rel.upper_slope[1] * m + rel.upper_bias[1], f(m), atol=1e-12)
    # crossing case: upper line through (l, f(l)), lower through (u, f(u))
    assert torch.allclose(rel.upper_slope[2] * l[2] + rel.upper_bias[2], f(l[2]), atol=1e-9)
    assert torch.allclose(rel.lower_slope[2] * u[2] + rel.lower_bias[2], f(u[2]), atol=1e-9)


def test_relu_modes_match_papers():
    l = torch.tensor([-1.0, -3.0, 0.0, -2.0, 1.0], dtype=torch.float64)
    u = torch.tensor([3.0, 1.0, 2.0, -1.0, 1.0], dtype=torch.float64)
    fl = relu_relaxation(l, u, "parallel")
    cr = relu_relaxation(l, u, "adaptive")
    assert torch.allclose(fl.upper_slope, torch.tensor([0.75, 0.25, 1.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(fl.lower_slope, fl.upper_slope)
    assert torch.allclose(cr.lower_slope, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(cr.upper_bias, torch.tensor([0.75, 0.75, 0.0, 0.0, 0.0], dtype=torch.float64))
