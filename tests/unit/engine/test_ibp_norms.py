"""IBP under L2 / L1 balls: the first affine block is bounded exactly over the ball (not its bounding box),
including slices, reshapes, normalisation and feature masks before the first Linear layer."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.testing import check_bounds_contain, sample_ball


class SliceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):  # x: (B, 2, 5) -> a slice of 6 features, then Linear
        return self.fc(x[:, :, 1:4].reshape(-1, 6) * 2.0 - 1.0)


@pytest.mark.parametrize("norm,q", [("2", 2.0), ("1", float("inf"))])
def test_single_linear_layer_is_exact(norm, q):
    torch.manual_seed(0)
    lin = nn.Linear(7, 4).double()
    x = torch.randn(3, 7, dtype=torch.float64)
    iv = certnn.compute_bounds(lin, x, eps=0.3, norm=norm, method="ibp")
    mid = lin(x).detach()
    rad = 0.3 * torch.linalg.vector_norm(lin.weight.detach(), ord=q, dim=1)
    assert torch.allclose(iv.lower, mid - rad, atol=1e-12)
    assert torch.allclose(iv.upper, mid + rad, atol=1e-12)


@pytest.mark.parametrize("norm,q", [("2", 2.0), ("1", float("inf"))])
@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
def test_slice_reshape_scale_before_first_linear_exact(norm, q, method):
    torch.manual_seed(1)
    net = SliceNet().double()
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    iv = certnn.compute_bounds(net, x, eps=0.2, norm=norm, method=method)
    # exact: the map is fc(2 * S x - 1) with S a selection of 6 of the 10 features
    W = net.fc.weight.detach() * 2.0
    rad = 0.2 * torch.linalg.vector_norm(W, ord=q, dim=1)
    mid = net(x).detach()
    assert torch.allclose(iv.lower, mid - rad, atol=1e-12)
    assert torch.allclose(iv.upper, mid + rad, atol=1e-12)


@pytest.mark.parametrize("norm", ["2", "1"])
def test_ibp_l2_l1_sound_and_tighter_than_box(norm):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.Tanh(),
                        nn.Linear(8, 3)).double()
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    g = certnn.from_torch(net, (1, 4, 4))
    scale = torch.ones(1, 4, 4, dtype=torch.float64)
    scale[0, 0] = 0.0  # first row frozen
    spec = make_spec(g, x, 0.5, norm, clip=(0.0, 1.0), scale=scale)
    lo, hi, _ = bounds_for_spec(g, spec, "ibp")
    pts = sample_ball(spec, 400, torch.Generator().manual_seed(0))
    assert check_bounds_contain(g, pts, lo, hi) <= 1e-9
    box_spec = make_spec(g, x, 0.5, "inf", clip=(0.0, 1.0), scale=scale)
    blo, bhi, _ = bounds_for_spec(g, box_spec, "ibp")
    assert (lo >= blo - 1e-12).all() and (hi <= bhi + 1e-12).all()
    assert (hi - lo).mean() < (bhi - blo).mean()
