"""Linear bounds: the domain of backward bound propagation (Fast-Lin, CROWN, CNN-Cert, POPQORN).

A `LinearBounds` object states, for every sample b and every specification row s,

    lA[b, s] . v + lbias[b, s]  <=  (C f)(x)[b, s]  <=  uA[b, s] . v + ubias[b, s]

for all x in the input set, where v is the value of some node (the input node once propagation ends).
lA/uA have shape (B, S, *node_shape); a side that is not needed is None.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class LinearBounds:
    lA: Tensor | None
    lbias: Tensor | None
    uA: Tensor | None
    ubias: Tensor | None
