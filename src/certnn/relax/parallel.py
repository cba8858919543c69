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

from .sshape import SShape, _chord, exact_offsets
from .types import LinearRelaxation


def narrowest_parallel(fn: SShape, l: Tensor, u: Tensor) -> LinearRelaxation:
    """Per neuron the narrower of the secant and the DeepZ parallel pairs for f on [l, u] (same shape as l)."""
    # parallel_relaxation(fn, l, u, "secant") and (..., "deepz"), offsets from one exact_offsets call
    a, _ = _chord(fn, l, u)
    b = torch.minimum(fn.df(l), fn.df(u))
    c_lo, c_hi = exact_offsets(fn, torch.stack([a, b]), l, u)
    pick = (c_hi[1] - c_lo[1]) < (c_hi[0] - c_lo[0])
    slope = torch.where(pick, b, a)
    return LinearRelaxation(slope, torch.where(pick, c_lo[1], c_lo[0]), slope.clone(),
                            torch.where(pick, c_hi[1], c_hi[0]))


__all__ = ["narrowest_parallel"]
