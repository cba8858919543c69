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


def projection_factors(ctx, name: str) -> tuple[Tensor, Tensor]:
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
    Rt, y0 = projection_factors(ctx, name)
    spec = ctx.spec
    B, S = A.shape[:2]
    m = Rt.shape[-1]
    At = A.reshape(B, S, -1, m)  # (B, S, T, m)
    center = torch.bmm(A.reshape(B, S, -1), y0.reshape(B, -1, 1)).squeeze(-1)
    # trailing frames without coefficients (a bound of step t of a recurrent net): their norms are exact
    # zeros, so leaving them out changes no bit
    T = _live_frames(At)
    if spec.frame_norm is not None:  # frame by frame: strided (B S, m) views, no copy, cache-sized products
        dual = None
        for t in range(T):
            n_t = frame_dual(At[:, :, t], Rt, t)
            dual = n_t if dual is None else dual + n_t
        dual = center.new_zeros(B, S) if dual is None else dual
    else:
        At = At[:, :, :T]
        proj = At @ Rt[0] if Rt.shape[0] == 1 else torch.einsum("bstm,tmk->bstk", At, Rt[:T])
        dual = torch.linalg.vector_norm(proj.reshape(B, S, -1), ord=2, dim=-1)
    sign = -1.0 if side == "lower" else 1.0
    return center + sign * spec.eps.reshape(B, 1) * dual + bias


def frame_dual(A: Tensor, Rt: Tensor, t: int) -> Tensor:
    """||A R_t^T||_2 per row (B, S): A (B, S, m) the coefficients of frame t's projection (a strided view
    is fine: (B S, m) is a view of it), Rt the factors of projection_factors ((T, m, m) or one shared)."""
    B, S, m = A.shape
    return torch.linalg.vector_norm(A.reshape(B * S, m) @ Rt[min(t, Rt.shape[0] - 1)], ord=2, dim=-1).reshape(B, S)


def _live_frames(At: Tensor) -> int:
    """1 + the last frame of At (B, S, T, m) with a nonzero coefficient (0: none), reading frames from the
    end (a bound of step t of a recurrent net reads the T - t - 1 zero frames and one live one, not all)."""
    T = At.shape[2]
    while T > 0 and not bool(At[:, :, T - 1].any()):
        T -= 1
    return T


__all__ = ["input_projection", "concretize_projection", "projection_factors", "frame_dual"]
