"""Robustness estimates (statistics, never certificates): CLEVER (Weng et al., ICLR 2018)."""
from __future__ import annotations

from .clever import (
    DEFAULT_RADIUS,
    TARGET_MODES,
    CleverConfig,
    CleverResult,
    clever_scores,
    gradient_norm_maxima,
    select_targets,
)
from .sampling import lp_ball_displacements, sample_lp_ball
from .weibull import DEFAULT_SHAPE_INITS, WeibullFit, fit_reverse_weibull

__all__ = [
    "DEFAULT_RADIUS",
    "DEFAULT_SHAPE_INITS",
    "TARGET_MODES",
    "CleverConfig",
    "CleverResult",
    "WeibullFit",
    "clever_scores",
    "fit_reverse_weibull",
    "gradient_norm_maxima",
    "lp_ball_displacements",
    "sample_lp_ball",
    "select_targets",
]
