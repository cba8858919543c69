"""Lp-ball input sets, optionally intersected with a box (e.g. the [0, 1] pixel range).

The set for sample b is

    { x0[b] + scale * z  :  ||z||_p <= eps[b] }  ∩  [clip_lo, clip_hi]

A centre that lies outside the clip box by float rounding only (a few float32 ulps, e.g. float32-normalised
pixels against a float64 box) is clamped into it (:func:`clamp_to_box`; the CLI reports it in its JSON);
farther outside is an error.

`scale` (broadcastable to one sample) is a nonnegative weight per input feature: 0 freezes a feature,
so a mask of chosen frames, tokens or pixels is a 0/1 scale; p is 'inf', '2' or '1'.

Linear functions are concretised over the *whole* input of a sample: the dual norm is taken over all
features at once, whatever reshapes or slices follow in the network (a per-slice dual norm is unsound
for p = 2 and p = 1).

Per-frame balls (``frame_norm``)
--------------------------------
For a sequence input (T, ...) per sample, ``frame_norm=q`` with ``norm='inf'`` is the set in which every
frame moves inside its own Lq ball and the frames move independently (L-inf across frames), the threat
model of POPQORN (Ko et al., ICML 2019):

    { x0 + scale * z  :  ||z_t||_q <= eps  for every frame t }  ∩  [clip_lo, clip_hi]

(z_t = z[t] flattened; per-frame weights and frozen frames go into ``scale`` as usual). Its support
function, used to concretise A . x, is the mixed dual norm

    max over the set of A . (x - x0) = eps * sum_t ||(A * scale)_t||_{q*}        (1/q + 1/q* = 1),

because the frames' constraints are independent (the max of a sum of terms in separate variables is the
sum of the maxima) and each term is Hoelder's inequality, attained on frame t's sphere. Every coordinate
still satisfies |z_i| <= ||z_t||_q <= eps, so :meth:`LpBall.box` stays a sound bounding box, and code that
knows nothing about frames and reads ``norm == 'inf'`` as "the box" computes bounds over a superset.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import dual_exponent, parse_norm
from .box_concretize import box_concretize
from ..domains.interval import Interval
from ..errors import SpecError


def _as_tensor(v, like: Tensor) -> Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def check_frame_norm(norm: str, frame_norm, sample_shape: tuple[int, ...]) -> str | None:
    """The validated per-frame norm (None: a plain ball). Per-frame balls are L-inf across frames, so
    `norm` must be 'inf'; L-inf within frames is the plain L-inf ball (None)."""
    if frame_norm is None:
        return None
    frame_norm = parse_norm(frame_norm)
    if norm != "inf":
        raise SpecError(f"a per-frame L{frame_norm} ball is L-inf across frames: use norm 'inf' with frame norm "
                        f"{frame_norm} (got norm {norm!r}); for one joint ball over all frames omit the frame norm")
    if len(sample_shape) < 2:
        raise SpecError(f"per-frame balls need a sequence input (T, ...) per sample; the input is {sample_shape}")
    return None if frame_norm == "inf" else frame_norm


#: centres at most this many float32 ulps (at the box's scale) outside the clip box are clamped into it
CLIP_TOLERANCE_ULPS = 4


def clip_tolerance(lo: Tensor, hi: Tensor, center: Tensor) -> Tensor:
    """How far (absolute, per feature) a centre may lie outside [lo, hi] and still be clamped into it:
    CLIP_TOLERANCE_ULPS float32 ulps at the scale max(|lo|, |hi|, |center|, 1e-30) of the feature. Data
    normalised in float32 ((x - mean) / std) misses a float64 box computed from the same constants by
    about one such ulp."""
    scale = torch.maximum(torch.maximum(torch.nan_to_num(lo.abs(), posinf=0.0), torch.nan_to_num(hi.abs(), posinf=0.0)),
                          center.abs()).clamp(min=1e-30)
    return CLIP_TOLERANCE_ULPS * float(torch.finfo(torch.float32).eps) * scale


@dataclass(frozen=True)
class ClampReport:
    """What clamp_to_box changed: how many samples / values moved and by how much at most."""

    samples: int
    values: int
    max_shift: float

    def as_dict(self) -> dict:
        return {"samples": self.samples, "values": self.values, "max_shift": self.max_shift,
                "tolerance_float32_ulps": CLIP_TOLERANCE_ULPS}


def clamp_to_box(center: Tensor, lo, hi) -> tuple[Tensor, ClampReport]:
    """Clamp centres (B, *shape) that lie within float rounding (clip_tolerance) outside the box [lo, hi]
    into it; raise SpecError naming the worst sample when a centre lies farther outside."""
    lo_t, hi_t = _as_tensor(lo, center), _as_tensor(hi, center)
    if (lo_t > hi_t).any():
        raise SpecError("clip box has lo > hi")
    below = (lo_t - center).clamp(min=0)
    above = (center - hi_t).clamp(min=0)
    out_by = torch.maximum(below, above)
    if not bool((out_by > 0).any()):
        return center, ClampReport(0, 0, 0.0)
    tol = clip_tolerance(lo_t, hi_t, center)
    bad = out_by > tol
    if bool(bad.any()):
        per = out_by.reshape(center.shape[0], -1).amax(1)
        b = int(per.argmax())
        raise SpecError(f"the ball's center (sample {b}) lies {float(per[b]):.3g} outside the clip box, more than "
                        f"float rounding ({CLIP_TOLERANCE_ULPS} float32 ulps); the input set would be empty or "
                        "shifted (check the data's scale, e.g. [0, 1] vs [-0.5, 0.5], or the normalisation)")
    moved = out_by > 0
    clamped = torch.minimum(torch.maximum(center, lo_t), hi_t)
    rep = ClampReport(int(moved.reshape(center.shape[0], -1).any(1).sum()), int(moved.sum()), float(out_by.max()))
    return clamped, rep


@dataclass(frozen=True)
class LpBall:
    center: Tensor  # (B, *in_shape)
    eps: Tensor  # (B,)
    norm: str
    clip: tuple[Tensor, Tensor] | None = None  # each broadcastable to center
    scale: Tensor | None = None  # broadcastable to center[0]
    #: per-frame balls: the norm within each frame (dim 0 of a sample); norm is then 'inf' (across frames)
    frame_norm: str | None = None

    @staticmethod
    def make(center: Tensor, eps, norm, clip=None, scale=None, frame_norm=None) -> "LpBall":
        if not torch.is_floating_point(center):
            raise SpecError("the ball's center must be a floating-point tensor")
        norm = parse_norm(norm)
        frame_norm = check_frame_norm(norm, frame_norm, tuple(center.shape[1:]))
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
            # a centre within float rounding outside the box is clamped into it (clamp_to_box)
            center, _ = clamp_to_box(center, lo, hi)
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
        return LpBall(center, eps_t, norm, clip_t, scale_t, frame_norm)

    @property
    def batch(self) -> int:
        return self.center.shape[0]

    @property
    def is_box(self) -> bool:
        """Whether the set is exactly the box ``box()`` (plain L-inf, or L-inf frames)."""
        return self.norm == "inf" and self.frame_norm is None

    @property
    def frames(self) -> int:
        """Number of frames of a per-frame spec (dim 0 of a sample)."""
        return self.center.shape[1]

    def dual_norm(self, As: Tensor) -> Tensor:
        """The support function's norm of coefficients As (..., n) over one sample's flattened features
        (already multiplied by ``scale``): ||As||_{p*}, or sum over frames of ||As_t||_{q*} for per-frame
        balls. Shape (...)."""
        if self.frame_norm is None:
            return torch.linalg.vector_norm(As, ord=dual_exponent(self.norm), dim=-1)
        T = self.frames
        At = As.reshape(As.shape[:-1] + (T, As.shape[-1] // T))
        return torch.linalg.vector_norm(At, ord=dual_exponent(self.frame_norm), dim=-1).sum(-1)

    def describe(self) -> str:
        """'L2' or 'L2 per frame, L-inf across frames'."""
        if self.frame_norm is None:
            return f"L{self.norm}"
        return f"L{self.frame_norm} per frame, Linf across frames"

    def select(self, index: Tensor) -> "LpBall":
        """The samples `index` of this set (clip bounds with a batch dim are cut too)."""
        clip = None
        if self.clip is not None:
            clip = tuple(c[index] if c.dim() == self.center.dim() and c.shape[0] == self.batch else c
                         for c in self.clip)
        return LpBall(self.center[index], self.eps[index], self.norm, clip, self.scale, self.frame_norm)

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
        Af = A.reshape(B, S, -1)
        if self.is_box and self.clip is None and self.scale is None and Af.dtype == torch.float64:
            # the plain L-inf ball: |A| . r = eps ||A||_1, one fused reduction instead of |A| and a bmm
            # (float64 only: float32-sound's rounding model, engine/rounding.py, is written for the bmm form)
            c = self.center.reshape(B, -1, 1).to(Af.dtype)
            return box_concretize(Af, c, sign * self.eps.reshape(B, 1).to(Af.dtype)) + bias
        ball_only = not self.is_box and self.clip is None and Af.dtype == torch.float64
        if not ball_only:
            box = self.box()
            # batched matrix-vector products: one pass over A (and one over |A|), no (B, S, n) temporaries
            mid = box.center.reshape(B, -1, 1).to(Af.dtype)
            rad = box.radius.reshape(B, -1, 1).to(Af.dtype)
            box_val = torch.bmm(Af, mid).squeeze(-1) + sign * torch.bmm(Af.abs(), rad).squeeze(-1) + bias
            if self.is_box:
                return box_val
        # ball bound: A.x0 +- eps ||A * scale||_q over the whole input of the sample (per frame: the sum over
        # frames of the frames' dual norms)
        As = Af if self.scale is None else Af * torch.broadcast_to(self.scale, self.center.shape[1:]).reshape(1, 1, -1)
        dual = self.dual_norm(As)
        ball_val = torch.bmm(Af, self.center.reshape(B, -1, 1)).squeeze(-1) + sign * self.eps.reshape(B, 1) * dual + bias
        if ball_only:
            # without a clip box the ball lies inside box() (|scale_i z_i| <= eps scale_i), so the box bound
            # is never tighter (||v||_q* <= ||v||_1; equal only up to rounding): its two products are skipped
            return ball_val
        if side == "lower":
            return torch.maximum(ball_val, box_val)
        return torch.minimum(ball_val, box_val)

    def minimizer(self, A: Tensor) -> Tensor:
        """A point of each sample's set (B, *in_shape) where the linear function A[b] . x (A (B, *in_shape))
        is small: the exact minimiser for L-inf (a box), the ball's minimiser clipped into the box for L2
        / L1 (a candidate point, e.g. for a counterexample search, not a bound); per-frame balls take each
        frame's minimiser (clipping into the box keeps every frame inside its ball)."""
        box = self.box()
        if self.is_box:
            return torch.where(A > 0, box.lower, box.upper)
        B = self.batch
        s = torch.ones_like(self.center) if self.scale is None else torch.broadcast_to(self.scale, self.center.shape)
        rows = B * self.frames if self.frame_norm else B
        As = (A * s).reshape(rows, -1)
        norm = self.frame_norm or self.norm
        if norm == "inf":  # L-inf within frames: the frame's corner
            z = -torch.sign(As)
        elif norm == "2":
            z = -As / torch.linalg.vector_norm(As, dim=1, keepdim=True).clamp(min=1e-300)
        else:
            z = torch.zeros_like(As)
            k = As.abs().argmax(1)
            at = torch.arange(rows, device=As.device)
            z[at, k] = -torch.sign(As[at, k])
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
        p = {"inf": float("inf"), "2": 2.0, "1": 1.0}[self.frame_norm or self.norm]
        if self.frame_norm is None:
            n = torch.linalg.vector_norm(z.reshape(x.shape[0], -1), ord=p, dim=1)
        else:  # the largest frame norm (L-inf across frames)
            n = torch.linalg.vector_norm(z.reshape(x.shape[0], self.frames, -1), ord=p, dim=2).amax(1)
        ok = (n <= self.eps * (1 + tol) + tol) & ok_frozen
        if self.clip is not None:
            ok &= ((x >= self.clip[0] - tol) & (x <= self.clip[1] + tol)).reshape(x.shape[0], -1).all(1)
        return ok
