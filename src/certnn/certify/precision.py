"""Working precision of a bound computation: "float64" (default), "float32" (fast, rounding not
accounted for) and "float32-sound" (float32 with every step widened by an a priori bound on its rounding
error, engine/rounding.py).

In float32-sound mode the input set is made a superset of the one asked for before anything is computed:
the centre is rounded to float32 and eps grows by the rounding's distance (in the ball's norm, rounded
up); clip boxes are rounded outward; a model whose weights are not float32 numbers is refused (its float32
copy would be another network).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..engine.rounding import Rounding
from ..errors import ConfigError
from ..graph.ir import Graph

PRECISIONS = ("float64", "float32", "float32-sound")
#: methods whose bounds float32-sound widens (the backward and interval engines)
SOUND_ENGINES = ("backward", "interval", "optimized")


def parse_precision(dtype) -> tuple[torch.dtype, bool]:
    """(torch dtype, sound) of a dtype given as torch.float64 / torch.float32 or one of PRECISIONS."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float64, torch.float32):
            raise ConfigError(f"dtype {dtype} is not supported; choose one of {', '.join(PRECISIONS)}")
        return dtype, False
    if dtype not in PRECISIONS:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(PRECISIONS)}")
    return (torch.float64 if dtype == "float64" else torch.float32), dtype == "float32-sound"


def check_float32_weights(graph64: Graph, graph32: Graph) -> None:
    """Raise ConfigError when a tensor of the float64 graph is not exactly a float32 number."""
    for name in graph64.order:
        a, b = graph64.nodes[name].op, graph32.nodes[name].op
        for key, t in vars(a).items():
            t32 = vars(b).get(key)
            if isinstance(t, Tensor) and torch.is_floating_point(t) and isinstance(t32, Tensor):
                if not torch.equal(t32.to(torch.float64), t.to(torch.float64)):
                    raise ConfigError(f"float32-sound: {key} of node {name!r} has values that are not float32 "
                                      "numbers, so the float32 network would differ from the model; use float64")


def round_away(t: Tensor, up: bool, dtype: torch.dtype = torch.float32) -> Tensor:
    """t (float64) as `dtype`, rounded up (`up`) or down: every value of the result is >= (<=) t's."""
    low = t.to(dtype)
    target = torch.full_like(low, float("inf") if up else float("-inf"))
    moved = torch.nextafter(low, target)
    bad = (low.to(torch.float64) < t) if up else (low.to(torch.float64) > t)
    return torch.where(bad, moved, low)


def sound_inputs(x: Tensor, eps, norm: str, clip, frame_norm: str | None, scale) -> tuple[Tensor, Tensor, tuple | None]:
    """(centre (float32), eps per sample (float32, rounded up), clip (float32, outward)) whose set contains
    the float64 set of (x, eps, clip). A per-feature scale must be exactly representable (features it
    freezes must then have exact centres)."""
    x64 = torch.as_tensor(x).to(torch.float64)
    x32 = x64.to(torch.float32)
    d = (x64 - x32.to(torch.float64)).reshape(x64.shape[0], -1)
    B = x64.shape[0]
    if scale is not None:
        s = torch.broadcast_to(torch.as_tensor(scale, dtype=torch.float64), x64.shape[1:]).reshape(1, -1)
        if not torch.equal(s.to(torch.float32).to(torch.float64), s):
            raise ConfigError("float32-sound: the per-feature scale must consist of float32 numbers")
        if ((s == 0) & (d != 0)).any():
            raise ConfigError("float32-sound: inputs of frozen features (scale 0) must be float32 numbers")
        d = torch.where(s == 0, torch.zeros_like(d), d / torch.where(s == 0, torch.ones_like(s), s))
    p = {"inf": float("inf"), "2": 2.0, "1": 1.0}[frame_norm or norm]
    if frame_norm is None:
        dist = torch.linalg.vector_norm(d, ord=p, dim=1)
    else:
        dist = torch.linalg.vector_norm(d.reshape(B, x64.shape[1], -1), ord=p, dim=2).amax(1)
    eps64 = torch.as_tensor(eps, dtype=torch.float64).expand(B)
    eps32 = round_away((eps64 + dist) * (1 + 2.0 ** -50), up=True)
    clip32 = None
    if clip is not None:
        lo, hi = (torch.as_tensor(c, dtype=torch.float64) for c in clip)
        clip32 = (round_away(lo, up=False), round_away(hi, up=True))
    return x32, eps32, clip32
