"""Network level: sampled points (uniform, corner-heavy, extreme) and PGD never leave the bounds, for
random networks of random depth / width / activation, every method and norm. The default run checks a
few hundred cases; the `slow` run checks thousands."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import make_spec
from certnn.certify.targets import margin_matrix
from certnn.testing import bound_violations
from certnn.testing.nets import ACTS, random_mlp

METHODS = ["ibp", "fastlin", "crown", "crown-ibp", "lipschitz"]
TOL = 1e-9


def random_net(seed: int, act: str | None = None, d_in: int | None = None) -> tuple[nn.Module, int]:
    return random_mlp(seed, act, d_in)


def _check(model, d, method, norm, seed, eps, clip=None, scale=None, n=300, pgd=True):
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(3, d, generator=g, dtype=torch.float64)
    graph = certnn.from_torch(model, (d,))
    spec = make_spec(graph, x, eps, norm, clip, scale)
    y = model(x).argmax(1)
    for C in (None, margin_matrix(y, 3)):
        lo, hi, pts, v, vp = bound_violations(model, graph, spec, method, C, n, g, pgd_steps=15 if pgd else 0,
                                              seed=seed)
        assert (lo <= hi + 1e-12).all()
        assert spec.contains(pts.reshape(-1, d).reshape(3, -1, d)[:, 0]).all()
        assert v <= TOL, f"sampled point outside {method}/{norm} bounds by {v}"
        assert vp <= TOL, f"PGD point outside {method}/{norm} bounds by {vp}"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
@pytest.mark.parametrize("act", list(ACTS))
def test_random_nets_every_activation(method, norm, act):
    for seed in range(3):
        model, d = random_net(100 * seed + hash(act) % 97, act)
        _check(model, d, method, norm, seed, eps=[0.05, 0.3, 1.0][seed])


@pytest.mark.parametrize("method", METHODS)
def test_clip_and_scale_mask(method):
    for seed, norm in itertools.product(range(2), ["inf", "2", "1"]):
        model, d = random_net(7 + seed, d_in=6)
        scale = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 2.0], dtype=torch.float64)
        _check(model, d, method, norm, seed, eps=0.4, clip=(0.0, 1.0), scale=scale)


class SliceThenLinear(nn.Module):
    """Input reshaped and sliced before the first linear layer: a corner where a per-slice dual norm
    (instead of one over the whole input) gives unsound L2/L1 bounds."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        z = x.view(-1, 4, 3)[:, 1:3, :]
        z = z.reshape(-1, 6)
        return self.fc2(torch.relu(self.fc(z)))


@pytest.mark.parametrize("method", ["ibp", "fastlin", "crown"])
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_slice_reshape_before_first_linear(method, norm):
    torch.manual_seed(0)
    model = SliceThenLinear().double()
    _check(model, 12, method, norm, 0, eps=0.5)
    # the first layer's bounds are exact for crown: an affine map of an Lp ball
    x = torch.rand(2, 12, dtype=torch.float64)
    graph = certnn.from_torch(model, (12,))
    spec = make_spec(graph, x, 0.5, norm)
    if method != "ibp":
        from certnn.engine.backward import backward_bounds
        from certnn.engine.context import RunContext
        ctx = RunContext(graph, spec, certnn.get_method(method))
        fc = [n for n in graph.order if graph.nodes[n].op.kind == "linear"][0]
        lo, hi = backward_bounds(ctx, fc)
        W = model.fc.weight
        q = {"inf": 1, "2": 2, "1": float("inf")}[norm]
        # effective weight on the full input: zero on the sliced-away features
        Wfull = torch.zeros(5, 4, 3, dtype=torch.float64)
        Wfull[:, 1:3, :] = W.reshape(5, 2, 3)
        rad = 0.5 * torch.linalg.vector_norm(Wfull.reshape(5, 12), ord=q, dim=1)
        mid = model.fc(x.view(-1, 4, 3)[:, 1:3].reshape(-1, 6))
        assert torch.allclose(lo, mid - rad, atol=1e-10) and torch.allclose(hi, mid + rad, atol=1e-10)


def test_zero_width_ball_reproduces_forward():
    for seed in range(5):
        model, d = random_net(seed)
        x = torch.rand(4, d, dtype=torch.float64)
        for method in METHODS:
            iv = certnn.compute_bounds(model, x, 0.0, "inf", method)
            out = model(x)
            assert torch.allclose(iv.lower, out, atol=1e-9) and torch.allclose(iv.upper, out, atol=1e-9), method


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_random_nets_many(method, norm):
    for seed in range(150):
        model, d = random_net(1000 + seed)
        _check(model, d, method, norm, seed, eps=[0.01, 0.1, 0.5, 2.0][seed % 4], n=200, pgd=seed % 3 == 0)
