"""Abstract domains: sets of values and how they are turned into numbers."""
from .interval import Interval
from .linear import LinearBounds
from .symbols import SymbolGroup, SymbolTable
from .zonotope import Zonotope, align, apply_planes, concat

__all__ = ["Interval", "LinearBounds", "SymbolGroup", "SymbolTable", "Zonotope", "align", "apply_planes", "concat"]
