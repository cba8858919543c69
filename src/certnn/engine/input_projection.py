"""Concretisation at the first Linear layer over L2 balls (POPQORN's per-frame balls, or one L2 ball):
the input coefficients are never formed.

For a Linear y = x W^T + b applied to the input x (per sample (T, d) -> (T, m), or (d,) -> (m,)) and
coefficients L (B, S, T, m) of y, the extreme of L . y + bias over the set {x0 + s * delta} is

    L . y(x0) + bias  -/+  eps N(L W diag(s)),

N the set's dual norm: sum_t ||(.)_t||_2 for per-frame L2 balls, ||.||_2 over all features for one L2 ball.
With the thin QR factorisation (W diag(s_t))^T = Q_t R_t (Q_t (d, m) with orthonormal columns, R_t (m, m)),
||L_t W diag(s_t)||_2 = ||L_t R_t^T Q_t^T||_2 = ||L_t R_t^T||_2: the norm costs one (m x m) product per
frame instead of (m x d), and neither the (B, S, T, d) input coefficients nor their concretisation are
computed (d = 112, m = 64 on POPQORN's 7-frame MNIST RNN; every backward pass of a recurrent net ends there).

Used by the backward engine (engine/backward.py, ``propagate``) when: the set is an L2 ball or per-frame
L2 balls without a clip box (with one, the box bound can be tighter; the generic path then takes the
better of both), float64 without the float32-sound rounding model, the Linear is the input's only
consumer, nobody captures the input's coefficients, and m < d (else nothing is saved).

Exactness: the same bound as the generic path up to rounding: Householder QR is backward stable
(R^T Q^T = W diag(s) + E with ||E|| ~ m ulps of ||W diag(s)||, the order of the rounding of forming
L W itself), and without a clip box the generic path's box bound is never tighter than the ball bound
(specs/lp.py).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..ops.affine import Linear


def input_projection(ctx) -> str | None:
    """The name of the Linear node whose coefficients are concretised directly, or None."""
    g, spec = ctx.graph, ctx.spec
    if spec.is_box or spec.clip is not None or ctx.rounding is not None:
        return None
    if spec.center.dtype != torch.float64 or (spec.frame_norm or spec.norm) != "2":
        return None
    if g.input_name in ctx.capture:
        return None
    cons = g.consumers(g.input_name)
    if len(cons) != 1:
        return None
    node = g.nodes[cons[0]]
    if not isinstance(node.op, Linear) or node.op.weight.requires_grad or len(g.input_shape) > 2:
        return None
    m, d = node.op.weight.shape
    return cons[0] if m < d else None


def _factors(ctx, name: str) -> tuple[Tensor, Tensor]:
    """(R^T per frame (T, m, m) or (1, m, m), y(x0) (B, *shape of the node)), once per run context."""
    key = ("input_projection", name)
    hit = ctx.memo.get(key)
    if hit is not None:
        return hit
    spec, op = ctx.spec, ctx.graph.nodes[name].op
    W = op.weight  # (m, d)
    shape = ctx.graph.input_shape
    if spec.scale is None:
        M = W.unsqueeze(0)  # (1, m, d): one factorisation for every frame
    else:
        s = torch.broadcast_to(spec.scale, shape).reshape(-1, shape[-1])  # (T or 1, d)
        M = W.unsqueeze(0) * s.unsqueeze(1)
    R = torch.linalg.qr(M.transpose(1, 2), mode="r").R  # (T or 1, m, m)
    out = (R.transpose(1, 2), op.forward(spec.center))
    ctx.memo[key] = out
    return out


def concretize_projection(ctx, name: str, A: Tensor, bias: Tensor, side: str) -> Tensor:
    """min (lower) or max (upper) over the set of A . y + bias, A (B, S, *shape of the Linear node `name`)."""
    Rt, y0 = _factors(ctx, name)
    spec = ctx.spec
    B, S = A.shape[:2]
    m = Rt.shape[-1]
    At = A.reshape(B, S, -1, m)  # (B, S, T, m)
    center = torch.bmm(A.reshape(B, S, -1), y0.reshape(B, -1, 1)).squeeze(-1)
    live = At.ne(0).any(-1).reshape(-1, At.shape[2]).any(0).nonzero()
    T = int(live.max()) + 1 if live.numel() else 0
    if T < At.shape[2]:  # trailing frames without coefficients (a bound of step t of a recurrent net):
        At = At[:, :, :T]  # their norms are exact zeros, so leaving them out changes no bit
        Rt = Rt if Rt.shape[0] == 1 else Rt[:T]
    if Rt.shape[0] == 1:  # one factor for every frame: one (B S T, m) x (m, m) product
        proj = At @ Rt[0]  # (B, S, T, m): L_t R^T
    else:
        proj = torch.einsum("bstm,tmk->bstk", At, Rt)
    if spec.frame_norm is not None:
        dual = torch.linalg.vector_norm(proj, ord=2, dim=-1).sum(-1)
    else:
        dual = torch.linalg.vector_norm(proj.reshape(B, S, -1), ord=2, dim=-1)
    sign = -1.0 if side == "lower" else 1.0
    return center + sign * spec.eps.reshape(B, 1) * dual + bias


__all__ = ["input_projection", "concretize_projection"]
