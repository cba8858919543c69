"""Small random networks for soundness tests (public, so users adding ops can test the same way)."""
from __future__ import annotations

import torch
from torch import nn


def random_relu_mlp(seed: int, d: int = 2, h: int = 6, depth: int = 2, out: int = 2) -> nn.Sequential:
    """A float64 ReLU MLP d -> [h] * depth -> out with N(0, 1) weights and N(0, 0.09) hidden biases, seeded:
    tiny enough for exact MILP / LP ranges, with many unstable neurons on unit-sized boxes."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    w = d
    for _ in range(depth):
        lin = nn.Linear(w, h).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(h, w, generator=g, dtype=torch.float64))
            lin.bias.copy_(torch.randn(h, generator=g, dtype=torch.float64) * 0.3)
        layers += [lin, nn.ReLU()]
        w = h
    last = nn.Linear(w, out).double()
    with torch.no_grad():
        last.weight.copy_(torch.randn(out, w, generator=g, dtype=torch.float64))
    return nn.Sequential(*layers, last)
