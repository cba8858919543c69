"""alpha-CROWN's radius search started from CROWN's radius.

alpha-CROWN's bound is never below CROWN's (its best bound is floored at CROWN's, and its intermediate
bounds are intersected with CROWN's), so every eps CROWN certifies is certified, and a CROWN radius is a
proved lower end for alpha's bracket. A CROWN radius search costs a few percent of one alpha evaluation
(each alpha evaluation is 20 iterations of passes with autograd), while bracketing from the default
first eps costs alpha two to four evaluations. So the search first runs CROWN's own search (with its
margins: ITP by default), then brackets alpha from STAGE_FACTOR times that radius: usually one evaluation, which
fails (alpha adds 5-20% on naturally trained networks), leaving a bracket [r, STAGE_FACTOR r] that is
narrowed to the *same* precision as the plain search's (the gap that `bisection_steps` halvings of a
doubling bracket leave, in log space), in fewer steps because the bracket is narrower.

The radius is, as always, the largest eps certified during the search (by CROWN's stage or by alpha).
Samples CROWN certifies at no eps (radius 0) are bracketed from the default first eps, as before.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from .radius_search import Bracket

#: alpha's first eps, relative to CROWN's radius
STAGE_FACTOR = 1.25


def crown_stage(cert, x: Tensor, y: Tensor, t: Tensor | None, cfg, state: Bracket,
                eps: Tensor) -> tuple[Tensor, Tensor, int]:
    """CROWN's radii as the certified lower ends of `state` (with their margins unknown); returns alpha's
    first eps per sample (STAGE_FACTOR x CROWN's radius; `eps`, the search's default start, where CROWN
    certified nothing), the log-space half-width the narrowing stops at, and CROWN's evaluations."""
    from .profile import Profile

    crown = copy.copy(cert)  # same graph, set, targets and precision; CROWN's method
    crown.config = cert.config.replace(method="crown")
    crown.profile = Profile()
    r, evals = crown._search(x, y, t, cfg)
    cert.profile.merge(crown.profile, prefix="crown_stage/")
    r = r.to(torch.float64)
    ok = r > 0
    state.lo[ok] = r[ok]
    tol = torch.full_like(r, math.log(2.0) / 2 ** (cfg.bisection_steps + 1))
    return torch.where(ok, r * STAGE_FACTOR, eps), tol, evals


__all__ = ["crown_stage", "STAGE_FACTOR"]
