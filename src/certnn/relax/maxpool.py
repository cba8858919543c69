"""Linear bounds of y = max_i x_i over one pooling window, given the window's box [l_i, u_i].

Inputs l, u: (..., K) (K = window size; entries outside the input, i.e. padding, are -inf in both).
Returns a `MaxRelaxation` with per-window tensors of shape (...):

    lower:  y >= x_j                                 j = argmax_i l_i
    upper:  y <= a * x_k + c                         k = argmax_i u_i,  u2 = max_{i != k} u_i
            a = 1, c = 0                             if l_k >= u2  (x_k is the max everywhere: exact)
            a = (u_k - u2) / (u_k - l_k),
            c = u_k (1 - a) + margin                 otherwise (the chord of max(x_k, u2) on [l_k, u_k])

The lower line is CNN-Cert's / DeepPoly's choice (the input with the largest lower bound). The upper line
is never worse than DeepPoly's constant max_i u_i (it lies below u_k on the whole box, touches it at
x_k = u_k) and equals the max exactly when one input dominates all others.

Soundness: lower: max_i x_i >= x_j for every x. Upper: max_i x_i <= max(x_k, u2) because every x_i with
i != k is <= u_i <= u2; t -> max(t, u2) is convex, so on [l_k, u_k] it lies below its chord, which is the
line above (at t = l_k it is max(l_k, u2) = u2, at t = u_k it is u_k >= u2). In the exact case
l_k >= u2 >= x_i for all i != k. The margin (a few ulps of |u_k|, |u2|) covers rounding in a and c.
Zero-width windows (l == u) and ties (u_k == u2 gives a = 0, c = u_k: the constant) are covered.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .types import safety_margin


@dataclass(frozen=True)
class MaxRelaxation:
    """lower: y >= x[lower_index]; upper: y <= upper_slope * x[upper_index] + upper_bias (per window)."""

    lower_index: Tensor  # (...,) int64 in [0, K)
    upper_index: Tensor  # (...,) int64 in [0, K)
    upper_slope: Tensor  # (...,)
    upper_bias: Tensor  # (...,)

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Both lines at points x (*extra, ..., K) (extra leading dims broadcast)."""
        lead = x.shape[:-1]
        lo = x.gather(-1, self.lower_index.expand(lead).unsqueeze(-1)).squeeze(-1)
        xk = x.gather(-1, self.upper_index.expand(lead).unsqueeze(-1)).squeeze(-1)
        return lo, self.upper_slope * xk + self.upper_bias


def max_relaxation(l: Tensor, u: Tensor) -> MaxRelaxation:
    """Lines bounding max over the last dim of boxes [l, u] (..., K); see the module docstring."""
    if l.shape != u.shape:
        raise ValueError(f"bounds of different shapes {tuple(l.shape)} and {tuple(u.shape)}")
    j = l.argmax(-1)
    top2 = u.topk(min(2, u.shape[-1]), dim=-1)
    k = top2.indices[..., 0]
    uk = top2.values[..., 0]
    lk = l.gather(-1, k.unsqueeze(-1)).squeeze(-1)
    if u.shape[-1] > 1:
        u2 = top2.values[..., 1]
    else:
        u2 = torch.full_like(uk, -torch.inf)
    exact = lk >= u2
    width = (uk - lk).clamp(min=0)
    safe_w = torch.where(exact | (width <= 0), torch.ones_like(width), width)
    u2f = torch.where(torch.isfinite(u2), u2, lk)
    a = torch.where(exact, torch.ones_like(uk), ((uk - u2f) / safe_w).clamp(0.0, 1.0))
    c = torch.where(exact, torch.zeros_like(uk), uk * (1 - a) + safety_margin(uk, u2f, lk))
    # exact case: the max is x_k itself, so the lower line can use it too (it is at least as tight)
    j = torch.where(exact, k, j)
    return MaxRelaxation(j, k, a, c)
