"""Optimised bounds: alpha-CROWN (relaxations optimised per neuron and spec row by projected gradient).

    from certnn.optimize import AlphaConfig, optimized_bounds
"""
from .alpha_crown import AlphaResult, optimized_bounds
from .config import AlphaConfig

__all__ = ["AlphaConfig", "AlphaResult", "optimized_bounds"]
