"""Plain (non-robust) training of small classifiers, deterministic, for demos, tests and benchmarks."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def mlp(sizes: list[int], activation: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 30, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0, weight_decay: float = 0.0,
                     on_epoch: Callable[[int, int], None] | None = None) -> nn.Module:
    """Adam on cross-entropy; returns the model in eval mode. Deterministic for a given seed.
    ``on_epoch(done, epochs)`` after every epoch."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = x.to(torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    n = x.shape[0]
    for epoch in range(epochs):
        if on_epoch is not None and epoch:
            on_epoch(epoch, epochs)
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    if on_epoch is not None:
        on_epoch(epochs, epochs)
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        p = next(model.parameters())
        return (model(x.to(p.dtype)).argmax(1) == y).double().mean().item()
