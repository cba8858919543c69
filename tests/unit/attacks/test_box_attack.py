"""PGD on boxes for VNN-LIB falsification: iterates stay in the box, zero-width inputs never move, and
the minimum of a linear objective is reached at the right vertex."""
from __future__ import annotations

import math

import torch

from certnn.attacks.box import box_objective, minimize_on_boxes


def test_linear_minimum_at_vertex_and_box_respected():
    W = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)

    def fn(x):
        return x @ W.T

    lo = torch.tensor([[-1.0, 0.0, 0.3], [0.0, -1.0, 0.3]], dtype=torch.float64)
    hi = torch.tensor([[1.0, 2.0, 0.3], [0.5, 1.0, 0.3]], dtype=torch.float64)  # X_2 has zero width
    C = torch.ones(2, 2, 1, dtype=torch.float64)
    d = torch.tensor([[0.0, math.inf], [0.0, math.inf]], dtype=torch.float64)  # second row is padding
    x, v = minimize_on_boxes(fn, lo, hi, C, d, steps=40, restarts=3, seed=1)
    assert ((x >= lo) & (x <= hi)).all()
    assert torch.equal(x[:, 2], lo[:, 2])
    exact = torch.tensor([-1 - 4 + 0.15, 0 - 2 + 0.15], dtype=torch.float64)
    assert torch.allclose(v, exact, atol=1e-9)
    assert torch.allclose(box_objective(fn, x, C, d), v)
