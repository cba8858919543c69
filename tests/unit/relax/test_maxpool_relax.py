"""Relaxation level for max over a window: lower <= max <= upper on the box (uniform, vertices, points
where one input sits at its bound), for zero-width boxes, ties, padding (-inf) entries, scales 1e-3..1e8,
float32 and float64; exact when one input dominates; never looser than the constant max_i u_i."""
from __future__ import annotations

import pytest
import torch

from certnn.relax.maxpool import max_relaxation


def _boxes(kind: str, scale: float, dtype, g):
    n, K = 400, 4
    c = torch.randn(n, K, generator=g, dtype=torch.float64) * scale
    r = torch.rand(n, K, generator=g, dtype=torch.float64) * scale
    if kind == "zero_width":
        r = torch.where(torch.rand(n, K, generator=g) < 0.5, torch.zeros_like(r), r)
        r[:50] = 0.0
    elif kind == "ties":
        c = (c / scale).round() * scale
        r = torch.where(torch.rand(n, K, generator=g) < 0.5, torch.full_like(r, 0.5 * scale), torch.zeros_like(r))
    elif kind == "dominated":
        c[:, 0] += 5 * scale
        r = r * 0.2
    l, u = (c - r).to(dtype), (c + r).to(dtype)
    if kind == "padding":
        l[:, -1] = -torch.inf
        u[:, -1] = -torch.inf
        l[:10, 1:] = -torch.inf
        u[:10, 1:] = -torch.inf
    return l, u


def _points(l, u, g):
    n, K = l.shape
    fl = torch.where(torch.isfinite(l), l, torch.zeros_like(l))
    fu = torch.where(torch.isfinite(u), u, torch.zeros_like(u))
    t = torch.rand(n, 300, K, generator=g, dtype=torch.float64).to(l.dtype)
    t[:, :100] = (t[:, :100] < 0.5).to(l.dtype)  # vertices
    t[:, 100:150] = t[:, 100:150].round(decimals=1)  # grid-ish points (edges)
    x = fl.unsqueeze(1) + t * (fu - fl).unsqueeze(1)
    pad = ~torch.isfinite(l)
    x = torch.where(pad.unsqueeze(1), torch.full_like(x, -torch.inf), x)
    return x.transpose(0, 1)  # (points, n, K)


@pytest.mark.parametrize("kind", ["random", "zero_width", "ties", "dominated", "padding"])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3, 1e8])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_max_relaxation_sound(kind, scale, dtype):
    g = torch.Generator().manual_seed(int(scale) % 97 + len(kind))
    l, u = _boxes(kind, scale, dtype, g)
    rel = max_relaxation(l, u)
    x = _points(l, u, g)
    y = x.max(-1).values
    lo, hi = rel.evaluate(x)
    assert (lo <= y).all(), "lower line above the max"
    assert (hi >= y).all(), "upper line below the max"
    # never looser than DeepPoly's constant upper bound max_i u_i (up to the rounding margin)
    xk_hi = u.gather(-1, rel.upper_index.unsqueeze(-1)).squeeze(-1)
    line_max = rel.upper_slope * xk_hi + rel.upper_bias
    umax = u.max(-1).values
    assert (line_max <= umax + 64 * torch.finfo(dtype).eps * (1 + umax.abs() + torch.where(torch.isfinite(l), l, torch.zeros_like(l)).abs().amax(-1))).all()


def test_exact_when_dominated_and_point_box():
    l = torch.tensor([[2.0, -1.0, 0.5], [1.0, 1.0, 1.0]], dtype=torch.float64)
    u = torch.tensor([[3.0, 1.5, 2.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    rel = max_relaxation(l, u)
    assert rel.lower_index.tolist()[0] == 0 and rel.upper_index.tolist()[0] == 0
    assert rel.upper_slope.tolist() == [1.0, 1.0] and rel.upper_bias.tolist() == [0.0, 0.0]
    x = torch.tensor([[2.5, 1.0, 1.9], [1.0, 1.0, 1.0]], dtype=torch.float64)
    lo, hi = rel.evaluate(x)
    assert lo.tolist() == hi.tolist() == [2.5, 1.0]


def test_overlapping_upper_line_is_the_chord_of_max_xk_u2():
    """k = 0 (u = 3), u2 = 2, l_k = 0: the line runs from (0, 2) to (3, 3) in x_k, plus a few ulps."""
    l = torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64)
    u = torch.tensor([[3.0, 2.0, 0.5]], dtype=torch.float64)
    rel = max_relaxation(l, u)
    assert int(rel.upper_index) == 0 and int(rel.lower_index) == 1
    assert abs(float(rel.upper_slope) - 1 / 3) < 1e-15
    assert 2.0 <= float(rel.upper_bias) < 2.0 + 1e-12
