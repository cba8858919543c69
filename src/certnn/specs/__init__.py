"""Specifications: what a certificate is about (input sets and unsafe output sets)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .frames import frame_scale, parse_frame_eps, parse_frames  # noqa: F401
    from .lp import LpBall  # noqa: F401
    from .vnnlib import DEFAULT_MAX_DISJUNCTS, InputBox, OutputConjunction, Region, VnnlibProperty, load_vnnlib, parse_vnnlib, property_violated, read_counterexample, write_counterexample  # noqa: F401

#: where each public name lives (imported on first access: `certnn --help` does not import torch)
_EXPORTS = {
    "frame_scale": ".frames", "parse_frame_eps": ".frames", "parse_frames": ".frames", "LpBall": ".lp",
    "DEFAULT_MAX_DISJUNCTS": ".vnnlib", "InputBox": ".vnnlib", "OutputConjunction": ".vnnlib", "Region": ".vnnlib",
    "VnnlibProperty": ".vnnlib", "load_vnnlib": ".vnnlib", "parse_vnnlib": ".vnnlib",
    "property_violated": ".vnnlib", "read_counterexample": ".vnnlib", "write_counterexample": ".vnnlib",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
