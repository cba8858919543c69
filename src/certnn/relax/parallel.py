"""Choosing among parallel-line relaxations per neuron (the zonotope transformers of S-shaped functions).

A zonotope transformer of a scalar f on [l, u] is a pair of *parallel* lines a x + c_lo <= f(x) <= a x + c_hi;
it maps z to a z + (c_lo + c_hi)/2 + (c_hi - c_lo)/2 * eps_new. Two slope rules are in use:

  * secant (Cert-RNN's choice for tanh / sigmoid): a = (f(u) - f(l)) / (u - l);
  * DeepZ (Singh et al. NeurIPS 2018): a = min(f'(l), f'(u)), the minimal-area parallel pair of DeepZ.

:func:`narrowest_parallel` computes both and keeps, per neuron, the one with the smaller exact width
c_hi - c_lo (= smaller area (u - l)(c_hi - c_lo), i.e. the smaller fresh noise term).

Soundness: each candidate's offsets are the exact extremes of f(x) - a x on [l, u] plus a few ulps
(:func:`~certnn.relax.sshape.exact_offsets`), so each candidate is sound on [l, u], and a per-neuron choice
between two sound pairs is sound.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .sshape import SShape, parallel_relaxation
from .types import LinearRelaxation


def narrowest_parallel(fn: SShape, l: Tensor, u: Tensor) -> LinearRelaxation:
    """Per neuron the narrower of the secant and the DeepZ parallel pairs for f on [l, u] (same shape as l)."""
    a = parallel_relaxation(fn, l, u, "secant")
    b = parallel_relaxation(fn, l, u, "deepz")
    pick = (b.upper_bias - b.lower_bias) < (a.upper_bias - a.lower_bias)
    slope = torch.where(pick, b.lower_slope, a.lower_slope)
    return LinearRelaxation(slope, torch.where(pick, b.lower_bias, a.lower_bias), slope.clone(),
                            torch.where(pick, b.upper_bias, a.upper_bias))


__all__ = ["narrowest_parallel"]
