"""Conjunctions proved jointly from their rows' linear lower bounds (certify/conjunctions.py)."""
from __future__ import annotations

import torch

from certnn.certify.conjunctions import combined_lower


def test_proves_what_no_single_row_can():
    # g1 = x + 0.5, g2 = -x + 0.5 on [-1, 1]: each row alone is -0.5 at worst, their max is >= 0.5
    A = torch.tensor([[[1.0], [-1.0]]], dtype=torch.float64)
    c = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    lo, hi = torch.tensor([[-1.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    v = combined_lower(A, c, lo, hi, torch.ones(1, 2, dtype=torch.bool))
    assert 0.45 < float(v) <= 0.5 + 1e-12


def test_sound_on_random_boxes_and_never_above_the_lp_value():
    g = torch.Generator().manual_seed(0)
    N, S, n = 200, 4, 3
    A = torch.randn(N, S, n, generator=g, dtype=torch.float64)
    c = torch.randn(N, S, generator=g, dtype=torch.float64)
    lo = -torch.rand(N, n, generator=g, dtype=torch.float64)
    hi = torch.rand(N, n, generator=g, dtype=torch.float64)
    rows = torch.rand(N, S, generator=g) < 0.7
    rows[:, 0] = True
    v = combined_lower(A, c, lo, hi, rows)
    x = lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * torch.rand(N, 5000, n, generator=g, dtype=torch.float64)
    vals = torch.einsum("nsi,nki->nks", A, x) + c.unsqueeze(1)
    vals = torch.where(rows.unsqueeze(1), vals, torch.full_like(vals, -torch.inf))
    sampled_min = vals.amax(2).amin(1)  # >= the true min over the box
    assert (v <= sampled_min + 1e-9).all()
    # at least as good as the best single row
    single = (torch.einsum("nsi,ni->ns", A, (lo + hi) / 2) - torch.einsum("nsi,ni->ns", A.abs(), (hi - lo) / 2) + c)
    single = torch.where(rows, single, torch.full_like(single, -torch.inf)).amax(1)
    assert (v >= single - 1e-3 * (1 + single.abs())).float().mean() > 0.9
