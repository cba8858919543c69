"""Abstract domains: sets of values and how they are turned into numbers."""
from .interval import Interval
from .linear import LinearBounds

__all__ = ["Interval", "LinearBounds"]
