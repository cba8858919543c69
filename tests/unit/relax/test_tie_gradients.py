"""Relaxation level: the gradients of product-plane offsets (used by alpha-CROWN's optimiser) do not jump
when box bounds or tilts move by a few ulps. Values are exact extremes either way; before, the gradient
followed whichever of two tied candidates rounding made the extreme, or passed all / half / none of it to
a box face depending on the last digit of a clipped stationary point, so a sample alone and in a batch
(different rounding) took different optimisation paths (GRU alpha-CROWN bounds differing by 4e-4)."""
from __future__ import annotations

import pytest
import torch

from certnn.relax.product_extremes import _candidate, sigmoid_mul_extremes, sigmoid_tanh_extremes
from certnn.relax.products import tilted_planes
from certnn.relax.ties import tie_averaged

EPS = torch.finfo(torch.float64).eps


def test_candidate_on_a_face_takes_its_whole_gradient_whatever_the_last_digit():
    l = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    u = l + 1.0
    for k in range(-4, 5):
        for face, other in (("l", "u"), ("u", "l")):
            lt, ut = l.clone().requires_grad_(True), u.clone().requires_grad_(True)
            base = l if face == "l" else u
            v = base + k * EPS * (1 + base.abs())
            out = _candidate(v, lt, ut)
            assert torch.equal(out.detach(), torch.minimum(torch.maximum(v, l), u))
            out.sum().backward()
            g = {"l": lt.grad, "u": ut.grad}
            assert torch.equal(g[face], torch.ones_like(l)), (face, k)
            assert torch.equal(g[other], torch.zeros_like(l)), (face, k)
    lt, ut = l.clone().requires_grad_(True), u.clone().requires_grad_(True)
    _candidate((l + u) / 2, lt, ut).sum().backward()  # well inside: the point does not move with the box
    assert torch.equal(lt.grad, torch.zeros_like(l)) and torch.equal(ut.grad, torch.zeros_like(u))


def _grads(fn, A, B, box):
    leaves = [t.clone().requires_grad_(True) for t in (A, B) + box]
    e = fn(*leaves)
    (e.lo.sum() + e.hi.sum()).backward()
    return torch.stack([t.grad for t in leaves]), e


@pytest.mark.parametrize("fn", [sigmoid_mul_extremes, sigmoid_tanh_extremes])
def test_extremes_gradients_do_not_follow_rounding_at_ties(fn):
    """B = sigma(lx): for sigma(x) y the edge x = lx is flat (its two corners tie exactly) and the interior
    saddle sits on that edge; for sigma(x) tanh(y) an interior piece starts at lx. Moving B by a few ulps
    must move the gradients by rounding only."""
    g = torch.Generator().manual_seed(0)
    n = 2000
    r = lambda: torch.rand(n, dtype=torch.float64, generator=g)  # noqa: E731
    lx = r() * 6 - 4
    box = (lx, lx + r() * 3, r() * 4 - 1, None)
    box = box[:3] + (box[2] + r() * 3,)
    A, B = r() * 0.5 - 0.25, torch.sigmoid(lx)
    G0, e0 = _grads(fn, A, B, box)
    for k in (-4, -2, -1, 1, 2, 4):
        G, e = _grads(fn, A, B * (1 + k * EPS), box)
        assert (e.lo - e0.lo).abs().max() <= 1e-14 and (e.hi - e0.hi).abs().max() <= 1e-14
        assert (G - G0).abs().max() <= 1e-9, k


def test_mul_planes_corner_ties_share_the_gradient():
    """x*y planes with given tilts: with A = (ly + uy)/2, B = (lx + ux)/2 two corners of the residual tie
    exactly; the offsets' gradient is their mean, the same after an ulp's change of the tilt."""
    lx, ux, ly, uy = (torch.tensor([v], dtype=torch.float64) for v in (-1.0, 2.0, -0.5, 1.5))
    grads = []
    for k in (-1, 0, 1):
        A = ((ly + uy) / 2 * (1 + k * EPS)).requires_grad_(True)
        B = ((lx + ux) / 2).requires_grad_(True)
        pl = tilted_planes("mul", A, B, A, B, lx, ux, ly, uy)
        (pl.lower_c + pl.upper_c).sum().backward()
        grads.append(torch.cat([A.grad, B.grad]))
    assert (grads[0] - grads[1]).abs().max() <= 1e-9 and (grads[2] - grads[1]).abs().max() <= 1e-9


def test_tie_averaged_keeps_the_value_and_averages_tied_gradients():
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    cands = torch.stack([a[0] * 3.0, a[1] * 1.5, a[0] + 5.0])  # 3, 3, 6: the first two tie
    v = tie_averaged(cands.amin(0) - 0.25, cands, "min")
    assert v.item() == 2.75
    v.backward()
    assert torch.allclose(a.grad, torch.tensor([1.5, 0.75], dtype=torch.float64))
