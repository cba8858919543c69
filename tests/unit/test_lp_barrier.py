"""benchmarks/lp_barrier.py's LP-all, the ceiling it puts on alpha-CROWN's radius: on tiny random ReLU nets it
certifies wherever alpha-crown certifies (LP-all >= alpha-CROWN), and never where MILP (exact) finds the
property false (a relaxation of the exact problem)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import certnn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
lp_barrier = pytest.importorskip("lp_barrier")
pytest.importorskip("highspy")


@pytest.mark.parametrize("seed", range(3))
def test_lp_all_between_alpha_crown_and_milp(seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    y = m(x).argmax(1)
    lins = [l for l in m if isinstance(l, nn.Linear)]
    lp = lp_barrier.LpAll([l.weight.detach().numpy() for l in lins], [l.bias.detach().numpy() for l in lins])
    ra = certnn.certified_radius(m, x, y, norm="inf", method="alpha-crown").certified_radius
    for i in range(3):
        if ra[i] <= 0:
            continue
        assert lp.certified(x[i].numpy(), float(ra[i]), int(y[i]))
        r, _ = lp_barrier.lp_radius(lp, x[i].numpy(), int(y[i]), float(ra[i]), 5)
        assert r >= float(ra[i])
        exact = certnn.certify(m, x[i:i + 1], y[i:i + 1], r, norm="inf", method="milp").certified
        assert bool(exact[0])  # LP-all's radius is a proved one: the exact problem holds there too
