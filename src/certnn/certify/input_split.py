"""Input splitting for VNN-LIB properties with low-dimensional inputs (branch and bound on input boxes).

Soundness: a box is dropped only when its bounds prove every open conjunction (some row's lower bound
above its threshold, certify/verify.py); the boxes of a region always cover it (each bisection keeps both
halves), so a region whose boxes are all dropped holds. Counterexamples go through the verifier's check.
"""
from __future__ import annotations

import time

import torch

from .conjunctions import conj_combined


def input_split(v, budget: float) -> None:
    """Input branch and bound: the open regions' boxes in batches of cfg.split_batch, each bounded with
    cfg.split_methods in turn (the later ones only on boxes still open); proved boxes are dropped, the
    others are checked for counterexamples (centres, a short PGD every 4th batch) and bisected along the
    input with the best score of cfg.split_branching (_branch_scores)."""
    t = time.perf_counter()
    stop = time.perf_counter() + budget
    rid = torch.nonzero(v.open.any(1)).reshape(-1)
    lo, hi, op = v.p.lo[rid], v.p.hi[rid], v.open[rid]
    width0 = (v.p.hi - v.p.lo).clamp(min=1e-12)
    done_all, it, boxes = True, 0, 0
    while rid.numel():
        if time.perf_counter() > stop:
            done_all = False
            break
        it += 1
        nb = min(rid.numel(), v.cfg.split_batch)
        brid, blo, bhi, bop = rid[:nb], lo[:nb], hi[:nb], op[:nb]
        rid, lo, hi, op = rid[nb:], lo[nb:], hi[nb:], op[nb:]
        boxes += nb
        brid, blo, bhi, bop, A, gbest = _bound_boxes(v, brid, blo, bhi, bop)
        if brid.numel() == 0:
            continue
        centre = (blo + bhi) / 2
        if _counterexample(v, it, brid, blo, bhi, bop, centre):
            return v.log("split", t, iterations=it, boxes=boxes, result="violated")
        dim = _split_dims(v, brid, bop, gbest, A, blo, bhi, centre, width0)
        if dim is None:
            done_all = False  # a point box that is not proved: cannot split further
            break
        lo1, hi1, lo2 = _halves(blo, bhi, dim)
        rid = torch.cat([brid, brid, rid])
        lo = torch.cat([lo1, lo2, lo])
        hi = torch.cat([hi1, bhi, hi])
        op = torch.cat([bop, bop, op])
    if done_all and rid.numel() == 0:
        touched = torch.nonzero(v.open.any(1)).reshape(-1)
        v.open[touched] = False
    v.log("split", t, iterations=it, boxes=boxes, result="holds" if not v.open.any() else "open")


def _bound_boxes(v, brid, blo, bhi, bop):
    """Bound a batch of boxes with cfg.split_methods in turn (cheap first; the next only on the boxes still
    open), dropping proved conjunctions and boxes. Returns the open boxes (brid, blo, bhi, bop) with the
    first method's linear coefficients A and row bounds gbest that gave them (None if none did)."""
    A = gbest = None
    for method in v.cfg.split_methods:
        g, coef = v.row_bounds(method, brid, blo, bhi, coefficients=A is None)
        cm = v.p.conj_max(brid, g)
        if coef is not None:
            A, gbest = coef, g
            if v.p.multi_row:  # conjunctions of several rows: their rows' linear bounds jointly
                cm = torch.maximum(cm, conj_combined(coef, g, blo, bhi, v.p.rowconj[brid],
                                                     torch.isfinite(v.p.d[brid]), v.p.J))
        proved = cm > 0
        bop = bop & ~proved
        keep = bop.any(1)
        brid, blo, bhi, bop = brid[keep], blo[keep], bhi[keep], bop[keep]
        if A is not None and A.shape[0] != brid.shape[0]:
            A, gbest = A[keep], gbest[keep]
        if brid.numel() == 0:
            break
    return brid, blo, bhi, bop, A, gbest


def _counterexample(v, it, brid, blo, bhi, bop, centre) -> bool:
    """Whether a checked counterexample was found in the open boxes: their centres, then (every 4th batch)
    a short PGD started there."""
    with torch.no_grad():
        gc = torch.einsum("nsk,nk->ns", v.p.C[brid], v.fn(centre)) - v.p.d[brid]
    cv = v.p.conj_max(brid, gc)
    hit = ((cv <= 0) & bop).any(1)
    if hit.any() and v.check(centre[hit], brid[hit]):
        return True
    return bool(it % 4 == 1 and v.attack(brid, blo, bhi, bop, steps=10, restarts=1, start=centre, seed=it))


def _split_dims(v, brid, bop, gbest, A, blo, bhi, centre, width0):
    """(n,) the input each box is bisected along: the best score of cfg.split_branching ("gradient" without
    coefficients), ties broken by relative width, zero-width inputs never; None when some box's best input
    has width 0 (a point box that is not proved)."""
    w = bhi - blo
    score = _branch_scores(v, v.cfg.split_branching if A is not None else "gradient",
                           brid, bop, gbest, A, w, centre)
    score = score + 1e-12 * w / width0[brid]
    score = torch.where(w > 0, score, torch.full_like(score, -1.0))
    dim = score.argmax(1)
    if (w.gather(1, dim[:, None]) <= 0).any():
        return None
    return dim


def _halves(lo, hi, dim):
    """The two halves of each box along its input `dim`: (lo, hi1) and (lo2, hi)."""
    mid = ((lo + hi) / 2).gather(1, dim[:, None])
    hi1 = hi.clone().scatter_(1, dim[:, None], mid)
    lo2 = lo.clone().scatter_(1, dim[:, None], mid)
    return lo, hi1, lo2


def _branch_scores(v, how, rid, open_conj, g, A, w, centre):
    """Scores of splitting each input of each box: 'sb', 'gradient', or 'mixed' (their sum, each scaled
    by its largest score in the box)."""
    if how == "sb":
        return _sb_scores(v, rid, open_conj, g, A, w)
    grad = _gradient_scores(v, rid, open_conj, centre, w)
    if how == "gradient":
        return grad
    sb = _sb_scores(v, rid, open_conj, g, A, w)
    return sb / sb.amax(1, keepdim=True).clamp(min=1e-300) + grad / grad.amax(1, keepdim=True).clamp(min=1e-300)


def _sb_scores(v, rid, open_conj, g, A, w):
    """Smart branching on inputs: for each open conjunction, its best row (largest lower bound: the one
    closest to a proof), whose linear lower bound loses |A_i| w_i / 2 over the box through input i
    (halving input i would save about half of that); summed over the open conjunctions. (N, n)."""
    N, S = g.shape
    conj = v.p.rowconj[rid]
    gm = torch.where(torch.isfinite(v.p.d[rid]), g, torch.full_like(g, -float("inf")))
    best = gm.new_full((N, v.p.J + 1), -float("inf")).scatter_reduce(1, conj, gm, "amax", include_self=True)
    is_best = (gm >= best.gather(1, conj)) & torch.isfinite(gm)
    open_row = torch.cat([open_conj, open_conj.new_zeros(N, 1)], 1).gather(1, conj)
    weight = (is_best & open_row).to(A.dtype)
    return torch.einsum("ns,nsi->ni", weight, A.abs()) * w


def _gradient_scores(v, rid, open_conj, centre, w):
    """width x |d open rows / d input| at the box centre (when no bound coefficients are at hand)."""
    x = centre.clone().requires_grad_(True)
    y = v.fn(x)
    rowmask = torch.gather(torch.cat([open_conj, open_conj.new_zeros(open_conj.shape[0], 1)], 1), 1,
                           v.p.rowconj[rid])
    Cm = v.p.C[rid] * rowmask.unsqueeze(-1)
    score = torch.zeros_like(x)
    for k in range(y.shape[1]):  # K outputs (few): one gradient each, batched over boxes
        (gk,) = torch.autograd.grad(y[:, k].sum(), x, retain_graph=k + 1 < y.shape[1])
        score = score + Cm[:, :, k].abs().sum(1, keepdim=True) * gk.abs()
    return score.detach() * w
