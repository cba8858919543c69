"""Robustness estimates (statistics, never certificates): CLEVER (Weng et al., ICLR 2018)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .clever import DEFAULT_RADIUS, TARGET_MODES, CleverConfig, CleverResult, clever_scores, gradient_norm_maxima, select_targets  # noqa: F401
    from .sampling import lp_ball_displacements, sample_lp_ball  # noqa: F401
    from .weibull import DEFAULT_SHAPE_INITS, WeibullFit, fit_reverse_weibull  # noqa: F401

#: where each public name lives (imported on first access: `certnn --help` does not import torch)
_EXPORTS = {
    "DEFAULT_RADIUS": ".clever", "TARGET_MODES": ".clever", "CleverConfig": ".clever", "CleverResult": ".clever",
    "clever_scores": ".clever", "gradient_norm_maxima": ".clever", "select_targets": ".clever",
    "lp_ball_displacements": ".sampling", "sample_lp_ball": ".sampling", "DEFAULT_SHAPE_INITS": ".weibull",
    "WeibullFit": ".weibull", "fit_reverse_weibull": ".weibull",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
