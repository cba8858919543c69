"""The L-inf ball's concretisation A . c + sign * eps * ||A||_1 (specs/lp.py) with a lean backward.

Autograd's own graph of `bmm(A, c) + sign * eps * vector_norm(A, 1)` keeps A itself (the norm's backward
needs sgn(A)); A is the largest tensor of a backward pass (the coefficients at the input, (B, S, n)), and
alpha-CROWN keeps one per pass until its step. This node keeps sgn(A) as int8 (1 byte an entry, not 8)
and forms the same gradient, g c + (g sign eps) sgn(A): each entry one product per term and one sum of the
two terms, as autograd's bmm (an outer product here) and norm backward add them, so the values are the
same. Used only where c and eps need no gradient (alpha-CROWN, not verified training).
"""
from __future__ import annotations

import torch
from torch import Tensor


class _BoxConcretize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, Af: Tensor, c: Tensor, scale: Tensor) -> Tensor:
        out = torch.bmm(Af, c).squeeze(-1) + scale * torch.linalg.vector_norm(Af, 1, dim=-1)
        ctx.save_for_backward(torch.sgn(Af).to(torch.int8), c, scale)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        sgn, c, scale = ctx.saved_tensors
        grad = torch.bmm(g.unsqueeze(-1), c.transpose(1, 2)) + (g * scale).unsqueeze(-1) * sgn
        return grad, None, None


def box_concretize(Af: Tensor, c: Tensor, scale: Tensor) -> Tensor:
    """bmm(Af, c).squeeze(-1) + scale * ||Af||_1 over the last dim: Af (B, S, n), c (B, n, 1), scale (B, 1)."""
    if Af.requires_grad and torch.is_grad_enabled() and not (c.requires_grad or scale.requires_grad):
        return _BoxConcretize.apply(Af, c, scale)
    return torch.bmm(Af, c).squeeze(-1) + scale * torch.linalg.vector_norm(Af, 1, dim=-1)


__all__ = ["box_concretize"]
