"""Lp-ball input sets, optionally intersected with a box (e.g. the [0, 1] pixel range).

The set for sample b is

    { x0[b] + scale * z  :  ||z||_p <= eps[b] }  ∩  [clip_lo, clip_hi]

`scale` (broadcastable to one sample) is a nonnegative weight per input feature: 0 freezes a feature,
so a mask of chosen frames, tokens or pixels is a 0/1 scale; p is 'inf', '2' or '1'.

Linear functions are concretised over the *whole* input of a sample: the dual norm is taken over all
features at once, whatever reshapes or slices follow in the network (a per-slice dual norm is unsound
for p = 2 and p = 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import dual_exponent, parse_norm
from ..domains.interval import Interval
from ..errors import SpecError


def _as_tensor(v, like: Tensor) -> Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


@dataclass(frozen=True)
class LpBall:
    center: Tensor  # (B, *in_shape)
    eps: Tensor  # (B,)
    norm: str
    clip: tuple[Tensor, Tensor] | None = None  # each broadcastable to center
    scale: Tensor | None = None  # broadcastable to center[0]

    @staticmethod
    def make(center: Tensor, eps, norm, clip=None, scale=None) -> "LpBall":
        if not torch.is_floating_point(center):
            raise SpecError("the ball's center must be a floating-point tensor")
        norm = parse_norm(norm)
        eps_t = _as_tensor(eps, center)
        if eps_t.ndim == 0:
            eps_t = eps_t.expand(center.shape[0]).clone()
        if eps_t.shape != (center.shape[0],):
            raise SpecError(f"eps must be a scalar or have shape ({center.shape[0]},), got {tuple(eps_t.shape)}")
        if not torch.isfinite(eps_t).all() or (eps_t < 0).any():
            raise SpecError("eps must be finite and nonnegative")
        clip_t = None
        if clip is not None:
            lo, hi = (_as_tensor(c, center) for c in clip)
            if (lo > hi).any():
                raise SpecError("clip box has lo > hi")
            tol = 1e-9 * (1 + center.abs())
            if ((center < lo - tol) | (center > hi + tol)).any():
                raise SpecError("the ball's center lies outside the clip box; the input set would be empty "
                                "(check the data's scale, e.g. [0, 1] vs [-0.5, 0.5])")
            clip_t = (lo, hi)
        scale_t = None
        if scale is not None:
            scale_t = _as_tensor(scale, center)
            if (scale_t < 0).any():
                raise SpecError("scale must be nonnegative")
            try:
                torch.broadcast_shapes(scale_t.shape, center.shape[1:])
            except RuntimeError as exc:
                raise SpecError(f"scale of shape {tuple(scale_t.shape)} does not broadcast to one input "
                                f"of shape {tuple(center.shape[1:])}") from exc
        return LpBall(center, eps_t, norm, clip_t, scale_t)

    @property
    def batch(self) -> int:
        return self.center.shape[0]

    def select(self, index: Tensor) -> "LpBall":
        """The samples `index` of this set (clip bounds with a batch dim are cut too)."""
        clip = None
        if self.clip is not None:
            clip = tuple(c[index] if c.dim() == self.center.dim() and c.shape[0] == self.batch else c
                         for c in self.clip)
        return LpBall(self.center[index], self.eps[index], self.norm, clip, self.scale)

    def _eps_b(self) -> Tensor:
        return self.eps.reshape((-1,) + (1,) * (self.center.ndim - 1))

    def box(self) -> Interval:
        """Coordinate-wise bounds of the set (|z_i| <= eps for every p >= 1), intersected with the clip box."""
        r = self._eps_b() * (self.scale if self.scale is not None else 1.0)
        r = torch.broadcast_to(r, self.center.shape)
        lo, hi = self.center - r, self.center + r
        if self.clip is not None:
            lo = torch.maximum(lo, self.clip[0])
            hi = torch.minimum(hi, self.clip[1])
        return Interval(lo, hi)

    def concretize(self, A: Tensor, bias: Tensor, side: str) -> Tensor:
        """min (side='lower') or max (side='upper') of A[b, s] . x + bias[b, s] over the set; shape (B, S)."""
        B, S = A.shape[:2]
        sign = -1.0 if side == "lower" else 1.0
        box = self.box()
        Af = A.reshape(B, S, -1)
        # batched matrix-vector products: one pass over A (and one over |A|), no (B, S, n) temporaries
        mid = box.center.reshape(B, -1, 1).to(Af.dtype)
        rad = box.radius.reshape(B, -1, 1).to(Af.dtype)
        box_val = torch.bmm(Af, mid).squeeze(-1) + sign * torch.bmm(Af.abs(), rad).squeeze(-1) + bias
        if self.norm == "inf":
            return box_val
        # ball bound: A.x0 +- eps ||A * scale||_q over the whole input of the sample
        As = Af if self.scale is None else Af * torch.broadcast_to(self.scale, self.center.shape[1:]).reshape(1, 1, -1)
        q = dual_exponent(self.norm)
        dual = torch.linalg.vector_norm(As, ord=q, dim=-1)
        ball_val = torch.bmm(Af, self.center.reshape(B, -1, 1)).squeeze(-1) + sign * self.eps.reshape(B, 1) * dual + bias
        if side == "lower":
            return torch.maximum(ball_val, box_val)
        return torch.minimum(ball_val, box_val)

    def minimizer(self, A: Tensor) -> Tensor:
        """A point of each sample's set (B, *in_shape) where the linear function A[b] . x (A (B, *in_shape))
        is small: the exact minimiser for L-inf (a box), the ball's minimiser clipped into the box for L2
        / L1 (a candidate point, e.g. for a counterexample search, not a bound)."""
        box = self.box()
        if self.norm == "inf":
            return torch.where(A > 0, box.lower, box.upper)
        B = self.batch
        s = torch.ones_like(self.center) if self.scale is None else torch.broadcast_to(self.scale, self.center.shape)
        As = (A * s).reshape(B, -1)
        if self.norm == "2":
            z = -As / torch.linalg.vector_norm(As, dim=1, keepdim=True).clamp(min=1e-300)
        else:
            z = torch.zeros_like(As)
            k = As.abs().argmax(1)
            z[torch.arange(B), k] = -torch.sign(As[torch.arange(B), k])
        x = self.center + self.eps.reshape((-1,) + (1,) * (self.center.dim() - 1)) * z.reshape(A.shape) * s
        return torch.minimum(torch.maximum(x, box.lower), box.upper)

    def contains(self, x: Tensor, tol: float = 1e-9) -> Tensor:
        """Per-sample membership test of concrete points x (B, *in_shape)."""
        d = x - self.center
        if self.scale is not None:
            s = torch.broadcast_to(self.scale, self.center.shape[1:])
            frozen = s == 0
            z = torch.where(frozen, torch.zeros_like(d), d / torch.where(frozen, torch.ones_like(s), s))
            ok_frozen = ~((d.abs() > tol) & frozen).reshape(x.shape[0], -1).any(1)
        else:
            z = d
            ok_frozen = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        p = {"inf": float("inf"), "2": 2.0, "1": 1.0}[self.norm]
        n = torch.linalg.vector_norm(z.reshape(x.shape[0], -1), ord=p, dim=1)
        ok = (n <= self.eps * (1 + tol) + tol) & ok_frozen
        if self.clip is not None:
            ok &= ((x >= self.clip[0] - tol) & (x <= self.clip[1] + tol)).reshape(x.shape[0], -1).all(1)
        return ok
