"""relax.product_select: product planes whose offsets are computed only where a lower-bound backward pass
uses them (lower where the coefficient is > 0, upper where <= 0, and the lower one too at 0 when the
coefficient needs a gradient). Against relax.products.tilted_planes (both offsets everywhere): the same offsets where used, the
same bound terms pos * c_l + neg * c_u and the same gradients in the tilts, the box and the coefficients."""
from __future__ import annotations

import pytest
import torch

from certnn.relax.product_select import selected_tilted_planes
from certnn.relax.products import tilted_planes

torch.set_num_threads(1)


def _case(kind: str, seed: int, B: int = 3, S: int = 5, n: int = 40):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    lx = r(B, 1, n) * 6 - 3
    ly = r(B, 1, n) * 4 - 2
    ux, uy = lx + r(B, 1, n) * 2, ly + r(B, 1, n) * 2
    Al, Au = r(B, S, n) * 0.3 - 0.05, r(B, S, n) * 0.3 - 0.05
    Bl, Bu = r(B, S, n) * 0.9, r(B, S, n) * 0.9
    coef = torch.randn(B, S, n, generator=g, dtype=torch.float64)
    coef = torch.where(r(B, S, n) < 0.2, torch.zeros_like(coef), coef)  # exact zeros, as structural rows have
    return [Al, Bl, Au, Bu, lx, ux, ly, uy], coef


def _bound(planes, kind, ts, coef):
    pl = planes(kind, *ts) if planes is tilted_planes else planes(kind, *ts, coef)
    pos, neg = coef.clamp(min=0), coef.clamp(max=0)
    return (pos * pl.lower_c + neg * pl.upper_c).sum(), pl


@pytest.mark.parametrize("kind", ["sigmoid_tanh_mul", "sigmoid_mul"])
@pytest.mark.parametrize("coef_grad", [False, True])
def test_selected_offsets_give_the_same_bound_and_gradients(kind, coef_grad):
    ts, coef = _case(kind, seed=len(kind) + coef_grad)
    out = []
    for planes in (tilted_planes, selected_tilted_planes):
        leaves = [t.clone().requires_grad_(True) for t in ts]
        c = coef.clone().requires_grad_(coef_grad)
        value, pl = _bound(planes, kind, leaves, c)
        value.backward()
        grads = [t.grad for t in leaves] + ([c.grad] if coef_grad else [])
        out.append((value.detach(), pl, grads))
    (v0, p0, g0), (v1, p1, g1) = out
    assert abs(float(v0 - v1)) <= 1e-12 * (1 + abs(float(v0)))
    for a, b in zip(g0, g1):
        assert float(((a - b).abs() / (1 + a.abs())).max()) <= 1e-10
    used_l = coef >= 0 if coef_grad else coef > 0
    used_u = coef <= 0  # at 0 the upper side is computed either way (one side per element)
    assert float((p0.lower_c - p1.lower_c).detach()[used_l].abs().max()) <= 1e-13
    assert float((p0.upper_c - p1.upper_c).detach()[used_u].abs().max()) <= 1e-13
    assert bool((p1.lower_c.detach()[~used_l] == 0).all()) and bool((p1.upper_c.detach()[~used_u] == 0).all())


def test_plain_products_keep_both_offsets():
    ts, coef = _case("mul", seed=3)
    p0, p1 = tilted_planes("mul", *ts), selected_tilted_planes("mul", *ts, coef)
    assert torch.equal(p0.lower_c, p1.lower_c) and torch.equal(p0.upper_c, p1.upper_c)
