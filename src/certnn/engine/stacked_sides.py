"""Both sides of identity-row bounds from one lower-bound pass: rows [A; -A] (engine/backward.py).

The intermediate bounds of a node take a lower and an upper backward pass with the same start
coefficients A (identity rows). The upper bound of A . v is minus the lower bound of -A . v, and a lower
pass pushing -A meets every op with exactly the negated coefficients of the upper pass on A: at an
activation, (-A)^+ = -(A^-) selects the lower line where the upper pass on A selects it, and every
product, sum and norm of negated numbers is the negated (or the same) number, since rounding to nearest is
symmetric in sign. So one pass over 2S rows gives the same bounds, bit for bit, as the two passes over S
rows, with half the ops (most of a batch-1 pass is per-op overhead on small tensors: POPQORN's 64-unit
RNN steps) and the same arithmetic.

Used for small start tensors (:data:`SMALL`) of plain methods only: not with optimised lines or planes (their parameters belong to rows),
split constraints, the float32-sound rounding model (its error terms are per side) or patches, and only
while 2S rows fit the pass's row budget (rows_per_pass: no coefficient tensor grows past max_elements).
"""
from __future__ import annotations

import torch
from torch import Tensor


#: stacked start coefficients up to this many entries (512 KiB in float64): below it a pass is mostly
#: per-op overhead and half the ops is a gain (measured, batch 1: ~5-10% of a POPQORN radius search);
#: above it the doubled tensors leave the caches and the two passes were as fast or faster (batch 20)
SMALL = 2 ** 16


def stackable(ctx, A, limit: int) -> bool:
    """True when [A; -A] may replace the two passes over A (module docstring); limit: rows_per_pass."""
    return (isinstance(A, Tensor) and 2 * A.numel() <= SMALL and 2 * A.shape[1] <= limit
            and ctx.rounding is None and not ctx.line_params and not ctx.plane_params and not ctx.split_terms)


def both_sides(propagate, ctx, start: str, A: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """(lower, upper) bounds (B, S) of A . value(start) + bias from one lower pass over rows [A; -A]."""
    S = A.shape[1]
    lo2, _ = propagate(ctx, start, torch.cat([A, -A], 1), None, torch.cat([bias, -bias], 1), None)
    return lo2[:, :S], -lo2[:, S:]


__all__ = ["stackable", "both_sides"]
