"""A VNN-LIB property's regions as padded tensors for certify/verify.py (on the verifier's device), and a
region's box as an input set."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..specs.lp import LpBall
from ..specs.vnnlib import VnnlibProperty


class Problem:
    """All regions of a property as padded tensors: R regions, S rows, J conjunctions per region."""

    def __init__(self, prop: VnnlibProperty, dtype=torch.float64, device=None):
        self.prop = prop
        R = len(prop.regions)
        self.J = max(len(r.output_constraint) for r in prop.regions)
        self.S = max(1, max(sum(c.C.shape[0] for c in r.output_constraint) for r in prop.regions))
        K = prop.n_outputs
        self.lo = torch.tensor(np.stack([r.input_box.lower for r in prop.regions]), dtype=dtype)
        self.hi = torch.tensor(np.stack([r.input_box.upper for r in prop.regions]), dtype=dtype)
        self.C = torch.zeros(R, self.S, K, dtype=dtype)
        self.d = torch.full((R, self.S), math.inf, dtype=dtype)
        self.rowconj = torch.full((R, self.S), self.J, dtype=torch.long)  # padding rows -> dummy J
        self.exists = torch.zeros(R, self.J, dtype=torch.bool)
        self.empty_conj = torch.zeros(R, self.J, dtype=torch.bool)  # k == 0: any output is unsafe
        for r, reg in enumerate(prop.regions):
            s = 0
            for j, conj in enumerate(reg.output_constraint):
                k = conj.C.shape[0]
                self.exists[r, j] = True
                if k == 0:
                    self.empty_conj[r, j] = True
                self.C[r, s:s + k] = torch.tensor(np.array(conj.C), dtype=dtype)
                self.d[r, s:s + k] = torch.tensor(np.array(conj.d), dtype=dtype)
                self.rowconj[r, s:s + k] = j
                s += k
        if device is not None:
            for name in ("lo", "hi", "C", "d", "rowconj", "exists", "empty_conj"):
                setattr(self, name, getattr(self, name).to(device))

    @property
    def multi_row(self) -> bool:
        """Whether some conjunction has more than one row."""
        counts = self.rowconj.new_zeros(self.rowconj.shape[0], self.J + 1)
        counts.scatter_add_(1, self.rowconj, torch.isfinite(self.d).long())
        return bool((counts[:, :self.J] > 1).any())

    def conj_max(self, rid: Tensor, g: Tensor) -> Tensor:
        """Per box and conjunction, the max over its rows of g (N, S) -> (N, J); -inf for empty ones."""
        N = g.shape[0]
        out = g.new_full((N, self.J + 1), -math.inf)
        g = torch.where(torch.isfinite(self.d[rid]), g, g.new_tensor(-math.inf))
        out = out.scatter_reduce(1, self.rowconj[rid], g, "amax", include_self=True)
        return out[:, :self.J]


def box_spec(lo: Tensor, hi: Tensor, shape: tuple[int, ...]) -> LpBall:
    """The box [lo, hi] (N, n) as an L-inf ball intersected with itself as clip box (exactly the box)."""
    c = (lo + hi) / 2
    eps = ((hi - lo) / 2).amax(1) * (1 + 1e-9) + 1e-300
    c = torch.minimum(torch.maximum(c, lo), hi)
    N = lo.shape[0]
    return LpBall.make(c.reshape((N,) + shape), eps, "inf",
                       clip=(lo.reshape((N,) + shape), hi.reshape((N,) + shape)))


__all__ = ["Problem", "box_spec"]
