"""The interval (box) domain: elementwise lower and upper bounds, batch first."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Interval:
    """lower <= value <= upper elementwise; both tensors have shape (B, *shape)."""

    lower: Tensor
    upper: Tensor

    @staticmethod
    def point(x: Tensor) -> "Interval":
        return Interval(x, x)

    @property
    def center(self) -> Tensor:
        return (self.lower + self.upper) / 2

    @property
    def radius(self) -> Tensor:
        return (self.upper - self.lower) / 2

    @property
    def shape(self) -> torch.Size:
        return self.lower.shape

    def intersect(self, other: "Interval") -> "Interval":
        return Interval(torch.maximum(self.lower, other.lower), torch.minimum(self.upper, other.upper))

    def contains(self, x: Tensor, tol: float = 0.0) -> Tensor:
        """Per-sample boolean: every coordinate of x (B, *shape) lies in the box (up to tol)."""
        ok = (x >= self.lower - tol) & (x <= self.upper + tol)
        return ok.reshape(ok.shape[0], -1).all(dim=1)

    def map(self, fn) -> "Interval":
        return Interval(fn(self.lower), fn(self.upper))
