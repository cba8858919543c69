"""Proving a conjunction of several rows at once: max_i g_i(x) > 0 on a box from linear lower bounds.

A VNN-LIB conjunction is unsafe where *every* row g_i = C_i f - d_i is <= 0, so it is proved on a box
when min_x max_i g_i(x) > 0 there. Bounding each row alone proves it only when a single row is positive
on the whole box. With linear lower bounds g_i(x) >= a_i . x + c_i on the box (e.g. CROWN's), for any
weights lam in the simplex

    max_i g_i(x)  >=  sum_i lam_i g_i(x)  >=  sum_i lam_i (a_i . x + c_i)  >=  h(lam) := min_{x in box} of it,

and h(lam) is a closed-form box concretisation. Every lam gives a sound bound; the best over lam equals the
linear program min_x max_i (a_i . x + c_i) (LP duality), which is approached by exponentiated-gradient
ascent on the simplex (h is concave; its supergradient is (a_i . x* + c_i)_i at the box minimiser x*).
Batched over boxes; the best value seen (single rows included) is returned.
"""
from __future__ import annotations

import torch
from torch import Tensor


def combined_lower(A: Tensor, c: Tensor, lo: Tensor, hi: Tensor, rows: Tensor, steps: int = 60,
                   lr: float = 0.5) -> Tensor:
    """A lower bound (N,) of min over the box [lo, hi] (N, n) of max over the rows in `rows` (N, S) bool of
    a_i . x + c_i (A (N, S, n), c (N, S)); -inf where a box has no row."""
    N, S, n = A.shape
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    has = rows.any(1)
    lam = rows.to(A.dtype) / rows.sum(1, keepdim=True).clamp(min=1).to(A.dtype)
    # every single row (a vertex of the simplex) is a valid lam too
    single = torch.einsum("nsi,ni->ns", A, mid) - torch.einsum("nsi,ni->ns", A.abs(), rad) + c
    best = torch.where(rows, single, torch.full_like(single, -torch.inf)).amax(1)
    scale = (A.abs() * rad.unsqueeze(1)).sum(-1) + c.abs()  # magnitude per row, for a scale-free step
    step = lr / scale.masked_fill(~rows, 0).amax(1, keepdim=True).clamp(min=1e-12)
    for _ in range(steps):
        a = torch.einsum("ns,nsi->ni", lam, A)
        h = torch.einsum("ns,ns->n", lam, c) + (a * mid).sum(1) - (a.abs() * rad).sum(1)
        best = torch.maximum(best, h)
        x = torch.where(a > 0, lo, hi)  # the box minimiser of the combination
        grad = torch.einsum("nsi,ni->ns", A, x) + c
        lam = lam * torch.exp((step * grad).clamp(max=50.0))
        lam = torch.where(rows, lam, torch.zeros_like(lam))
        lam = lam / lam.sum(1, keepdim=True).clamp(min=1e-300)
    return torch.where(has, best, torch.full_like(best, -torch.inf))


def conj_combined(A: Tensor, g_lb: Tensor, lo: Tensor, hi: Tensor, rowconj: Tensor, finite: Tensor, J: int,
                  **kw) -> Tensor:
    """(N, J) lower bounds of max over each conjunction's rows of g, from the rows' linear lower bounds:
    A (N, S, n) and their lower bounds g_lb (N, S) over the box (the constants follow from them). Sound
    for conjunctions of one row too (equal to that row's bound)."""
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    box_min = torch.einsum("nsi,ni->ns", A, mid) - torch.einsum("nsi,ni->ns", A.abs(), rad)
    c = g_lb - box_min
    out = []
    for j in range(J):
        rows = (rowconj == j) & finite
        out.append(combined_lower(A, c, lo, hi, rows, **kw))
    return torch.stack(out, 1)
