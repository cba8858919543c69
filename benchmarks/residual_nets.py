"""The random-weight CIFAR ResNet of benchmarks/crown_vs_autolirpa.py, importable without auto_LiRPA (the
profile script benchmarks/crown_residual_profile.py builds the same model)."""
from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """relu(x + conv(relu(conv(x)))), no BatchNorm."""

    def __init__(self, c: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(x + self.c2(torch.relu(self.c1(x))))


def cifar_resnet() -> nn.Module:
    """RANDOM weights (seed 0: a cost measurement, not accuracy): stem conv 16@3x3 stride 2, two residual
    blocks without BatchNorm, conv 32@4x4 stride 2, linear 100, linear 10; input 3x32x32."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), Block(16), Block(16),
                         nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 8 * 8, 100), nn.ReLU(), nn.Linear(100, 10)).eval()
