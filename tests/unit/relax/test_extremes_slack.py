"""The interior stationary points of sigma(x) tanh(y) - A x - B y are found by bisection to a bracket; the
returned slack must cover the gap to the true extremes whatever the number of steps (few steps: a wide
bracket and a large slack; the default: a slack at the ulp level)."""
from __future__ import annotations

import pytest
import torch

from certnn.relax.product_extremes import BISECT_ITERS, sigmoid_tanh_extremes


def _boxes(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(4, n, generator=g, dtype=torch.float64) * 3
    w = torch.rand(4, n, generator=g, dtype=torch.float64) * 4
    lx, ly = c[0], c[1]
    ux, uy = lx + w[0], ly + w[1]
    A = torch.rand(n, generator=g, dtype=torch.float64) * 0.3 - 0.05
    B = torch.rand(n, generator=g, dtype=torch.float64) * 0.9 + 0.01  # B > 0: interior points exist
    return A, B, lx, ux, ly, uy


def _grid_extremes(A, B, lx, ux, ly, uy, k: int = 401):
    t = torch.linspace(0, 1, k, dtype=torch.float64)
    X = lx[:, None, None] + (ux - lx)[:, None, None] * t[None, :, None]
    Y = ly[:, None, None] + (uy - ly)[:, None, None] * t[None, None, :]
    G = torch.sigmoid(X) * torch.tanh(Y) - A[:, None, None] * X - B[:, None, None] * Y
    return G.flatten(1).amin(1), G.flatten(1).amax(1)


@pytest.mark.parametrize("iters", [2, 6, 12, BISECT_ITERS])
def test_slack_covers_the_bracket(iters):
    A, B, lx, ux, ly, uy = _boxes(300, iters)
    e = sigmoid_tanh_extremes(A, B, lx, ux, ly, uy, iters=iters)
    gmin, gmax = _grid_extremes(A, B, lx, ux, ly, uy)
    tol = 1e-12
    assert bool((e.lo - e.slack <= gmin + tol).all())
    assert bool((e.hi + e.slack >= gmax - tol).all())


def test_few_steps_need_slack_and_the_default_needs_almost_none():
    A, B, lx, ux, ly, uy = _boxes(300, 0)
    rough = sigmoid_tanh_extremes(A, B, lx, ux, ly, uy, iters=2)
    gmin, gmax = _grid_extremes(A, B, lx, ux, ly, uy)
    # with 2 steps the candidates alone miss some extremes: the slack is what keeps them sound
    assert bool(((rough.hi < gmax - 1e-9) | (rough.lo > gmin + 1e-9)).any())
    fine = sigmoid_tanh_extremes(A, B, lx, ux, ly, uy)
    assert float(torch.as_tensor(fine.slack).max()) < 1e-12
