"""The training loop of `certnn train`: minibatch Adam on a given loss, deterministic for a seed.

The loss is a function ``loss(model, x, y, progress) -> scalar`` so that other objectives plug into the
same loop: plain cross-entropy (:func:`cross_entropy_loss`) here, verified robust losses (IBP, CROWN-IBP,
...) with an eps schedule driven by ``progress`` (the fraction of training done, in [0, 1)) elsewhere.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import Config
from ..errors import ConfigError

#: loss(model, x_batch, y_batch, progress in [0, 1)) -> scalar tensor
LossFn = Callable[[nn.Module, Tensor, Tensor, float], Tensor]
#: on_epoch(epoch (1-based), epochs, mean training loss of the epoch)
EpochCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class TrainConfig(Config):
    """Minibatch Adam settings; ``grad_clip`` caps the global gradient norm (None: no clipping)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"TrainConfig needs epochs >= 1 and batch_size >= 1 (got {self.epochs}, "
                              f"{self.batch_size})")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"TrainConfig needs lr > 0 and weight_decay >= 0 (got {self.lr}, {self.weight_decay})")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip}")


@dataclass(frozen=True)
class TrainHistory:
    epoch_loss: tuple[float, ...]  # mean training loss per epoch
    steps: int
    seconds: float


def cross_entropy_loss(model: nn.Module, x: Tensor, y: Tensor, progress: float) -> Tensor:
    return nn.functional.cross_entropy(model(x), y)


def fit(model: nn.Module, x: Tensor, y: Tensor, config: TrainConfig = TrainConfig(),
        loss: LossFn = cross_entropy_loss, on_epoch: EpochCallback | None = None,
        on_batch: Callable[[dict], None] | None = None) -> TrainHistory:
    """Train ``model`` in place on (x, y) (x as the model takes it: token ids, images, ...); the model
    is left in eval mode. Parameters with ``requires_grad=False`` (a frozen embedding) are not updated.
    ``on_epoch(epoch, epochs, loss)`` after every epoch, ``on_batch({epoch, epochs, batch, batches, loss})``
    after every batch."""
    t0 = time.perf_counter()
    y = torch.as_tensor(y).long()
    n = x.shape[0]
    if n == 0 or y.shape[0] != n:
        raise ConfigError(f"fit needs as many labels as inputs (> 0); got {n} inputs, {y.shape[0]} labels")
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    bs = config.batch_size
    per_epoch = (n + bs - 1) // bs
    total = per_epoch * config.epochs
    losses: list[float] = []
    step = 0
    model.train()
    try:
        for epoch in range(config.epochs):
            perm = torch.randperm(n, generator=gen)
            acc = torch.zeros((), dtype=torch.float64)
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                opt.zero_grad()
                value = loss(model, x[idx], y[idx], step / total)
                value.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                acc += value.detach().double() * idx.numel()
                step += 1
                if on_batch is not None:
                    on_batch({"epoch": epoch + 1, "epochs": config.epochs, "batch": i // bs + 1,
                              "batches": per_epoch, "loss": float(value.detach())})
            losses.append(float(acc) / n)
            if on_epoch is not None:
                on_epoch(epoch + 1, config.epochs, losses[-1])
    finally:
        model.eval()
    return TrainHistory(tuple(losses), step, time.perf_counter() - t0)


def predict(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Predicted classes (N,) in eval mode, batched."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = [model(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    if x.shape[0] == 0:
        return float("nan")
    return (predict(model, x, batch_size) == torch.as_tensor(y)).double().mean().item()
