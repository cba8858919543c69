"""Perturbing chosen frames (time steps) or tokens' embeddings of a sequence input.

A sequence model's input is (T, d) per sample (graph/recurrent.py). The threat model "an Lp ball on
frames F, frame t with its own relative radius w_t" is the LpBall with a per-feature ``scale``

    scale[t, :] = w_t  for t in F,      scale[t, :] = 0  otherwise            shape (T, d),

i.e. the set { x0 + scale * z : ||z||_p <= eps }: frames outside F are frozen and frame t moves by at most
w_t * eps (in the chosen norm, jointly over all perturbed frames). The certified radius searched for such
a spec is the largest eps, so it is measured in units of the weights (w_t = 1 means plain eps).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import SpecError


def parse_frames(text: str | None) -> tuple[int, ...] | None:
    """'0,3,5' -> (0, 3, 5); 'all' or None -> None (all frames); '-1' is the last frame."""
    if text is None or str(text).strip().lower() in ("", "all"):
        return None
    try:
        return tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise SpecError(f"--frames {text!r}: expected 'all' or integers separated by commas, e.g. 0,3,5") from None


def parse_frame_eps(text: str | None) -> tuple[float, ...] | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        return tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise SpecError(f"--frame-eps {text!r}: expected numbers separated by commas, e.g. 1,0.5,1") from None


def frame_scale(input_shape: Sequence[int], frames: int | Sequence[int] | None = None,
                frame_eps: float | Sequence[float] | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """The LpBall scale (T, *rest) that perturbs only `frames` (None: all), frame frames[k] with the
    relative radius frame_eps[k] (a scalar applies to every chosen frame; None means 1).

    Frames index dim 0 of the per-sample input (time steps, or tokens for an embedded sequence);
    negative indices count from the end. Raises SpecError for out-of-range or repeated frames, a
    frame_eps of the wrong length, or negative / non-finite weights.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2:
        raise SpecError(f"frames need a sequence input (T, d) per sample; the model's input is {shape}")
    T = shape[0]
    if frames is None:
        idx = list(range(T))
    elif isinstance(frames, int):
        idx = [frames]
    else:
        idx = [int(f) for f in frames]
    if not idx:
        raise SpecError("no frames chosen")
    bad = [f for f in idx if not -T <= f < T]
    if bad:
        raise SpecError(f"frames {bad} out of range for a sequence of {T} frames (valid: 0..{T - 1}, or negative)")
    norm_idx = [f % T for f in idx]
    if len(set(norm_idx)) != len(norm_idx):
        raise SpecError(f"frames {list(idx)} repeat a frame")
    if frame_eps is None:
        w = [1.0] * len(idx)
    elif isinstance(frame_eps, (int, float)):
        w = [float(frame_eps)] * len(idx)
    else:
        w = [float(v) for v in frame_eps]
        if len(w) != len(idx):
            raise SpecError(f"{len(w)} frame eps values for {len(idx)} frames; give one per chosen frame")
    wt = torch.tensor(w, dtype=torch.float64)
    if not torch.isfinite(wt).all() or (wt < 0).any():
        raise SpecError("frame eps values must be finite and nonnegative")
    scale = torch.zeros(shape, dtype=dtype)
    for f, v in zip(norm_idx, w):
        scale[f] = v
    return scale
