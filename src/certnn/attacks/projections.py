"""Euclidean projections onto Lp balls, and onto Lp balls intersected with a box, batched over samples.

Every function takes ``v`` of shape (B, *shape) (batch first; the trailing dimensions are flattened
internally, the result has the shape of ``v``) and a radius that is a float or a tensor of shape (B,).
No Python loop runs over samples: each projection is a sort, a cumulative sum and a gather.

References:
    J. Duchi, S. Shalev-Shwartz, Y. Singer, T. Chandra. "Efficient projections onto the l1-ball for
    learning in high dimensions." ICML 2008 (Fig. 1, the sorting algorithm).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..config import parse_norm

__all__ = ["lp_norm", "project_l1_ball", "project_l2_ball", "project_box_ball"]


def lp_norm(v: Tensor, norm: str) -> Tensor:
    """||v_b||_p of each sample of ``v`` (B, *shape) -> (B,), p in {'inf', '2', '1'}."""
    p = parse_norm(norm)
    flat = v.reshape(v.shape[0], math.prod(v.shape[1:]))
    if flat.shape[1] == 0:
        return flat.new_zeros(flat.shape[0])
    if p == "inf":
        return flat.abs().amax(dim=1)
    if p == "2":
        return torch.linalg.vector_norm(flat, ord=2, dim=1)
    return flat.abs().sum(dim=1)


def _radius(radius: float | Tensor, flat: Tensor) -> Tensor:
    r = torch.as_tensor(radius, dtype=flat.dtype, device=flat.device)
    return r.expand(flat.shape[0]) if r.ndim == 0 else r.reshape(flat.shape[0])


def project_l1_ball(v: Tensor, radius: float | Tensor) -> Tensor:
    """Euclidean projection of each sample of ``v`` onto {w : ||w||_1 <= radius_b}.

    Duchi et al. (2008), Fig. 1: with u = |v| sorted in decreasing order,
    rho = max{j : u_j - (sum_{i<=j} u_i - r) / j > 0}, theta = (sum_{i<=rho} u_i - r) / rho and
    w = sign(v) * max(|v| - theta, 0). Samples already inside the ball are returned unchanged (exactly).

    Args:
        v: (B, *shape).
        radius: float or (B,), nonnegative.

    Returns:
        (B, *shape), same dtype as ``v``.
    """
    flat = v.reshape(v.shape[0], math.prod(v.shape[1:]))
    r = _radius(radius, flat)
    if flat.shape[1] == 0:
        return v.clone()
    a = flat.abs()
    inside = a.sum(dim=1) <= r
    u, _ = torch.sort(a, dim=1, descending=True)
    cs = u.cumsum(dim=1)
    j = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    cond = u - (cs - r[:, None]) / j > 0
    # rho: the last index where the condition holds (it holds on a prefix; max() is robust to rounding).
    idx = torch.arange(1, flat.shape[1] + 1, device=flat.device)
    rho = (cond.long() * idx).amax(dim=1).clamp(min=1)
    theta = (cs.gather(1, (rho - 1)[:, None])[:, 0] - r) / rho.to(flat.dtype)
    w = torch.sign(flat) * (a - theta[:, None]).clamp(min=0)
    w = torch.where(inside[:, None], flat, w)
    w = torch.where((r == 0)[:, None], torch.zeros_like(w), w)
    return w.reshape(v.shape)


def project_l2_ball(v: Tensor, radius: float | Tensor) -> Tensor:
    """Euclidean projection of each sample of ``v`` (B, *shape) onto {w : ||w||_2 <= radius_b}."""
    flat = v.reshape(v.shape[0], math.prod(v.shape[1:]))
    r = _radius(radius, flat)
    n = lp_norm(flat, "2")
    factor = torch.where(n > r, r / torch.where(n > 0, n, torch.ones_like(n)), torch.ones_like(n))
    return (flat * factor[:, None]).reshape(v.shape)


def project_box_ball(v: Tensor, lo: Tensor, hi: Tensor, radius: float | Tensor, norm: str) -> Tensor:
    """Exact Euclidean projection of each sample of ``v`` onto {w : ||w||_p <= r_b, lo <= w <= hi}.

    The box must contain 0 (lo <= 0 <= hi), which is the case for perturbations around a point inside the
    clip box. Infinite box bounds are allowed.

    * p = inf: the set is a box; the projection is a clamp.
    * p = 2: KKT gives w = clamp(t v, lo, hi) with t in (0, 1]; ||clamp(t v)||_2^2 is piecewise
      c + t^2 a between the sorted breakpoints t_i = c_i / |v_i| (c_i the bound in the direction of v_i),
      so t is found exactly by one sort and two cumulative sums.
    * p = 1: KKT gives w = clamp(soft_threshold(v, lam), lo, hi) with lam >= 0; ||w||_1 is piecewise
      linear in lam with breakpoints max(|v_i| - c_i, 0) (slope -1 starts) and |v_i| (slope ends), so lam
      is found exactly by one sort of the 2d breakpoints and cumulative sums (a box-constrained
      generalisation of Duchi et al. 2008).

    Args:
        v: (B, *shape).
        lo, hi: broadcastable to ``v``, lo <= 0 <= hi.
        radius: float or (B,), nonnegative and finite.
        norm: 'inf', '2' or '1'.

    Returns:
        (B, *shape); ||w||_p <= r up to rounding (a few ulps), lo <= w <= hi exactly.
    """
    p = parse_norm(norm)
    shape = v.shape
    flat = v.reshape(shape[0], math.prod(shape[1:]))
    r = _radius(radius, flat)
    lo_f = torch.broadcast_to(torch.as_tensor(lo, dtype=v.dtype, device=v.device), shape).reshape(flat.shape)
    hi_f = torch.broadcast_to(torch.as_tensor(hi, dtype=v.dtype, device=v.device), shape).reshape(flat.shape)
    # Inside the ball every |w_i| <= r, so the box can be cut to [-r, r]: all bounds become finite.
    lo_f = torch.maximum(lo_f, -r[:, None])
    hi_f = torch.minimum(hi_f, r[:, None])
    if p == "inf" or flat.shape[1] == 0:
        return torch.minimum(torch.maximum(flat, lo_f), hi_f).reshape(shape)
    if p == "2":
        return _project_l2_box_ball(flat, lo_f, hi_f, r).reshape(shape)
    return _project_l1_box_ball(flat, lo_f, hi_f, r).reshape(shape)


def _project_l2_box_ball(v: Tensor, lo: Tensor, hi: Tensor, r: Tensor) -> Tensor:
    """v, lo, hi: (B, d) with -r <= lo <= 0 <= hi <= r; r: (B,)."""
    a = v.abs()
    c = torch.where(v >= 0, hi, -lo)  # room in the direction of v_i, in [0, r]
    clamped = torch.minimum(a, c)
    ok = lp_norm(clamped, "2") <= r
    inf = torch.full_like(a, float("inf"))
    tau = torch.where(a > 0, c / torch.where(a > 0, a, torch.ones_like(a)), inf)
    tau_s, order = torch.sort(tau, dim=1)
    a2 = (a * a).gather(1, order)
    c2 = (c * c).gather(1, order)
    c_excl = c2.cumsum(dim=1) - c2  # saturated mass of the first k breakpoints
    a_rest = a2.sum(dim=1, keepdim=True) - (a2.cumsum(dim=1) - a2)  # free mass from k on
    g = torch.where(torch.isfinite(tau_s), c_excl + tau_s * tau_s * a_rest, inf)  # ||clamp(tau_k v)||^2
    r2 = (r * r)[:, None]
    k = (g < r2).sum(dim=1, keepdim=True).clamp(max=v.shape[1] - 1)
    ck = c_excl.gather(1, k)
    ak = a_rest.gather(1, k)
    t = torch.sqrt(((r2 - ck) / torch.where(ak > 0, ak, torch.ones_like(ak))).clamp(min=0))[:, 0]
    t = torch.where(ok, torch.ones_like(t), t.clamp(max=1))
    return torch.sign(v) * torch.minimum(t[:, None] * a, c)


def _project_l1_box_ball(v: Tensor, lo: Tensor, hi: Tensor, r: Tensor) -> Tensor:
    """v, lo, hi: (B, d) with -r <= lo <= 0 <= hi <= r; r: (B,)."""
    d = v.shape[1]
    a = v.abs()
    c = torch.where(v >= 0, hi, -lo)
    f0 = torch.minimum(a, c).sum(dim=1)
    ok = f0 <= r
    # f(lam) = sum_i min(max(a_i - lam, 0), c_i): slope -1 on [max(a_i - c_i, 0), a_i].
    points = torch.cat([(a - c).clamp(min=0), a], dim=1)
    deltas = torch.cat([-torch.ones_like(a), torch.ones_like(a)], dim=1)
    p_s, order = torch.sort(points, dim=1)
    slope = deltas.gather(1, order).cumsum(dim=1)  # slope of f right after p_s[k]
    steps = slope[:, :-1] * (p_s[:, 1:] - p_s[:, :-1])
    f_at = torch.cat([f0[:, None], f0[:, None] + steps.cumsum(dim=1)], dim=1)  # f(p_s[k])
    k = (f_at > r[:, None]).sum(dim=1, keepdim=True).clamp(min=1, max=2 * d - 1)
    p_prev, p_next = p_s.gather(1, k - 1), p_s.gather(1, k)
    f_prev, s_prev = f_at.gather(1, k - 1), slope.gather(1, k - 1)
    neg = s_prev < 0
    lam = torch.where(neg, p_prev + (f_prev - r[:, None]) / torch.where(neg, -s_prev, torch.ones_like(s_prev)),
                      p_next)
    lam = torch.minimum(lam, p_next)[:, 0]
    lam = torch.where(ok, torch.zeros_like(lam), lam)
    w = torch.sign(v) * torch.minimum((a - lam[:, None]).clamp(min=0), c)
    return torch.where((r == 0)[:, None], torch.zeros_like(w), w)
