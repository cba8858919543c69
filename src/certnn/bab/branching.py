"""Which ReLU to split: BaBSR scores (Bunel et al., JMLR 2020) and filtered smart branching (De Palma
et al., ICLR 2021).

For a domain's decisive spec row (the one its margin comes from), let lambda_i be the coefficient of
ReLU output i in the final linear lower bound. An unstable, unsplit neuron with input bounds l < 0 < u
whose coefficient is negative uses the chord u (z - l) / (u - l) as its line, whose intercept
-l u / (u - l) > 0 costs lambda_i times that much of the bound; splitting the neuron removes it. So

    score_i = max(-lambda_i, 0) * (-l u / (u - l))  +  1e-4 * |lambda_i| (u - l)     (tie-breaker)

FSB keeps the `candidates` best-scoring neurons of each domain, bounds both children of each candidate in
one batched pass (the parent's alpha and beta, no optimisation) and splits the candidate whose worse
child is best.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .domains import Domains, split


def scores(doms: Domains, lam: dict[str, Tensor], names: list[str], relu_inputs: dict[str, str]) -> Tensor:
    """(D, N) scores over the flattened neurons of all ReLU nodes (in `names` order); -inf where a neuron
    cannot be split (stable, or already split). lam: node -> (D, *shape) coefficients of the ReLU's
    output for the decisive row."""
    parts = []
    D = len(doms)
    for name in names:
        iv = doms.bounds[relu_inputs[name]]
        l, u = iv.lower.reshape(D, -1), iv.upper.reshape(D, -1)
        c = lam[name].reshape(D, -1)
        free = (doms.signs[name].reshape(D, -1) == 0) & (l < 0) & (u > 0)
        width = torch.where(free, u - l, torch.ones_like(u))
        sc = c.clamp(max=0).neg() * (-l * u / width) + 1e-4 * c.abs() * (u - l)
        parts.append(torch.where(free, sc, torch.full_like(sc, -torch.inf)))
    return torch.cat(parts, 1)


def locate(flat_all: Tensor, sizes: list[int]) -> tuple[Tensor, Tensor]:
    """Node index and flat neuron index within the node of positions in the concatenation of nodes."""
    ends = torch.tensor(sizes, device=flat_all.device).cumsum(0)
    node_id = torch.searchsorted(ends, flat_all, right=True)
    starts = torch.cat([ends.new_zeros(1), ends[:-1]])
    return node_id, flat_all - starts[node_id]


def choose(doms: Domains, sc: Tensor, names: list[str], relu_inputs: dict[str, str], sizes: list[int],
           k: int, child_margin=None, reduce: str = "min") -> tuple[Tensor, Tensor, Tensor]:
    """(node_id (D,), flat (D,), ok (D,)): the neuron to split per domain; ok is False where no neuron can
    be split. With `child_margin` (FSB: children Domains -> their margins (2m,)), the k best-scoring
    candidates are tried and the best by `reduce` ('min': the worse child, 'max': the better child) of
    its two children's margins is taken."""
    D = len(doms)
    ok = torch.isfinite(sc).any(1)
    if child_margin is None or k == 1:
        pos = sc.argmax(1)
        node_id, flat = locate(pos, sizes)
        return node_id, flat, ok
    kk = min(k, sc.shape[1])
    top_v, top_i = sc.topk(kk, dim=1)  # (D, kk)
    valid = torch.isfinite(top_v)
    rep = torch.arange(D, device=sc.device).repeat_interleave(kk)
    cand = top_i.reshape(-1)
    node_id, flat = locate(cand, sizes)
    kids = split(doms.index(rep), node_id, flat, names, relu_inputs)
    m = child_margin(kids)  # (2 D kk,): inactive children first, then active
    pick = torch.minimum if reduce == "min" else torch.maximum
    value = pick(m[:D * kk], m[D * kk:]).reshape(D, kk)
    value = torch.where(valid, value, torch.full_like(value, -torch.inf))
    best = value.argmax(1)
    pos = top_i.gather(1, best[:, None]).squeeze(1)
    node_id, flat = locate(pos, sizes)
    return node_id, flat, ok


__all__ = ["scores", "choose", "locate"]
