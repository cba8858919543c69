"""ReLU lower slopes of alpha-CROWN's intermediate starts, stored for the unstable neurons only.

An intermediate start (optimize/plan.py) has one lower slope per spec row and per neuron of every ReLU
upstream of it (lines.ReluSlopes, (B, S, *shape)). Only the neurons that are unstable (l < 0 < u) on the
reference bounds can ever use theirs: every later intermediate bound is intersected with the reference
(optimize/alpha_crown.py), so a stable neuron stays stable, and a stable neuron's lower line does not
depend on its slope (zero gradient: Adam never moves it). `CompactReluSlopes` keeps the slopes
alpha (B, S, U) of the U reference-unstable neurons of each sample (padded to the batch's largest count)
and a lookup from neurons to columns. The lines a backward pass needs are gathered from a table
[0, 1, alpha] (B, S, U + 2) with one index per neuron (alpha's column where the neuron is unstable now, 1
where it is active, 0 where it is inactive): on the full layout (B, S, *shape) for dense coefficients, or
straight onto each row's receptive-field window for patches (`window_lines`, called by
engine/patches.py), so no (B, S, *shape) parameter tensor, gradient or Adam state is formed for the
patch windows, and Adam, the projection and the best-parameter copies work on (B, S, U).

Same values as lines.ReluSlopes (exactly: one gather picks 0, 1 or alpha where ReluSlopes adds
0 + 1 * alpha, 1 + 0 * alpha or 0 + 0 * alpha), so the bounds of every iterate are the same up to the
order of floating-point additions (tests/unit/optimize/test_compact_slopes.py).

Soundness: as lines.ReluSlopes: on unstable neurons a lower line alpha * x with alpha clamped to [0, 1],
on stable ones CROWN's exact lines; the upper line is the chord. A neuron unstable now but without a
column (only if rounding made a bound looser than the reference's) gets slope 0, also a sound line.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..relax.relu import relu_relaxation
from ..relax.types import LinearRelaxation
from .lines import Params


class CompactReluSlopes(Params):
    """Lower slopes alpha (B, S, U) of a ReLU node for the U reference-unstable neurons of each sample.

    lookup (B, n) long: column + 2 of each flat neuron's slope in the table [0, 1, alpha], 0 for neurons
    without one; neurons (B, U): the flat neuron of each column (padding columns: a stable neuron, whose
    lookup entry stays 0). Warm starts are taken only from parameters with the same columns."""

    opt_fields = ("alpha",)
    const_fields = ("lookup", "neurons")
    match_fields = ("neurons",)

    def __init__(self, alpha: Tensor, lookup: Tensor, neurons: Tensor):
        self.alpha = alpha
        self.lookup = lookup
        self.neurons = neurons

    @staticmethod
    def create(l: Tensor, u: Tensor, rows: int) -> "CompactReluSlopes":
        """Parameters for bounds [l, u] (B, *shape) and `rows` spec rows, at CROWN's adaptive slopes
        (1 where u >= -l, else 0) as lines.ReluSlopes.initial."""
        B = l.shape[0]
        lf, uf = l.reshape(B, -1), u.reshape(B, -1)
        unstable = (lf < 0) & (uf > 0)
        U = int(unstable.sum(1).max()) if unstable.numel() else 0
        # each sample's unstable neurons first (stable order), padded with its stable ones
        neurons = torch.argsort((~unstable).to(torch.int8), dim=1, stable=True)[:, :U]
        valid = unstable.gather(1, neurons)
        cols = torch.arange(2, U + 2, device=l.device).expand(B, U) * valid
        lookup = torch.zeros(lf.shape, dtype=torch.long, device=l.device).scatter_(1, neurons, cols)
        a0 = (uf >= -lf).to(l.dtype).gather(1, neurons)
        return CompactReluSlopes(a0.unsqueeze(1).expand(B, rows, U).clone(), lookup, neurons)

    def project(self) -> None:
        self.alpha.data.clamp_(0.0, 1.0)

    def _table(self) -> Tensor:
        """(B, S, U + 2): the slopes 0 and 1, then alpha clamped to [0, 1]."""
        B, S = self.alpha.shape[:2]
        fixed = self.alpha.new_tensor([0.0, 1.0]).expand(B, S, 2)
        return torch.cat([fixed, self.alpha.clamp(0.0, 1.0)], 2)

    def _index(self, l: Tensor, u: Tensor) -> Tensor:
        """(B, n) table column of each neuron's lower slope on the current bounds [l, u]."""
        B = l.shape[0]
        lf, uf = l.detach().reshape(B, -1), u.detach().reshape(B, -1)
        unstable = (lf < 0) & (uf > 0)
        return torch.where(unstable, self.lookup, (lf >= 0).to(torch.long))

    def __call__(self, op, l: Tensor, u: Tensor) -> LinearRelaxation:
        """Lines on [l, u] (B, *shape): lower slopes (B, S, *shape), the rest per neuron (B, 1, *shape)."""
        base = relu_relaxation(l.unsqueeze(1), u.unsqueeze(1), "zero")
        B, S = l.shape[0], self.alpha.shape[1]
        idx = self._index(l, u)
        # one root's slopes (batch 1) broadcast over sub-domains (bab/intermediate.py) as ReluSlopes' do
        lo = self._table().expand(B, S, -1).gather(2, idx.unsqueeze(1).expand(B, S, idx.shape[1]))
        return LinearRelaxation(lo.reshape((B, S) + tuple(l.shape[1:])), base.lower_bias, base.upper_slope,
                                base.upper_bias)

    def window_lines(self, op, l: Tensor, u: Tensor, P) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """(lower slope, lower bias, upper slope, upper bias) on the windows of patches P (data (B, R, C,
        ph, pw), R the rows of this pass): each (B, R, C, ph, pw), a bias None where it is identically
        zero without gradient (as ops/line_push.drop_zero)."""
        from ..ops.line_push import drop_zero

        B, R = P.data.shape[:2]
        base = relu_relaxation(l, u, "zero")
        lb, ub = drop_zero(base.lower_bias), drop_zero(base.upper_bias)
        ts = [self._index(l, u).reshape(l.shape), base.upper_slope] + [b for b in (lb, ub) if b is not None]
        g = P.gather_many(ts)
        idx, us = g.pop(0), g.pop(0)
        glb = None if lb is None else g.pop(0)
        gub = None if ub is None else g.pop(0)
        # one set of slopes shared by the rows, or one root's slopes shared by sub-domains: broadcast
        table = self._table().expand(B, R, -1)
        ls = table.gather(2, idx.reshape(B, R, -1)).reshape(idx.shape)
        return ls, glb, us, gub


def compact_params(op, l: Tensor, u: Tensor, rows: int) -> Params | None:
    """CompactReluSlopes for a ReLU op on [l, u] with `rows` spec rows; None for other ops (they keep
    lines.make_params's layout)."""
    if op.kind != "relu":
        return None
    return CompactReluSlopes.create(l.detach(), u.detach(), rows)


__all__ = ["CompactReluSlopes", "compact_params"]
