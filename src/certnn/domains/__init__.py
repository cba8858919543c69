"""Abstract domains: sets of values and how they are turned into numbers."""
from .symbols import SymbolGroup, SymbolTable
from .zonotope import Zonotope, align, apply_planes, concat

__all__ = ["SymbolGroup", "SymbolTable", "Zonotope", "align", "apply_planes", "concat"]
