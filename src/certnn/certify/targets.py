"""Which output differences a certificate is about: margin specification matrices and target choice."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, DataError

TARGETS = ("untargeted", "top2", "random", "least")


def select_targets(logits: Tensor, y: Tensor, mode: str, seed: int = 0, index_offset: int = 0) -> Tensor | None:
    """Target class per sample (B,) for 'top2' (runner-up), 'random' (!= y, drawn per sample from (seed,
    index_offset + i): the same class whatever the batch or shard, keyed_random.py), 'least' (lowest logit);
    None for 'untargeted' (every class j != y)."""
    if mode == "untargeted":
        return None
    K = logits.shape[1]
    if K < 2:
        raise DataError("certification needs at least two output classes")
    masked = logits.clone().to(torch.float64)
    idx = torch.arange(logits.shape[0])
    if mode == "top2":
        masked[idx, y] = -torch.inf
        return masked.argmax(1)
    if mode == "least":
        masked[idx, y] = torch.inf
        return masked.argmin(1)
    if mode == "random":
        from ..keyed_random import keyed_other_class

        return keyed_other_class(y.cpu().long(), K, seed, index_offset)
    raise ConfigError(f"unknown target {mode!r}; choose one of {', '.join(TARGETS)}")


def margin_matrix(y: Tensor, num_classes: int, target: Tensor | None = None,
                  dtype: torch.dtype = torch.float64) -> Tensor:
    """C with rows e_y - e_j: (B, K-1, K) for untargeted (all j != y), (B, 1, K) for a target (B,)."""
    B = y.shape[0]
    if target is not None:
        C = torch.zeros(B, 1, num_classes, dtype=dtype)
        C[torch.arange(B), 0, y] = 1.0
        C[torch.arange(B), 0, target] -= 1.0
        return C
    eye = torch.eye(num_classes, dtype=dtype)
    rows = eye[y].unsqueeze(1) - eye.unsqueeze(0)  # (B, K, K): row j = e_y - e_j
    keep = torch.ones(B, num_classes, dtype=torch.bool)
    keep[torch.arange(B), y] = False
    return rows[keep].reshape(B, num_classes - 1, num_classes)
