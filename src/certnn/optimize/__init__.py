"""Optimised bounds: alpha-CROWN (relaxations optimised per neuron and spec row by projected gradient).

    from certnn.optimize import AlphaConfig, optimized_bounds
"""
from .alpha_crown import AlphaResult, bound_with, optimized_bounds
from .beta import SplitBetas
from .config import AlphaConfig

__all__ = ["AlphaConfig", "AlphaResult", "SplitBetas", "bound_with", "optimized_bounds"]
