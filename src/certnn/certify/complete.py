"""Complete certification of classifiers at a radius: every sample gets `holds` (proved), `violated` (a
checked adversarial example) or `unknown` (time).

Samples the incomplete method does not prove go to branch and bound on ReLU splits (certnn.bab; beta-CROWN
bounds) with the margins f_y - f_j (or f_y - f_t) as rows, each its own conjunction: a sample holds when
every margin is proved positive on its input set. A PGD attack first, and the sub-domains' bound
minimisers (with a short PGD from them) during the search, look for adversarial examples; a point counts
only when it lies in the input set (within 1e-9) and a float64 forward pass of the model's IR puts some
margin strictly below 0.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..bab import Problem, branch_and_bound
from ..bab.falsify import make_falsify, row_values
from ..graph.ir import Graph
from ..specs.lp import LpBall
from .complete_config import CompleteConfig  # noqa: F401  (re-exported: certnn.certify.complete.CompleteConfig)


@dataclass
class CompleteResult:
    status: list  # per sample: 'holds' | 'violated' | 'unknown'
    x_adv: Tensor | None  # (B, *in) a checked adversarial example where violated (else the centre)
    domains: int


def complete_status(graph: Graph, spec: LpBall, C: Tensor, config: CompleteConfig, proved: Tensor,
                    model=None, y: Tensor | None = None, target: Tensor | None = None) -> CompleteResult:
    """Verdicts for the samples of `spec` with margin rows C (B, S, K); `proved` (B,) marks samples the
    incomplete method already proved (they are not searched). `model`, `y`, `target`: for the initial PGD."""
    B = spec.batch
    status = ["holds" if bool(p) else "unknown" for p in proved]
    x_adv = spec.center.clone()
    todo = torch.nonzero(~proved).reshape(-1)
    if todo.numel() == 0:
        return CompleteResult(status, None, 0)
    sub = spec.select(todo)
    prob = Problem.robustness(sub, C[todo])
    found = torch.zeros(todo.numel(), dtype=torch.bool)

    def confirm(x: Tensor, root: Tensor) -> Tensor:
        with torch.no_grad():
            g = row_values(graph.forward, prob, x, root)
        ok = prob.spec.select(root).contains(x) & (g < 0).any(1)
        for i in torch.nonzero(ok).reshape(-1).tolist():
            r = int(root[i])
            if not found[r]:
                found[r] = True
                x_adv[todo[r]] = x[i].detach()
        return ok

    if config.attack and model is not None and y is not None:
        _initial_attack(model, sub, y[todo], None if target is None else target[todo], confirm)
    open_roots = torch.nonzero(~found).reshape(-1)
    domains = 0
    if open_roots.numel():
        prob2 = Problem.robustness(sub.select(open_roots), C[todo][open_roots])

        def confirm2(x: Tensor, root: Tensor) -> Tensor:
            return confirm(x, open_roots[root])

        deadline = time.perf_counter() + config.timeout * open_roots.numel()
        res = branch_and_bound(graph, prob2, config.bab, deadline=deadline,
                               falsify=make_falsify(graph.forward, prob2, confirm2))
        domains = res.domains
        for i, s in enumerate(res.status):
            r = int(open_roots[i])
            if not found[r]:
                status[int(todo[r])] = s if s != "violated" else "unknown"
    for r in torch.nonzero(found).reshape(-1).tolist():
        status[int(todo[r])] = "violated"
    return CompleteResult(status, x_adv, domains)


def _initial_attack(model, spec: LpBall, y: Tensor, target: Tensor | None, confirm) -> None:
    from ..attacks.pgd import PGDConfig, pgd_attack

    clip = spec.clip
    res = pgd_attack(model, spec.center, y, spec.eps, spec.norm, PGDConfig(), target=target,
                     clip=clip, scale=spec.scale)
    hit = torch.nonzero(res.success).reshape(-1)
    if hit.numel():
        confirm(res.x_adv[hit].to(spec.center.dtype), hit)
