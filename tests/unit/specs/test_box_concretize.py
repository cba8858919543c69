"""specs/box_concretize.py: the L-inf ball's concretisation with a lean backward gives autograd's values
and gradients bit for bit, and keeps sgn(A) as int8 instead of A."""
from __future__ import annotations

import torch

from certnn.specs.box_concretize import box_concretize


def _plain(Af, c, scale):
    return torch.bmm(Af, c).squeeze(-1) + scale * torch.linalg.vector_norm(Af, 1, dim=-1)


def _case(seed: int):
    gen = torch.Generator().manual_seed(seed)
    Af = torch.randn(3, 5, 40, dtype=torch.float64, generator=gen)
    Af[0, 1, :7] = 0.0  # zeros: sgn 0, as autograd's norm backward
    c = torch.randn(3, 40, 1, dtype=torch.float64, generator=gen)
    scale = torch.tensor([[-0.1], [0.0], [-2.5]], dtype=torch.float64)
    w = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    return Af, c, scale, w


def test_values_and_gradients_are_autograds():
    for seed in range(3):
        Af, c, scale, w = _case(seed)
        a1 = Af.clone().requires_grad_(True)
        a2 = Af.clone().requires_grad_(True)
        v1, v2 = box_concretize(a1, c, scale), _plain(a2, c, scale)
        assert torch.equal(v1, v2)
        (v1 * w).sum().backward()
        (v2 * w).sum().backward()
        assert torch.equal(a1.grad, a2.grad)


def test_keeps_a_one_byte_sign_not_the_coefficients():
    Af, c, scale, _ = _case(0)
    a = Af.clone().requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        box_concretize(a, c, scale)
    assert all(t.dtype == torch.int8 or t.numel() < a.numel() for t in saved)
    assert any(t.dtype == torch.int8 and t.shape == a.shape for t in saved)


def test_without_gradient_or_with_a_center_that_needs_one():
    Af, c, scale, w = _case(1)
    assert torch.equal(box_concretize(Af, c, scale), _plain(Af, c, scale))
    c1 = c.clone().requires_grad_(True)  # e.g. verified training through the input: autograd's own graph
    c2 = c.clone().requires_grad_(True)
    (box_concretize(Af, c1, scale) * w).sum().backward()
    (_plain(Af, c2, scale) * w).sum().backward()
    assert torch.equal(c1.grad, c2.grad)
