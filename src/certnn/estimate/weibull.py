"""Reverse Weibull fit of batch maxima: the extreme-value step of CLEVER.

Weng et al. (ICLR 2018), Sec. 3.3 and Algorithm 1: the maxima S = {max_k ||grad g(x^(i,k))||_q}_{i=1..N_b}
of a continuous quantity on a bounded set follow (by the Fisher-Tippett-Gnedenko theorem, for the bounded
support case) a reverse Weibull law

    F(y) = exp(-((a_W - y) / b_W)^(c_W))   for y < a_W,   1 for y >= a_W,

with location a_W (the right end of the support), scale b_W and shape c_W. a_W estimates the local
Lipschitz constant L_q^j = max_{x in B_p(x0, R)} ||grad g_j(x)||_q. This is ``scipy.stats.weibull_max``
with (c, loc, scale) = (c_W, a_W, b_W).

Fitting practice (the paper's reference code, re-implemented here):

* the maxima are shifted by their maximum and divided by their range, z = (s - max s) / (max s - min s) in
  [-1, 0], which keeps the maximum-likelihood solver in a well-scaled region; the fitted location and scale
  are mapped back;
* the MLE (Nelder-Mead, scipy's default) is started from several shape guesses c_0 (default 0.1, 1, 5, 10,
  20, 50, 100) and the fit with the largest Kolmogorov-Smirnov p-value is kept; an optional penalty
  ``shape_reg * c^2`` keeps the solver from drifting to huge shapes;
* the fit is rejected, and the estimate falls back to the largest observed maximum max(S), when every
  start fails, when the best KS p-value is below ``min_pvalue`` (the reference code uses 0.001), when the
  parameters are not finite, or when the location lies below max(S) (impossible for a valid fit, whose
  support must contain the data). When all maxima are equal (the gradient norm is constant on the ball,
  e.g. an affine model) there is nothing to fit and max(S) is exact; that case is also reported as a
  fallback. A fallback is flagged with ``ok = False``; max(S) is a lower estimate of the Lipschitz constant
  and so errs towards a larger (less conservative) score.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.optimize
from scipy import stats

__all__ = ["WeibullFit", "fit_reverse_weibull", "DEFAULT_SHAPE_INITS"]

DEFAULT_SHAPE_INITS: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0)

# Relative tolerance (in units of the maxima's range) under which a location just below max(S) is taken to
# be max(S) itself rather than a failed fit: rounding in the rescaling alone can produce such a location.
_LOC_RTOL = 1e-8


@dataclass(frozen=True)
class WeibullFit:
    """Result of :func:`fit_reverse_weibull`.

    Attributes:
        location: the estimate of a_W (the fitted location, or max(S) on a fallback); nan if S holds no
            finite value.
        shape, scale: c_W and b_W of the accepted fit (nan on a fallback).
        ks_statistic, pvalue: the Kolmogorov-Smirnov test of the accepted fit (nan on a fallback; for a
            rejected fit, the best p-value seen is kept in ``pvalue``).
        ok: True when the location comes from an accepted fit, False on a fallback.
        reason: '' when ok, else why the fit was not used.
        sample_max: max(S) over the finite maxima.
    """

    location: float
    shape: float
    scale: float
    ks_statistic: float
    pvalue: float
    ok: bool
    reason: str
    sample_max: float


def _regularised_fmin(shape_reg: float) -> Callable:
    """An optimizer for scipy's ``rv_continuous.fit`` minimising nll(theta) + shape_reg * c^2 with Nelder-Mead;
    theta = (c, loc, scale) for weibull_max."""

    def optimizer(func, x0, args=(), disp=0):
        def penalised(theta, *a):
            return func(theta, *a) + shape_reg * float(theta[0]) ** 2

        return scipy.optimize.fmin(penalised, x0, args=args, disp=disp, xtol=1e-4, ftol=1e-4)

    return optimizer


def _fallback(smax: float, reason: str, pvalue: float = float("nan")) -> WeibullFit:
    nan = float("nan")
    return WeibullFit(location=smax, shape=nan, scale=nan, ks_statistic=nan, pvalue=pvalue, ok=False,
                      reason=reason, sample_max=smax)


def _fit_from(z: np.ndarray, c0: float, optimizer) -> tuple[float, float, float, float, float] | None:
    """(KS p-value, KS statistic, c, loc, scale) of the maximum-likelihood fit of the normalised maxima z
    started at shape c0 (scipy's plain fit when optimizer is None), or None when it fails or is not
    finite (c > 0, scale > 0)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if optimizer is None:
                c, loc, scale = stats.weibull_max.fit(z, c0)
            else:
                c, loc, scale = stats.weibull_max.fit(z, c0, optimizer=optimizer)
            if not (np.isfinite(c) and np.isfinite(loc) and np.isfinite(scale) and c > 0 and scale > 0):
                return None
            ks = stats.kstest(z, stats.weibull_max(c, loc=loc, scale=scale).cdf)
    except (ValueError, RuntimeError, FloatingPointError, OverflowError):
        return None
    pval = float(ks.pvalue)
    if not np.isfinite(pval):
        return None
    return pval, float(ks.statistic), float(c), float(loc), float(scale)


def fit_reverse_weibull(maxima: Sequence[float] | np.ndarray, *,
                        shape_inits: Sequence[float] = DEFAULT_SHAPE_INITS,
                        shape_reg: float = 0.0, min_pvalue: float = 1e-3,
                        max_extrapolation: float = 1.0) -> WeibullFit:
    """Fit a reverse Weibull law to the maxima S (N_b,) and return its location a_W (see the module docstring).

    Args:
        maxima: S, shape (N_b,); non-finite entries are ignored.
        shape_inits: starting shapes c_0 of the maximum-likelihood fit; the best KS p-value wins.
        shape_reg: weight of the penalty shape_reg * c^2 (0 disables it; then scipy's plain fit runs).
        min_pvalue: reject fits whose best KS p-value is below this value (0 accepts any finite fit).
        max_extrapolation: reject fits whose location lies more than this many observed ranges
            (max - min of the maxima) above the largest maximum. On ReLU networks the gradient norm is
            piecewise constant, the maxima tie, and the maximum-likelihood fit can put the endpoint far
            beyond anything observed (seen: 15x the observed maximum), which turns CLEVER into a tiny,
            meaningless score. inf disables the guard (the paper's code has none).

    Returns:
        A :class:`WeibullFit`; ``location`` is the estimate of the Lipschitz constant.
    """
    s = np.asarray(maxima, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        return _fallback(float("nan"), "no finite maxima")
    smax = float(s.max())
    srange = smax - float(s.min())
    if not srange > 1e-12 * max(abs(smax), np.finfo(np.float64).tiny):
        return _fallback(smax, "all maxima equal (constant gradient norm)")
    if s.size < 3:
        return _fallback(smax, "fewer than 3 distinct maxima")
    z = (s - smax) / srange
    optimizer = _regularised_fmin(shape_reg) if shape_reg > 0 else None
    fits = (_fit_from(z, float(c0), optimizer) for c0 in shape_inits)
    best = None  # (pvalue, ks, c, loc, scale): the first fit with the highest p-value
    for fit in fits:
        if fit is not None and (best is None or fit[0] > best[0]):
            best = fit
    if best is None:
        return _fallback(smax, "the maximum-likelihood fit failed from every starting shape")
    pval, ks_stat, c, loc, scale = best
    if pval < min_pvalue:
        return _fallback(smax, f"poor fit: best KS p-value {pval:.3g} < {min_pvalue:g}", pvalue=pval)
    location = smax + loc * srange
    if loc > max_extrapolation:
        return _fallback(smax, f"fitted location {location:.4g} extrapolates more than {max_extrapolation:g} "
                               "observed ranges beyond the largest maximum", pvalue=pval)
    if location < smax:
        if loc < -_LOC_RTOL:
            return _fallback(smax, "fitted location below the largest observed maximum", pvalue=pval)
        location = smax
    return WeibullFit(location=float(location), shape=c, scale=scale * srange, ks_statistic=ks_stat,
                      pvalue=pval, ok=True, reason="", sample_max=smax)
