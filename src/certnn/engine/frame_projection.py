"""Per-frame L2 balls concretised frame by frame at the slices of the input projection (POPQORN's unrolled
RNNs): the (B, S, T, m) coefficients of the joint projection are never formed.

A recurrent net imported by certnn projects all frames at once, y = x W^T + b with x (T, d) -> y (T, m),
and every step t reads its frame through a Slice y[t]. Under per-frame L2 balls (``LpBall.frame_norm``
'2', no clip box) the set is a product over frames, so the extreme of sum_t L_t . y_t + bias is

    sum_t ( L_t . y_t(x0)  -/+  eps ||L_t W diag(s_t)||_2 ),   ||L_t W diag(s_t)||_2 = ||L_t R_t^T||_2

(R_t from engine/input_projection.py). When each frame is read by exactly one Slice, L_t is that slice's
coefficients as the backward pass pops it (all its consumers have contributed by then), so each slice is
concretised on arrival: a (B S, m) x (m, m) product and a (B, S, m) x (B, m) dot, instead of writing the
slice into a zero-filled (B, S, T, m) sum (split into lower and upper copies), scanning it for live frames
and reading it back. Frames with no coefficients cost nothing.

Exactness: the same terms as engine/input_projection.py's concretisation, summed frame by frame (the
centre's and the norms' additions in another order: the bounds agree to a few ulps,
tests/unit/engine/test_frame_projection.py). Used only where input_projection applies, the set has
per-frame balls and the projection is read by single-frame slices only (else the generic path).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..ops.shape import Slice
from .input_projection import frame_dual, projection_factors


class FrameSink:
    """Running lower / upper concretisations (B, S) of the projection's slices met so far in one pass."""

    def __init__(self, ctx, first: str, frames: dict[str, int]):
        self.ctx, self.first, self.frames = ctx, first, frames
        self.lo: Tensor | None = None
        self.hi: Tensor | None = None

    def takes(self, name: str) -> bool:
        return name in self.frames

    def add(self, name: str, cl: Tensor | None, cu: Tensor | None) -> None:
        """Concretise the coefficients cl / cu (B, S, m) of slice `name` (frame t) over frame t's ball."""
        Rt, y0 = projection_factors(self.ctx, self.first)
        t = self.frames[name]
        y = y0[:, t].unsqueeze(-1)  # (B, m, 1)
        eps = self.ctx.spec.eps.reshape(-1, 1)
        if cl is not None:
            self.lo = _acc(self.lo, _extreme(cl, Rt, t, y, eps, -1.0))
        if cu is not None:
            self.hi = _acc(self.hi, _extreme(cu, Rt, t, y, eps, 1.0))

    def finish(self, lo: Tensor | None, hi: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """The pass's bounds: the rest's (lo, hi: the biases when nothing else reached the input) plus
        the slices' concretisations."""
        lo = lo if lo is None or self.lo is None else lo + self.lo
        hi = hi if hi is None or self.hi is None else hi + self.hi
        return lo, hi


def _extreme(A: Tensor, Rt: Tensor, t: int, y: Tensor, eps: Tensor, sign: float) -> Tensor:
    return torch.bmm(A, y).squeeze(-1) + sign * eps * frame_dual(A, Rt, t)


def _acc(total: Tensor | None, part: Tensor) -> Tensor:
    return part if total is None else total + part


def frame_sink(ctx, first: str | None) -> FrameSink | None:
    """A FrameSink for the projection `first` (engine/input_projection.py's node), or None when a frame is
    not read by exactly one whole-frame Slice, the balls are not per frame, or `first` is captured."""
    if first is None or ctx.spec.frame_norm is None or first in ctx.capture:
        return None
    g = ctx.graph
    shape = g.nodes[first].shape
    if len(shape) != 2:
        return None
    frames: dict[str, int] = {}
    for c in g.consumers(first):
        op = g.nodes[c].op
        if not isinstance(op, Slice) or g.nodes[c].inputs != (first,) or not _whole_frame(op.index, shape[0]):
            return None
        frames[c] = op.index[0] % shape[0]
    if len(set(frames.values())) != len(frames):
        return None
    return FrameSink(ctx, first, frames)


def _whole_frame(index: tuple, T: int) -> bool:
    """index selects one frame and all of its features: (t,) or (t, :)."""
    if not index or isinstance(index[0], bool) or not isinstance(index[0], int) or not -T <= index[0] < T:
        return False
    return all(isinstance(i, slice) and i == slice(None) for i in index[1:])


__all__ = ["FrameSink", "frame_sink"]
