"""The GRU state update h' = (1 - sigma(z)) tanh(n) + sigma(z) h as IR nodes.

Two lowerings compute the same function and differ in what the bound methods relax:

    "factored" (the default)   s = sigmoid(z), n = tanh(n_pre)
                               h' = Mul(1 - s, n) + Mul(s, h)
        sigma(z) and tanh(n) are each relaxed once: a backward pass reaches s through both products and
        relaxes sigma(z) with the *summed* coefficient (the two uses of the same gate keep their
        correlation, as in auto_LiRPA's unrolled twin); the products get McCormick planes on the boxes of
        (1 - s, n) and (s, h), which alpha-CROWN tilts like any product plane.
    "fused"                    h' = SigmoidTanhMul(-z, n_pre) + SigmoidMul(z, h)
        two fused planes (ops/product.py), each relaxing sigma(z) on its own. The zonotope methods
        (Cert-RNN's parallel planes) need this form: they rewrite the factored form back into it
        (graph/fuse_gates.py), so their bounds are those of the fused planes whatever the import made.

Measured on the gru-1-32 MNIST model of benchmarks/sshape_vs_autolirpa.py (eps 0.01, 20 images, mean margin
lower bound): crown 2.470 fused / 2.587 factored; certrnn on the factored graph without the rewrite 1.00 ->
-0.01 (hence the rewrite). Also tried (crown, 5 images): n + SigmoidMul(z, h - n) 1.49 and n + Mul(s, h - n)
0.64 (the box of h - n is wide), n - Mul(s, n) + Mul(s, h) 0.39 (McCormick planes of s*n touch the wrong
edges for the lower bound of -s*n), against fused 2.25 and factored 2.37.

With a zero previous state the update is (1 - sigma(z)) tanh(n) = SigmoidTanhMul(-z, n) in both lowerings
(one fused product, nothing to share).
"""
from __future__ import annotations

import torch

from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine
from ..ops.product import Mul, SigmoidMul, SigmoidTanhMul
from ..ops.shape import Add

LOWERINGS = ("factored", "fused")
DEFAULT_LOWERING = "factored"


def gru_update(b, z_pre: str, n_pre: str, h: str | None, lowering: str = DEFAULT_LOWERING) -> str:
    """Nodes computing h' from the z-gate pre-activation, the n-gate pre-activation (before tanh) and the
    previous state h (None = zero); returns h'."""
    if lowering not in LOWERINGS:
        raise ValueError(f"unknown GRU lowering {lowering!r}; use one of {', '.join(LOWERINGS)}")
    if h is None or lowering == "fused":
        neg_z = b.add(ElementwiseAffine(torch.tensor(-1.0), None), [z_pre])
        new = b.add(SigmoidTanhMul(), [neg_z, n_pre])
        if h is None:
            return new
        return b.add(Add(), [new, b.add(SigmoidMul(), [z_pre, h])])
    s = b.add(Activation("sigmoid"), [z_pre])
    n = b.add(Activation("tanh"), [n_pre])
    keep = b.add(ElementwiseAffine(torch.tensor(-1.0), torch.tensor(1.0)), [s])
    return b.add(Add(), [b.add(Mul(), [keep, n]), b.add(Mul(), [s, h])])


__all__ = ["gru_update", "LOWERINGS", "DEFAULT_LOWERING"]
