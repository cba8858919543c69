"""Gradients that do not depend on how rounding breaks a tie.

A relaxation's offset is an extreme (min or max) over candidate points; its value is exact, but autograd
sends the whole gradient to the one candidate that happens to be the extreme. Where two candidates tie
(numerically: within rounding), which one that is depends on last-digit noise, e.g. a sample bounded
alone or in a batch (different matmul blocking), and an optimiser that follows the gradient (alpha-CROWN)
then takes different paths from the same start. Ties are not rare there: CROWN's lines touch f at two
points by construction, and optimised planes balance the residual at several corners.
"""
from __future__ import annotations

import torch
from torch import Tensor

#: candidates within this relative distance of the extreme count as tied
TIE_RTOL = 1e-9


def tie_averaged(value: Tensor, cands: Tensor, side: str, ext: Tensor | None = None) -> Tensor:
    """`value` (the exact min or max over dim 0 of `cands`, possibly widened) with the gradient of the
    mean of the candidates within TIE_RTOL (relative, plus an absolute 1e-9) of the extreme. The value is
    untouched (soundness: only the gradient changes); the gradient no longer depends on which of two
    numerically tied candidates rounding makes the extreme. ext: that extreme when the caller has it
    (the same values; saves a reduction)."""
    if not cands.requires_grad:  # no gradient to steer (e.g. values computed under no_grad): the value
        return value.detach()  # as is (the sum below would add an exact 0)
    c = cands.detach()  # the tie mask carries no gradient: build it outside autograd
    ext = (c.amin(0) if side == "min" else c.amax(0)) if ext is None else ext.detach()
    tol = TIE_RTOL * (1 + ext.abs())
    near = (c - ext).abs() <= tol
    # where, not a float mask times cands: autograd keeps the bool mask (1 byte an entry, not 8)
    avg = torch.where(near, cands, 0.0).sum(0) / near.sum(0)
    return value.detach() + (avg - avg.detach())


__all__ = ["tie_averaged", "TIE_RTOL"]
