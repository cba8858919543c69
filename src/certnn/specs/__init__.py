"""Input sets and output properties."""
from .lp import LpBall

__all__ = ["LpBall"]
