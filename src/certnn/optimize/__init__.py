"""Optimised bounds: alpha-CROWN (relaxations optimised per neuron and spec row by projected gradient).

    from certnn.optimize import AlphaConfig, optimized_bounds
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .alpha_crown import AlphaResult, bound_with, optimized_bounds  # noqa: F401
    from .beta import SplitBetas  # noqa: F401
    from .config import AlphaConfig  # noqa: F401

#: where each public name lives (imported on first access: `certnn --help` does not import torch)
_EXPORTS = {
    "AlphaResult": ".alpha_crown", "bound_with": ".alpha_crown", "optimized_bounds": ".alpha_crown",
    "SplitBetas": ".beta", "AlphaConfig": ".config",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
