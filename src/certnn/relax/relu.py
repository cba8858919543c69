"""Linear relaxations of ReLU-like piecewise-linear activations.

References: Fast-Lin (Weng et al., ICML 2018) and CROWN (Zhang et al., NeurIPS 2018).
For an unstable neuron (l < 0 < u) both methods use the chord as the upper line,

    relu(x) <= u / (u - l) * (x - l),

and differ in the lower line: Fast-Lin takes the same slope u/(u-l) through the origin, CROWN picks the
slope in {0, 1} that minimises the area between the lines (1 if u >= -l else 0). Any slope in [0, 1]
through the origin is sound; the caller may also pass its own (alpha-CROWN style) slopes.

Soundness: exact in real arithmetic for every case, including l == u and intervals touching 0, since
each case uses lines that touch relu at the interval's ends and relu is convex.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .types import LinearRelaxation


def _chord(l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    width = u - l
    unstable = (l < 0) & (u > 0)
    safe = torch.where(unstable, width, torch.ones_like(width))
    slope = torch.where(unstable, u / safe, (l >= 0).to(l.dtype))
    bias = torch.where(unstable, -slope * l, torch.zeros_like(l))
    return slope, bias


def relu_relaxation(l: Tensor, u: Tensor, lower: str = "adaptive", alpha: Tensor | None = None) -> LinearRelaxation:
    """Lines bounding relu on [l, u] (elementwise, any shape).

    lower: 'adaptive' (CROWN), 'parallel' (Fast-Lin: lower slope = upper slope), 'zero', or 'alpha'
    (use the given slopes `alpha`, clamped to [0, 1], for unstable neurons).
    """
    up_slope, up_bias = _chord(l, u)
    unstable = (l < 0) & (u > 0)
    active = l >= 0
    if lower == "adaptive":
        lo_unstable = (u >= -l).to(l.dtype)
    elif lower == "parallel":
        lo_unstable = up_slope
    elif lower == "zero":
        lo_unstable = torch.zeros_like(l)
    elif lower == "alpha":
        if alpha is None:
            raise ValueError("lower='alpha' needs alpha")
        lo_unstable = alpha.clamp(0.0, 1.0)
    else:
        raise ValueError(f"unknown ReLU lower-bound mode {lower!r}")
    lo_slope = torch.where(unstable, lo_unstable, active.to(l.dtype))
    return LinearRelaxation(lo_slope, torch.zeros_like(l), up_slope, up_bias)


def leaky_relu_relaxation(l: Tensor, u: Tensor, negative_slope: float, lower: str = "adaptive",
                          alpha: Tensor | None = None) -> LinearRelaxation:
    """Lines bounding leaky_relu(x) = max(x, a x) (0 <= a <= 1, convex) on [l, u].

    Upper: the chord. Lower: a line through the origin with slope in [a, 1] ('adaptive' picks the end
    closer to the chord, 'parallel' the chord's slope).
    """
    a = float(negative_slope)
    if not 0.0 <= a <= 1.0:
        raise ValueError("leaky_relu_relaxation supports 0 <= negative_slope <= 1")
    unstable = (l < 0) & (u > 0)
    width = torch.where(unstable, u - l, torch.ones_like(l))
    chord_slope = torch.where(unstable, (u - a * l) / width, torch.where(l >= 0, torch.ones_like(l), torch.full_like(l, a)))
    chord_bias = torch.where(unstable, u - chord_slope * u, torch.zeros_like(l))
    stable_slope = torch.where(l >= 0, torch.ones_like(l), torch.full_like(l, a))
    if lower == "adaptive":
        lo_unstable = torch.where(u >= -l, torch.ones_like(l), torch.full_like(l, a))
    elif lower == "parallel":
        lo_unstable = chord_slope
    elif lower == "alpha" and alpha is not None:
        lo_unstable = alpha.clamp(a, 1.0)
    else:
        raise ValueError(f"unknown leaky-ReLU lower-bound mode {lower!r}")
    lo_slope = torch.where(unstable, lo_unstable, stable_slope)
    return LinearRelaxation(lo_slope, torch.zeros_like(l), chord_slope, chord_bias)


def hardtanh_relaxation(l: Tensor, u: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> LinearRelaxation:
    """Lines bounding hardtanh(x) = clamp(x, min_val, max_val) on [l, u].

    Cases: fully saturated or fully linear pieces are exact. Otherwise the function is clamp, which is
    neither convex nor concave; we use for each side the line through the interval's end values
    ('chord' from (l, h(l)) to (u, h(u))) shifted by the exact worst violation, which is attained at the
    kinks min_val / max_val or the ends, so the result is sound by construction.
    """
    def h(x: Tensor) -> Tensor:
        return x.clamp(min_val, max_val)

    width = u - l
    degenerate = width <= 0
    safe = torch.where(degenerate, torch.ones_like(width), width)
    slope = torch.where(degenerate, ((l > min_val) & (l < max_val)).to(l.dtype), (h(u) - h(l)) / safe)
    base = h(l) - slope * l
    cands = [l, u, torch.full_like(l, min_val).clamp(min=l).clamp(max=u), torch.full_like(l, max_val).clamp(min=l).clamp(max=u)]
    gaps = torch.stack([h(c) - (slope * c + base) for c in cands])
    lo_bias = base + gaps.min(0).values
    up_bias = base + gaps.max(0).values
    return LinearRelaxation(slope, lo_bias, slope.clone(), up_bias)
