"""Concretisation over a plain L-inf ball (eps ||A||_1, one fused reduction) agrees with the box form
(|A| . r through a batched product, taken when a clip box or a scale is present), and both contain the
values of sampled points of the ball."""
from __future__ import annotations

import torch

from certnn.specs.lp import LpBall


def test_plain_linf_ball_matches_box_form_and_samples():
    g = torch.Generator().manual_seed(0)
    B, S, n = 3, 5, 40
    c = torch.randn(B, n, dtype=torch.float64, generator=g)
    eps = torch.tensor([0.0, 0.01, 0.3], dtype=torch.float64)
    A = torch.randn(B, S, n, dtype=torch.float64, generator=g)
    bias = torch.randn(B, S, dtype=torch.float64, generator=g)
    plain = LpBall.make(c, eps, "inf")
    boxed = LpBall.make(c, eps, "inf", clip=(-1e6, 1e6))  # a clip that cuts nothing: the box form
    for side in ("lower", "upper"):
        a, b = plain.concretize(A, bias, side), boxed.concretize(A, bias, side)
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    lo, hi = plain.concretize(A, bias, "lower"), plain.concretize(A, bias, "upper")
    z = (2 * torch.rand(200, B, n, dtype=torch.float64, generator=g) - 1).sign()  # vertices, the extremes
    vals = torch.einsum("bsn,kbn->kbs", A, c + eps[:, None] * z) + bias
    assert (vals >= lo - 1e-12).all() and (vals <= hi + 1e-12).all()
    assert torch.equal(lo[0], hi[0])  # eps 0: a point
