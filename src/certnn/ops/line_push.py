"""Coefficients pushed through elementwise lines, shared by the dense rule (ops/activation.py) and the
patches rule (engine/patches.py).

For coefficients Λ of the output of z -> f(z), bounded by lines a_l z + b_l <= f(z) <= a_u z + b_u, the
lower-bound pass takes  Λ⁺ a_l + Λ⁻ a_u  and the bias  Σ (Λ⁺ b_l + Λ⁻ b_u),  the upper-bound pass
Λ⁺ a_u + Λ⁻ a_l  and  Σ (Λ⁺ b_u + Λ⁻ b_l)  (CROWN, Zhang et al. 2018, Theorem 3.2).

Cost: Λ⁺ and Λ⁻ are formed once when both passes share Λ (identity rows of intermediate bounds), the
bias sums are contractions (no product tensor), and an intercept that is identically zero and carries no
gradient (ReLU's lower line, a stable neuron's lines) is skipped: the sums are then the same as with
the zero terms, up to the order of float additions.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Dot = Callable[[Tensor, Tensor], Tensor]  # (coefficients (B, S, ...), intercepts) -> (B, S)


def drop_zero(t: Tensor) -> Tensor | None:
    """None when t is identically zero and carries no gradient (its products add nothing), else t."""
    if t.requires_grad or bool(t.any()):
        return t
    return None


def push_lines(lA: Tensor | None, uA: Tensor | None, ls: Tensor, lb: Tensor | None, us: Tensor,
               ub: Tensor | None, dot: Dot, same_slope: bool = False):
    """(lA_in, uA_in, lbias, ubias) of the lower / upper passes (either side None when not asked).

    ls / us: slopes, lb / ub: intercepts (None: zero), each broadcastable to the coefficients (or, for
    `dot`, in whatever form `dot` takes them). same_slope: a_l == a_u everywhere (Fast-Lin), so one
    product serves both sides when lA is uA."""
    shared = lA is not None and lA is uA
    pos = neg = None
    lA_in = uA_in = lbias = ubias = None
    if lA is not None:
        pos, neg = lA.clamp(min=0), lA.clamp(max=0)
        lA_in = lA * ls if same_slope else torch.addcmul(pos * ls, neg, us)
        lbias = _bias(pos, lb, neg, ub, dot)
    if uA is not None:
        if not shared:
            pos, neg = uA.clamp(min=0), uA.clamp(max=0)
        if same_slope:
            uA_in = lA_in if shared else uA * us
        else:
            uA_in = torch.addcmul(pos * us, neg, ls)
        ubias = _bias(pos, ub, neg, lb, dot)
    return lA_in, uA_in, lbias, ubias


def _bias(pos: Tensor, bp: Tensor | None, neg: Tensor, bn: Tensor | None, dot: Dot) -> Tensor:
    """Σ pos·bp + Σ neg·bn per (sample, row), skipping zero intercepts."""
    out = None
    for A, b in ((pos, bp), (neg, bn)):
        if b is not None:
            v = dot(A, b)
            out = v if out is None else out + v
    if out is None:
        return pos.new_zeros(pos.shape[:2])
    return out


def dense_dot(A: Tensor, t: Tensor) -> Tensor:
    """Σ over all but the first two dims of A (B, S, *shape) · t, t (B, 1 or S, *shape) or (1, ...)."""
    B, S = A.shape[:2]
    Af = A.reshape(B, S, -1)
    if t.shape[1] == 1:  # one intercept per neuron, shared by the rows: a batched matrix-vector product
        tf = torch.broadcast_to(t, (B, 1) + tuple(A.shape[2:])).reshape(B, -1, 1)
        return torch.bmm(Af, tf).squeeze(-1)
    tf = torch.broadcast_to(t, A.shape).reshape(B, S, -1)
    return torch.einsum("bsn,bsn->bs", Af, tf)


def rows_dot(A: Tensor, t: Tensor) -> Tensor:
    """Σ over all but the first two dims of A · t, both (B, R, ...) of the same shape (patch windows)."""
    B, R = A.shape[:2]
    return torch.einsum("brn,brn->br", A.reshape(B, R, -1), t.reshape(B, R, -1))
