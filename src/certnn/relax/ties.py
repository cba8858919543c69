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


def tie_averaged(value: Tensor, cands: Tensor, side: str) -> Tensor:
    """`value` (the exact min or max over dim 0 of `cands`, possibly widened) with the gradient of the
    mean of the candidates within TIE_RTOL (relative, plus an absolute 1e-9) of the extreme. The value is
    untouched (soundness: only the gradient changes); the gradient no longer depends on which of two
    numerically tied candidates rounding makes the extreme."""
    ext = cands.amin(0) if side == "min" else cands.amax(0)
    tol = TIE_RTOL * (1 + ext.abs())
    near = ((cands - ext).abs() <= tol).to(cands.dtype).detach()
    avg = (near * cands).sum(0) / near.sum(0)
    return value.detach() + (avg - avg.detach())


__all__ = ["tie_averaged", "TIE_RTOL"]
