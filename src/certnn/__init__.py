"""certnn: certified robustness of neural networks."""
from __future__ import annotations

__version__ = "0.1.0"
