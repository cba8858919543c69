"""Sub-domains of branch and bound as batches of tensors (no per-domain Python objects).

A sub-domain is a root problem (an input set and spec rows) plus split decisions on ReLU neurons. It
carries its intermediate bounds (the root's, with every split neuron's interval clipped to its side:
[max(l, 0), u] when active, [l, min(u, 0)] when inactive), the split signs per ReLU node (+1 active,
-1 inactive, 0 free), its lower bounds of the spec rows, and its optimiser parameters (alpha of the
output, beta of the splits) to warm-start its children.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..optimize.lines import cat_params


@dataclass
class Domains:
    root: Tensor  # (D,) long: which root problem
    bounds: dict  # node -> Interval (D, *shape): intermediate bounds, split neurons clipped
    signs: dict  # ReLU node -> (D, *shape) in {-1, 0, 1} (dtype of the bounds)
    lb: Tensor  # (D, S) lower bounds of the spec rows
    margin: Tensor  # (D,) the domain's value: > 0 proves it (see driver.Problem.margin)
    params: dict  # (start, node) -> Params (D, ...): alpha of the output start
    betas: dict  # ReLU node -> SplitBetas (D, ...)
    depth: Tensor  # (D,) number of splits

    def __len__(self) -> int:
        return int(self.root.shape[0])

    def index(self, idx: Tensor) -> "Domains":
        return Domains(self.root[idx], {k: Interval(v.lower[idx], v.upper[idx]) for k, v in self.bounds.items()},
                       {k: v[idx] for k, v in self.signs.items()}, self.lb[idx], self.margin[idx],
                       {k: p.select(idx) for k, p in self.params.items()},
                       {k: b.select(idx) for k, b in self.betas.items()}, self.depth[idx])

    @staticmethod
    def cat(parts: list["Domains"]) -> "Domains":
        nonempty = [p for p in parts if len(p)]
        if len(nonempty) <= 1:
            return nonempty[0] if nonempty else parts[0]
        parts = nonempty
        first = parts[0]
        return Domains(torch.cat([p.root for p in parts]),
                       {k: Interval(torch.cat([p.bounds[k].lower for p in parts]),
                                    torch.cat([p.bounds[k].upper for p in parts])) for k in first.bounds},
                       {k: torch.cat([p.signs[k] for p in parts]) for k in first.signs},
                       torch.cat([p.lb for p in parts]), torch.cat([p.margin for p in parts]),
                       {k: cat_params([p.params[k] for p in parts]) for k in first.params if
                        all(k in p.params for p in parts)},
                       {k: cat_params([p.betas[k] for p in parts]) for k in first.betas if
                        all(k in p.betas for p in parts)},
                       torch.cat([p.depth for p in parts]))


def split(doms: Domains, node_id: Tensor, flat: Tensor, names: list[str], relu_inputs: dict[str, str]) -> Domains:
    """Children of every domain: for domain i, neuron flat[i] of ReLU node names[node_id[i]] inactive
    (first half of the result, in order) and active (second half). relu_inputs maps a ReLU node to its
    input node, whose interval is clipped. Parameters are copied from the parent (the children's warm
    start); the new split's multiplier starts at 0."""
    D = len(doms)
    dev = doms.lb.device
    both = torch.cat([torch.arange(D, device=dev), torch.arange(D, device=dev)])
    kids = doms.index(both)
    side = torch.cat([-torch.ones(D, device=dev), torch.ones(D, device=dev)]).to(doms.lb.dtype)
    nid2, flat2 = node_id[both], flat[both]
    for j, name in enumerate(names):
        rows = torch.nonzero(nid2 == j).reshape(-1)
        if rows.numel() == 0:
            continue
        idx, s = flat2[rows], side[rows]
        inp = relu_inputs[name]
        iv = kids.bounds[inp]
        lo = iv.lower.reshape(2 * D, -1).clone()
        hi = iv.upper.reshape(2 * D, -1).clone()
        cur_lo, cur_hi = lo[rows, idx], hi[rows, idx]
        lo[rows, idx] = torch.where(s > 0, cur_lo.clamp(min=0.0), cur_lo)
        hi[rows, idx] = torch.where(s < 0, cur_hi.clamp(max=0.0), cur_hi)
        kids.bounds[inp] = Interval(lo.reshape(iv.lower.shape), hi.reshape(iv.upper.shape))
        sg = kids.signs[name].reshape(2 * D, -1).clone()
        sg[rows, idx] = s
        kids.signs[name] = sg.reshape(kids.signs[name].shape)
    kids.depth = kids.depth + 1
    return kids
