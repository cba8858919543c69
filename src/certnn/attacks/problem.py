"""The prepared attack problem shared by PGD (attacks/pgd.py), FMN (attacks/fmn.py) and the PGD radius search
(attacks/radius.py): inputs validated and flattened, labels, clip box, per-feature scale, frames; the margin
the attacks rank points by.

Shapes: x (B, *in_shape) is held flat as (B, d); labels (B,); logits (B, K).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import parse_norm
from ..errors import DataError, SpecError
from ..specs.lp import clamp_to_box

Model = Callable[[Tensor], Tensor]


def as_dtype(model: Model, dtype: torch.dtype) -> Model:
    """``model`` running in ``dtype``, without changing ``model`` itself.

    An ``nn.Module`` whose floating parameters and buffers all have ``dtype`` (or that has none) is
    returned as is; otherwise a deep copy converted with ``.to(dtype)`` is returned. Any other callable is
    returned unchanged: it must accept inputs of ``dtype`` itself.
    """
    if not isinstance(model, nn.Module):
        return model
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if all(t.dtype == dtype for t in tensors):
        return model
    return copy.deepcopy(model).to(dtype)


@dataclasses.dataclass(frozen=True)
class _Problem:
    """Validated, flattened tensors of one attack (shared by pgd_attack, fmn_attack and attack_radius)."""

    x: Tensor  # (B, d), dtype of the caller's x
    in_shape: tuple[int, ...]
    y: Tensor  # (B,) long
    target: Tensor | None  # (B,) long
    scale: Tensor | None  # (B, d), dtype of x, >= 0
    lo: Tensor | None  # (B, d), dtype of x
    hi: Tensor | None  # (B, d), dtype of x
    n_classes: int
    #: per-frame balls: the number of frames T (dim 0 of a sample); the norm then applies to each frame
    #: and the frames are independent (L-inf across frames)
    frames: int | None = None

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    def subset(self, idx: Tensor) -> _Problem:
        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[idx]

        return _Problem(self.x[idx], self.in_shape, self.y[idx], pick(self.target), pick(self.scale),
                        pick(self.lo), pick(self.hi), self.n_classes, self.frames)


def _logits(model: Model, x_flat: Tensor, in_shape: tuple[int, ...]) -> Tensor:
    out = model(x_flat.reshape(x_flat.shape[0], *in_shape))
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != x_flat.shape[0]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise DataError(f"the model must return logits of shape (B, K) = ({x_flat.shape[0]}, K); got {got}")
    return out


def _labels(value: object, name: str, batch: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(value, device=device)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise DataError(f"{name} must hold integer class indices; got dtype {t.dtype}")
    if t.shape != (batch,):
        raise DataError(f"{name} must have shape (B,) = ({batch},) to match x; got {tuple(t.shape)}")
    return t.long()


def _broadcast(value: object, name: str, x: Tensor) -> Tensor:
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    try:
        t = torch.broadcast_to(t, x.shape)
    except RuntimeError as exc:
        raise DataError(f"{name} of shape {tuple(t.shape)} does not broadcast to x of shape "
                        f"{tuple(x.shape)}") from exc
    if torch.isnan(t).any():
        raise DataError(f"{name} contains NaN")
    return t.reshape(x.shape[0], math.prod(x.shape[1:]))


def _norms(norm: str, frame_norm: str | None, x: Tensor) -> tuple[str, int | None]:
    """(the norm the steps and projections use, the number of frames or None)."""
    norm = parse_norm(norm)
    if frame_norm is None:
        return norm, None
    from ..specs.lp import check_frame_norm

    shape = tuple(x.shape[1:]) if isinstance(x, Tensor) else ()
    fn = check_frame_norm(norm, frame_norm, shape)
    if fn is None:  # L-inf frames: the plain L-inf ball
        return "inf", None
    return fn, shape[0]


def _prepare(model64: Model, x: Tensor, y: object, target: object, clip: object,
             scale: object, frames: int | None = None) -> tuple[_Problem, Tensor]:
    """Validate the inputs; return the problem and the float64 clean margin (B,)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise DataError(f"x must be a floating-point tensor of shape (B, *in_shape); got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim < 1:
        raise DataError("x must have a batch dimension: shape (B, *in_shape)")
    if not torch.isfinite(x).all():
        raise DataError("x contains NaN or infinite values")
    batch = x.shape[0]
    in_shape = tuple(x.shape[1:])
    x_flat = x.detach().reshape(batch, math.prod(in_shape))
    y_t = _labels(y, "y", batch, x.device)
    t_t = None if target is None else _labels(target, "target", batch, x.device)
    s_t = None
    if scale is not None:
        s_t = _broadcast(scale, "scale", x)
        if not torch.isfinite(s_t).all() or (s_t < 0).any():
            raise DataError("scale must be finite and nonnegative")
    lo_t = hi_t = None
    if clip is not None:
        if not isinstance(clip, (tuple, list)) or len(clip) != 2:
            raise DataError("clip must be None or a pair (lo, hi)")
        lo_t, hi_t = _broadcast(clip[0], "clip lo", x), _broadcast(clip[1], "clip hi", x)
        if (lo_t > hi_t).any():
            raise DataError("clip: lo must be <= hi everywhere")
        # within float rounding of the box: clamped into it (specs/lp.py clamp_to_box); farther: an error
        try:
            x_flat, _ = clamp_to_box(x_flat, lo_t, hi_t)
        except SpecError as exc:
            raise DataError(f"x lies outside the clip box [lo, hi]: {exc}") from None
    with torch.no_grad():
        logits = _logits(model64, x_flat.double(), in_shape) if batch else None
    n_classes = logits.shape[1] if logits is not None else 0
    if logits is not None and n_classes < 2:
        raise DataError(f"the model must return at least 2 logits per sample; got {n_classes}")
    for name, labels in (("y", y_t), ("target", t_t)):
        if labels is not None and batch and ((labels < 0) | (labels >= n_classes)).any():
            raise DataError(f"{name} holds class indices outside [0, {n_classes}) of the model's logits")
    if t_t is not None and (t_t == y_t).any():
        raise DataError("target equals the label y for some samples; a targeted attack needs target != y")
    problem = _Problem(x_flat, in_shape, y_t, t_t, s_t, lo_t, hi_t, n_classes, frames)
    clean = _margin(logits, y_t, t_t) if logits is not None else x_flat.new_zeros(0, dtype=torch.float64)
    return problem, clean


def _eps_vector(eps: float | Tensor, batch: int, like: Tensor) -> Tensor:
    t = torch.as_tensor(eps, dtype=torch.float64, device=like.device)
    if t.ndim == 0:
        t = t.expand(batch)
    elif t.shape != (batch,):
        raise DataError(f"eps must be a number or a tensor of shape (B,) = ({batch},); got {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise DataError("eps must be finite and nonnegative")
    return t.to(like.dtype)


def _margin(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Untargeted max_{j != y} f_j - f_y; targeted f_t - max_{j != t} f_j. (B, K) -> (B,)."""
    cls = y if target is None else target
    mask = F.one_hot(cls, logits.shape[1]).bool()
    own = logits.gather(1, cls[:, None])[:, 0]
    other = logits.masked_fill(mask, float("-inf")).amax(dim=1)
    return other - own if target is None else own - other
