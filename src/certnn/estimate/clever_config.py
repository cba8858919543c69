"""Settings and results of CLEVER (estimate/clever.py): :class:`CleverConfig` (batches N_b, points N_s,
radius R, the reverse-Weibull fit's practice) and :class:`CleverResult` (estimates, never certificates).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ..config import Config, parse_norm
from ..errors import ConfigError
from .weibull import DEFAULT_SHAPE_INITS

__all__ = ["CleverConfig", "CleverResult", "DEFAULT_RADIUS"]

#: Default sampling radius R per perturbation norm, for inputs scaled to [0, 1] (e.g. images with
#: d ~ 10^3): 0.1 for L_inf, 2 for L_2 (about the L_2 size of a 0.1-box corner for d = 400) and 10 for L_1.
#: R caps the score, so it should exceed the adversarial distances one expects to measure.
DEFAULT_RADIUS: dict[str, float] = {"inf": 0.1, "2": 2.0, "1": 10.0}


def _as_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"CleverConfig.{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ConfigError(f"CleverConfig.{name} must be an integer, got {value!r}") from None
    if v < minimum:
        raise ConfigError(f"CleverConfig.{name} must be >= {minimum}, got {v}")
    return v


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"CleverConfig.{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"CleverConfig.{name} must be a number, got {value!r}") from None


@dataclass(frozen=True)
class CleverConfig(Config):
    """Settings of :func:`clever_scores` (Weng et al., ICLR 2018, Algorithm 1).

    Attributes:
        n_batches: N_b, the number of batches, i.e. of maxima the reverse Weibull law is fitted to (the paper
            uses 500; the default 100 costs 5x less and fits a 3-parameter law well).
        n_samples: N_s, points per batch (the paper uses 1024; default 256).
        radius: R, the sampling radius, also the cap of the score. None picks DEFAULT_RADIUS[norm]
            (0.1 for inf, 2 for 2, 10 for 1; meant for inputs in [0, 1]).
        seed: seed of the point sampler (per input i, the stream is seeded by (seed, index_offset + i), see
            clever_scores) and of the 'random' target selection; the same seed gives the same result on the
            same device, whatever the batches or shards the inputs are scored in.
        pool: how each batch's gradient norms are reduced; 'max' (the batch maximum, as in the paper) is
            the only choice EVT supports.
        estimator: 'weibull' fits the reverse Weibull law (the paper); 'max' skips the fit and uses the
            largest observed gradient norm (a cheaper, smaller estimate of L, so a larger score).
        fit_shape_inits: starting shapes c_0 of the Weibull maximum-likelihood fit (the reference code's
            0.1, 1, 5, 10, 20, 50, 100); the fit with the best Kolmogorov-Smirnov p-value is kept.
        fit_shape_reg: weight of a penalty fit_shape_reg * c^2 on the shape in the fit (0: none).
        fit_max_extrapolation: fits whose location lies more than this many observed ranges above the
            largest maximum are rejected (see ``fit_reverse_weibull``).
        fit_min_pvalue: fits whose best KS p-value is lower are rejected and replaced by the largest
            observed maximum (the reference code uses 0.001).
        max_points_per_call: the most rows (replicated points x classes) passed to the model in one
            forward and backward call; bounds memory at about max_points_per_call * d values per tensor.
    """

    n_batches: int = 100
    n_samples: int = 256
    radius: float | None = None
    seed: int = 0
    pool: str = "max"
    estimator: str = "weibull"
    fit_shape_inits: tuple[float, ...] = DEFAULT_SHAPE_INITS
    fit_shape_reg: float = 0.0
    fit_min_pvalue: float = 1e-3
    fit_max_extrapolation: float = 1.0
    max_points_per_call: int = 8192

    choices: ClassVar[dict[str, tuple[Any, ...]]] = {"pool": ("max",), "estimator": ("weibull", "max")}

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "n_batches", _as_int(self.n_batches, "n_batches", 1))
        set_(self, "n_samples", _as_int(self.n_samples, "n_samples", 1))
        set_(self, "seed", _as_int(self.seed, "seed", 0))
        set_(self, "max_points_per_call", _as_int(self.max_points_per_call, "max_points_per_call", 1))
        if self.radius is not None:
            r = _as_float(self.radius, "radius")
            if not (r > 0 and math.isfinite(r)):
                raise ConfigError(f"CleverConfig.radius must be a positive finite number (or None for the "
                                  f"per-norm default), got {self.radius!r}")
            set_(self, "radius", r)
        inits = self.fit_shape_inits
        if isinstance(inits, (int, float)):
            inits = (inits,)
        try:
            inits = tuple(_as_float(c, "fit_shape_inits") for c in inits)
        except TypeError:
            raise ConfigError(f"CleverConfig.fit_shape_inits must be a sequence of positive numbers, "
                              f"got {self.fit_shape_inits!r}") from None
        if not inits or not all(c > 0 and math.isfinite(c) for c in inits):
            raise ConfigError(f"CleverConfig.fit_shape_inits must be a non-empty sequence of positive numbers, "
                              f"got {self.fit_shape_inits!r}")
        set_(self, "fit_shape_inits", inits)
        reg = _as_float(self.fit_shape_reg, "fit_shape_reg")
        if not (reg >= 0 and math.isfinite(reg)):
            raise ConfigError(f"CleverConfig.fit_shape_reg must be >= 0, got {self.fit_shape_reg!r}")
        set_(self, "fit_shape_reg", reg)
        pmin = _as_float(self.fit_min_pvalue, "fit_min_pvalue")
        if not 0.0 <= pmin <= 1.0:
            raise ConfigError(f"CleverConfig.fit_min_pvalue must lie in [0, 1], got {self.fit_min_pvalue!r}")
        set_(self, "fit_min_pvalue", pmin)
        ext = _as_float(self.fit_max_extrapolation, "fit_max_extrapolation")
        if not ext > 0:
            raise ConfigError(f"CleverConfig.fit_max_extrapolation must be > 0, got {self.fit_max_extrapolation!r}")
        set_(self, "fit_max_extrapolation", ext)

    def radius_for(self, norm: str) -> float:
        """R for the perturbation norm: ``radius`` if set, else DEFAULT_RADIUS[norm]."""
        return self.radius if self.radius is not None else DEFAULT_RADIUS[parse_norm(norm)]


@dataclass(frozen=True)
class CleverResult:
    """CLEVER estimates for a batch of B inputs and K classes. All tensors are float64 (bool/long for
    flags and classes) on the CPU, batch first.

    Attributes:
        clever_estimate: (B,) the untargeted score min_{j != c} per_class[:, j], or the targeted score
            per_class[:, target]; 0 for misclassified inputs.
        per_class: (B, K) min(g_j(x0) / L_j, R) per class j; nan for j = c, for classes not evaluated
            (targeted runs evaluate only the target) and for misclassified inputs.
        lipschitz_estimate: (B, K) the estimate L_j of the local cross Lipschitz constant
            max_{x in B_p(x0,R)} ||grad g_j(x)||_q (Weibull location, or the largest observed gradient
            norm on a fallback); nan where not evaluated.
        margin: (B, K) g_j(x0) = f_c(x0) - f_j(x0); nan for j = c.
        fit_ok: (B, K) True where L_j comes from an accepted reverse Weibull fit; False on a fallback to the
            largest observed gradient norm, with estimator 'max', and where not evaluated.
        ks_pvalue: (B, K) Kolmogorov-Smirnov p-value of the best fit (nan where no fit was made).
        label: (B,) the class c each input is scored for (the given y, or the prediction when y is None).
        target: (B,) the target classes of a targeted run, None for an untargeted run.
        misclassified: (B,) True where argmax_k f_k(x0) != c; those inputs get score 0 and no sampling.
        norm: the perturbation norm p ('inf', '2', '1'); gradients are measured in the dual norm q.
        radius: the sampling radius R used.
        config: the :class:`CleverConfig` used.
        seed: the seed used (config.seed).
        dtype, device: where the model was evaluated.
        wall_time_s: wall-clock time of the call.
        method: 'clever'.
    """

    clever_estimate: Tensor
    per_class: Tensor
    lipschitz_estimate: Tensor
    margin: Tensor
    fit_ok: Tensor
    ks_pvalue: Tensor
    label: Tensor
    target: Tensor | None
    misclassified: Tensor
    norm: str
    radius: float
    config: CleverConfig
    seed: int
    dtype: str
    device: str
    wall_time_s: float
    method: str = "clever"

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (lists, floats with nan kept, the config as a dict)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if isinstance(v, Tensor):
                v = v.tolist()
            elif isinstance(v, Config):
                v = v.to_dict()
            out[name] = v
        return out
