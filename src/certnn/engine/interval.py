"""Forward interval pass (IBP)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.interval import Interval
from .context import RunContext


def interval_pass(ctx: RunContext, upto: str | None = None) -> dict[str, Interval]:
    """Interval bounds of every node (up to `upto`), stored in ctx.bounds unless already there."""
    g = ctx.graph
    if g.input_name not in ctx.bounds:
        ctx.bounds[g.input_name] = ctx.spec.box()
    out: dict[str, Interval] = {g.input_name: ctx.bounds[g.input_name]}
    names = g.ancestors(upto) if upto else g.order
    for name in names[1:] if names[0] == g.input_name else names:
        node = g.nodes[name]
        iv = node.op.interval(ctx, *[out[i] for i in node.inputs])
        out[name] = iv
    return out


def interval_spec(iv: Interval, C: Tensor | None) -> tuple[Tensor, Tensor]:
    """Bounds of C v for v in the box iv: C (B, S, *shape) or None for the identity (flattened)."""
    B = iv.lower.shape[0]
    if C is None:
        return iv.lower.reshape(B, -1), iv.upper.reshape(B, -1)
    Cf = C.reshape(B, C.shape[1], -1)
    mid = torch.einsum("bsn,bn->bs", Cf, iv.center.reshape(B, -1))
    rad = torch.einsum("bsn,bn->bs", Cf.abs(), iv.radius.reshape(B, -1))
    return mid - rad, mid + rad
