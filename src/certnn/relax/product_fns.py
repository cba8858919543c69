"""The two-input products of LSTM/GRU cells as values: F, its partial derivatives, and its exact residual
extremes (see :mod:`certnn.relax.product_extremes`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .product_extremes import Extremes, sigmoid_mul_extremes, sigmoid_tanh_extremes
from .product_sided import sigmoid_mul_sided, sigmoid_tanh_sided


def _dsig(x: Tensor) -> Tensor:
    return torch.sigmoid(x) * torch.sigmoid(-x)  # no cancellation for large |x|


@dataclass(frozen=True)
class ProductFn:
    """F(x, y) with F_x, F_y and ``extremes(A, B, lx, ux, ly, uy)`` = exact min/max of F - A x - B y."""

    name: str
    f: Callable[[Tensor, Tensor], Tensor]
    fx: Callable[[Tensor, Tensor], Tensor]
    fy: Callable[[Tensor, Tensor], Tensor]
    extremes: Callable[..., Extremes]
    bound: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]  # an upper bound of |F| on the box
    #: ``sided(A, B, lx, ux, ly, uy, side)`` = (min where side = -1, max where side = +1; slack)
    #: (relax.product_sided), or None
    sided: Callable[..., tuple] | None = None


SIGMOID_TANH = ProductFn(
    "sigmoid_tanh",
    lambda x, y: torch.sigmoid(x) * torch.tanh(y),
    lambda x, y: _dsig(x) * torch.tanh(y),
    lambda x, y: torch.sigmoid(x) * (1 - torch.tanh(y) ** 2),
    sigmoid_tanh_extremes,
    lambda lx, ux, ly, uy: torch.ones_like(lx),
    sigmoid_tanh_sided,
)

SIGMOID_MUL = ProductFn(
    "sigmoid_mul",
    lambda x, y: torch.sigmoid(x) * y,
    lambda x, y: _dsig(x) * y,
    lambda x, y: torch.sigmoid(x) + 0 * y,
    sigmoid_mul_extremes,
    lambda lx, ux, ly, uy: torch.maximum(ly.abs(), uy.abs()),
    sigmoid_mul_sided,
)

__all__ = ["ProductFn", "SIGMOID_TANH", "SIGMOID_MUL"]
