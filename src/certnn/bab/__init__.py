"""Branch and bound on ReLU splits with beta-CROWN bounds (complete verification).

    from certnn.bab import BabConfig, Problem, branch_and_bound
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .config import BabConfig  # noqa: F401
    from .driver import BabResult, Problem, branch_and_bound  # noqa: F401

#: where each public name lives (imported on first access: `certnn --help` does not import torch)
_EXPORTS = {
    "BabConfig": ".config", "BabResult": ".driver", "Problem": ".driver", "branch_and_bound": ".driver",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
