"""optimize/lines.selected_sshape_lines: S-shaped lines whose intercepts are computed only where a
lower-bound backward pass uses them (the lower line's where the coefficient is > 0, the upper line's where
<= 0, the lower one also at 0 when the coefficient needs a gradient). Against tied_sshape_lines (both
intercepts everywhere): the same intercepts where used, the same bound terms pos * b_l + neg * b_u and
the same gradients in the slopes, the bounds and the coefficients."""
from __future__ import annotations

import pytest
import torch

from certnn.optimize.lines import selected_sshape_lines, tied_sshape_lines
from certnn.relax import SSHAPES

torch.set_num_threads(1)


def _case(seed: int, B: int = 3, S: int = 6, n: int = 50):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    l = r(B, 1, n) * 8 - 5
    u = l + r(B, 1, n) * 4
    u[..., :5] = l[..., :5]  # zero-width boxes: the candidates tie
    k_lo, k_up = r(B, S, n) * 1.1, r(B, S, n) * 1.1
    coef = torch.randn(B, S, n, generator=g, dtype=torch.float64)
    coef = torch.where(r(B, S, n) < 0.2, torch.zeros_like(coef), coef)
    return [l, u, k_lo, k_up], coef


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "arctan"])
@pytest.mark.parametrize("coef_grad", [False, True])
def test_selected_intercepts_give_the_same_bound_and_gradients(name, coef_grad):
    ts, coef = _case(seed=len(name) + coef_grad)
    out = []
    for which in ("both", "selected"):
        leaves = [t.clone().requires_grad_(True) for t in ts]
        c = coef.clone().requires_grad_(coef_grad)
        rel = (tied_sshape_lines(SSHAPES[name], *leaves) if which == "both"
               else selected_sshape_lines(SSHAPES[name], *leaves, c))
        value = (c.clamp(min=0) * rel.lower_bias + c.clamp(max=0) * rel.upper_bias).sum()
        value.backward()
        out.append((value.detach(), rel, [t.grad for t in leaves] + ([c.grad] if coef_grad else [])))
    (v0, r0, g0), (v1, r1, g1) = out
    assert torch.equal(v0, v1)
    for a, b in zip(g0, g1):
        assert float(((a - b).abs() / (1 + a.abs())).max()) <= 1e-13
    used_l = coef >= 0 if coef_grad else coef > 0
    assert torch.equal(r0.lower_bias.detach()[used_l], r1.lower_bias.detach()[used_l])
    assert torch.equal(r0.upper_bias.detach()[coef <= 0], r1.upper_bias.detach()[coef <= 0])
    assert bool((r1.lower_bias.detach()[~used_l] == 0).all()) and bool((r1.upper_bias.detach()[coef > 0] == 0).all())
