"""The branch-and-bound stage of VNN-LIB verification: beta-CROWN on ReLU splits (certnn.bab) over every
open region, with counterexamples from sub-domains confirmed by the verifier's check.

Each open region is a root: its input box, its rows C with thresholds d, its conjunctions and which are
still open. A region proved by branch and bound has every conjunction closed; a counterexample confirmed
by the verifier's check (float32 point inside the box, float64 IR and onnxruntime agree it is unsafe)
ends the verification as violated.
"""
from __future__ import annotations

import time

import torch

from ..bab import Problem, branch_and_bound
from ..bab.falsify import make_falsify
from .verify_problem import box_spec


def relu_bab(v, budget: float) -> None:
    """Run branch and bound on the verifier's open regions for at most `budget` seconds."""
    t = time.perf_counter()
    rid = torch.nonzero(v.open.any(1)).reshape(-1)
    if rid.numel() == 0:
        return
    spec = box_spec(v.p.lo[rid], v.p.hi[rid], v.graph.input_shape)
    prob = Problem(spec, v.p.C[rid], v.p.d[rid], v.p.rowconj[rid], v.open[rid])

    def confirm(x: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
        ok = v.check(x.reshape(x.shape[0], -1), rid[root])
        return torch.full((x.shape[0],), ok, dtype=torch.bool)

    fn = v.graph.forward
    res = branch_and_bound(v.graph, prob, v.cfg.bab_config, deadline=t + budget,
                           falsify=make_falsify(fn, prob, confirm))
    for i, r in enumerate(rid.tolist()):
        if res.status[i] == "holds":
            v.open[r] = False
    v.log("bab", t, rounds=res.rounds, domains=res.domains, depth=res.max_depth, open_domains=res.open_domains,
          stopped=res.reason, **{k: round(x, 4) for k, x in res.stats.items()},
          result="violated" if v.found is not None else ("holds" if not v.open.any() else "open"))
