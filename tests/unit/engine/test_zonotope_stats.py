"""engine/zonotope_stats.py: radius and magnitude of zonotopes with several L2 / L1 groups (per-frame
balls: adjacent groups of one size, merged into one reshaped norm), groups of other sizes or norms,
independent symbols before, between and after them, and groups partly pruned: the same numbers as the
group-by-group definition (Zonotope.radius) to ~1e-15 relative."""
from __future__ import annotations

import torch

from certnn.domains.symbols import SymbolTable
from certnn.domains.zonotope import Zonotope
from certnn.engine.zonotope_stats import group_runs, radius_and_magnitude


def _zonotope(seed: int, drop: bool = False) -> Zonotope:
    g = torch.Generator().manual_seed(seed)
    t = SymbolTable()
    parts = [t.fresh(3, label="relax")]
    parts += [t.fresh(5, norm="2", label="input") for _ in range(4)]  # four frames of one size
    parts += [t.fresh(4, label="relax"), t.fresh(5, norm="1", label="input"), t.fresh(6, norm="2", label="input")]
    parts += [t.fresh(5, norm="2", label="input"), t.fresh(7, label="relax")]
    ids = torch.cat(parts)
    if drop:  # pruned symbols: one group loses two of its ids
        keep = torch.ones_like(ids, dtype=torch.bool)
        keep[[5, 6]] = False
        ids = ids[keep]
    B, shape = 3, (2, 4)
    G = torch.randn(B, ids.numel(), *shape, generator=g, dtype=torch.float64)
    c = torch.randn(B, *shape, generator=g, dtype=torch.float64)
    return Zonotope(c, G, ids, t)


def test_stats_equal_group_by_group():
    for seed in range(3):
        for drop in (False, True):
            z = _zonotope(seed, drop)
            r, mag = radius_and_magnitude(z)
            ref_r = z.radius()
            ref_mag = z.center.abs() + z.generators.abs().sum(1)
            assert torch.allclose(r, ref_r, rtol=1e-14, atol=0)
            assert torch.allclose(mag, ref_mag, rtol=1e-14, atol=0)


def test_runs_merge_adjacent_groups_of_one_size_and_norm():
    runs = group_runs(_zonotope(0))
    assert runs[0] == (3, 23, 4, 2.0)  # the four frames: one reshaped norm
    assert [r[2] for r in runs[1:]] == [1, 1, 1]  # L1 group, a 6-long L2 group, a 5-long one after it
    # a pruned group breaks the run where its length differs
    assert group_runs(_zonotope(0, drop=True))[0] == (3, 6, 1, 2.0)


def test_no_groups_and_no_symbols():
    t = SymbolTable()
    c = torch.randn(2, 3, dtype=torch.float64)
    z0 = Zonotope(c, c.new_zeros(2, 0, 3), torch.zeros(0, dtype=torch.int64), t)
    r, mag = radius_and_magnitude(z0)
    assert torch.equal(r, torch.zeros_like(c)) and torch.equal(mag, c.abs())
    ids = t.fresh(4)
    G = torch.randn(2, 4, 3, dtype=torch.float64)
    r, mag = radius_and_magnitude(Zonotope(c, G, ids, t))
    assert torch.allclose(r, G.abs().sum(1), rtol=1e-15) and torch.allclose(mag, c.abs() + G.abs().sum(1), rtol=1e-15)
