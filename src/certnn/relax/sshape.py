"""Tangent/chord relaxations of S-shaped activations (sigmoid, tanh, arctan).

An S-shaped function f here is increasing, convex on (-inf, 0], concave on [0, inf), with an even
derivative f' that is unimodal with its peak f'(0). For such f, f(x) - a*x on [l, u] attains its extremes
at l, u, or the (at most two) points where f'(x) = a, which are +-x*(a) with x*(a) = (f')^{-1}(a) >= 0.
That makes the *exact* worst violation of any line computable in closed form.

Non-optimised lines (:func:`sshape_relaxation`, used by crown, fastlin, crown-ibp, cnncert, popqorn) are
supporting lines of f's envelopes on [l, u]: the lower line is the supporting line at a point q_lo of f's
lower convex envelope, the upper line the supporting line at q_up of its upper concave envelope; a line
below f that touches the envelope at q is the highest of all such lines at q. Per case, with d_l <= 0
CROWN's tangent point of the lower line through (u, f(u)) and d_u >= 0 that of the upper line through
(l, f(l)) (chords where the tangent point leaves [l, u]):
  * u <= 0 (convex part):  upper = chord,                  lower = tangent at q_lo;
  * l >= 0 (concave part): upper = tangent at q_up,         lower = chord;
  * l < 0 < u (crossing):  upper = tangent at max(q_up, d_u), lower = tangent at min(q_lo, d_l).
Rules for the points (:func:`sshape_slopes`):
  * 'min-area': q_lo = q_up = m = (l+u)/2, the lines with the least area between them and f (auto_LiRPA's
    CROWN lines, whose crossing-case switch to the tangent at m is this rule);
  * 'blend' (default): q_lo = m - kappa (u-l)/2, q_up = m + kappa (u-l)/2, the lines that optimise
    (1 - kappa) * mean + kappa * worst value over [l, u] (kappa = :data:`~certnn.relax.types.BLEND_KAPPA`
    = 0.2); measured tighter than min-area on every model of docs/benchmarks.md (issue 12, part 1);
  * 'crown' (Zhang et al., NeurIPS 2018, Table 1 / Sec. 3.3): min-area except that the crossing case always
    uses the tangents at d_l, d_u.
The tangent points are found by batched safeguarded Newton iteration (relax/envelope.py; no per-neuron loops).

For optimisers (alpha-CROWN style): :func:`sshape_lines` builds sound lines for arbitrary given slopes
(any broadcastable shapes; gradients flow to slopes and bounds) and :func:`sshape_slope_range` gives the
slope range that contains every non-dominated line.

Soundness: whatever slope a line was chosen with, its intercept is then set from the exact extremes of
f(x) - a*x over [l, u] (:func:`exact_offsets`) plus a few ulps (:func:`~certnn.relax.types.safety_margin`),
so every returned line is a valid bound on the whole interval, in every case including l == u, intervals
on one side of the inflection point, and saturated intervals (|x| up to 1e8).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .envelope import lower_tangent_root
from .types import BLEND_KAPPA, LinearRelaxation, safety_margin


@dataclass(frozen=True)
class SShape:
    """An S-shaped activation: f, its derivative, and the positive branch of the derivative's inverse."""

    name: str
    f: Callable[[Tensor], Tensor]
    df: Callable[[Tensor], Tensor]
    dfinv: Callable[[Tensor], Tensor]  # a in (0, f'(0)] -> x >= 0 with f'(x) = a
    peak_slope: float  # f'(0)
    lipschitz: float  # sup |f'| = f'(0)
    #: (f(x), f'(x)) from one evaluation of the transcendental where f' is written in terms of f (the
    #: same numbers as f(x) and df(x) separately); None: f and df are called
    f_df: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None
    #: f''(x) (Newton steps on tangent points, relax/envelope.py, optimize/sshape_points.py); None: not known
    d2f: Callable[[Tensor], Tensor] | None = None
    #: (f(x), f'(x), f''(x)) from one evaluation of the transcendental (the same numbers as f_df and d2f);
    #: None: f_df (or f, df) and d2f are called
    derivs: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]] | None = None

    def value_and_slope(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.f_df(x) if self.f_df is not None else (self.f(x), self.df(x))


def _sigmoid_df(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _sigmoid_f_df(x: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(x)
    return s, s * (1 - s)


def _sigmoid_dfinv(a: Tensor) -> Tensor:
    r = torch.sqrt(torch.clamp(1 - 4 * a, min=0.0))
    s = (1 + r) / 2
    one_minus_s = 2 * a / (1 + r)  # rationalised 1 - s, accurate for small a
    return torch.log(s) - torch.log(one_minus_s)


def _tanh_df(x: Tensor) -> Tensor:
    t = torch.tanh(x)
    return 1 - t * t


def _tanh_f_df(x: Tensor) -> tuple[Tensor, Tensor]:
    t = torch.tanh(x)
    return t, 1 - t * t


def _tanh_dfinv(a: Tensor) -> Tensor:
    t = torch.sqrt(torch.clamp(1 - a, min=0.0))
    return torch.log1p(t) - 0.5 * torch.log(a)  # atanh(t) written stably for t -> 1


def _atan_df(x: Tensor) -> Tensor:
    return 1 / (1 + x * x)


def _atan_dfinv(a: Tensor) -> Tensor:
    return torch.sqrt(torch.clamp(1 / a - 1, min=0.0))


def _sigmoid_d2f(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s) * (1 - 2 * s)


def _tanh_d2f(x: Tensor) -> Tensor:
    t = torch.tanh(x)
    return -2 * t * (1 - t * t)


def _atan_d2f(x: Tensor) -> Tensor:
    return -2 * x / (1 + x * x) ** 2


def _sigmoid_derivs(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.sigmoid(x)
    ds = s * (1 - s)
    return s, ds, ds * (1 - 2 * s)


def _tanh_derivs(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    t = torch.tanh(x)
    dt = 1 - t * t
    return t, dt, -2 * t * dt


SIGMOID = SShape("sigmoid", torch.sigmoid, _sigmoid_df, _sigmoid_dfinv, 0.25, 0.25, _sigmoid_f_df, _sigmoid_d2f,
                 _sigmoid_derivs)
TANH = SShape("tanh", torch.tanh, _tanh_df, _tanh_dfinv, 1.0, 1.0, _tanh_f_df, _tanh_d2f, _tanh_derivs)
ARCTAN = SShape("arctan", torch.atan, _atan_df, _atan_dfinv, 1.0, 1.0, d2f=_atan_d2f)
SSHAPES: dict[str, SShape] = {s.name: s for s in (SIGMOID, TANH, ARCTAN)}


def stationary_candidates(fn: SShape, slope: Tensor, l: Tensor, u: Tensor) -> list[Tensor]:
    """Points of [l, u] where f(x) - slope*x can have an extremum: l, u and +-x*(slope) clipped into
    [l, u] (clipping adds only harmless extra points inside the box).

    Gradients (verified training): x*(slope) is computed from the detached slope. At an interior
    stationary point d/dx [f(x) - a x] = 0, so the extreme's gradient does not depend on dx*/da (envelope
    theorem) and nothing is lost; where x* is clipped to l or u the gradient flows to that end. This also
    keeps the inverse derivative's sqrt / log at the ends of its domain out of autograd (they give NaN)."""
    a = slope.detach().clamp(min=torch.finfo(slope.dtype).tiny, max=fn.peak_slope)
    xs = fn.dfinv(a)
    xs = torch.nan_to_num(xs, nan=0.0, posinf=1e300, neginf=0.0)
    return [l, u, torch.minimum(torch.maximum(xs, l), u), torch.minimum(torch.maximum(-xs, l), u)]


def exact_offsets(fn: SShape, slope: Tensor, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """min and max over x in [l, u] of f(x) - slope*x, widened by a few ulps (sound offsets); slope, l and u
    broadcast against each other and the result has their broadcast shape."""
    cands = stationary_candidates(fn, slope, l, u)
    fs = [fn.f(c) for c in cands]
    lin = [slope * c for c in cands]
    vals = torch.stack(torch.broadcast_tensors(*[f - a for f, a in zip(fs, lin)]))
    mags = torch.stack(torch.broadcast_tensors(*[torch.maximum(f.abs(), a.abs()) for f, a in zip(fs, lin)])).amax(0)
    margin = safety_margin(mags)
    return vals.amin(0) - margin, vals.amax(0) + margin


def _chord(fn: SShape, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    width = u - l
    tiny = width <= 1e-12 * (1 + torch.maximum(l.abs(), u.abs()))
    safe = torch.where(tiny, torch.ones_like(width), width)
    k = torch.where(tiny, fn.df((l + u) / 2), (fn.f(u) - fn.f(l)) / safe)
    return k, fn.f(l) - k * l


def _bisect_bracket(h: Callable[[Tensor], Tensor], lo: Tensor, hi: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """Batched bisection for an increasing h with h(lo) <= 0 < h(hi): the final bracket (lo, hi)."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        pos = h(mid) > 0
        hi = torch.where(pos, mid, hi)
        lo = torch.where(pos, lo, mid)
    return lo, hi


def _bisect(h: Callable[[Tensor], Tensor], lo: Tensor, hi: Tensor, iters: int) -> Tensor:
    """Batched bisection for an increasing h with h(lo) <= 0 < h(hi); returns the upper bracket end."""
    return _bisect_bracket(h, lo, hi, iters)[1]


def lower_envelope_point(fn: SShape, l: Tensor, u: Tensor, iters: int | None = None) -> tuple[Tensor, Tensor]:
    """The lower convex envelope of f on [l, u] (all tensors of one shape), as (d, chord):

        env(x) = f(x) on [l, d],  then the segment from (d, f(d)) to (u, f(u)) on [d, u];

    chord is True where the envelope is the chord of [l, u] (d <= l). By case:
      * u <= 0 (f convex on [l, u]): env = f, d = u;
      * l >= 0 (f concave on [l, u]): env = chord;
      * l < 0 < u: d <= 0 is CROWN's lower tangent point, the root of
            h(d) = f(d) + f'(d) (u - d) - f(u)    (tangent at d, evaluated at u, minus f(u)),
        increasing on (-inf, 0] (h' = f''(d)(u - d) > 0) with h(0) >= 0; chord where h(l) >= 0.
        The root is bracketed in s = log1p(-d) in [0, log1p(-l)] (relative precision even for |l| ~ 1e8,
        where d itself is only ~ -log(u)). iters=None (default): safeguarded Newton to ~ulps
        (relax/envelope.py); an int: that many bisection steps, returning the bracket end with h(d) <= 0.

    d only steers a slope choice (offsets are exact, see :func:`exact_offsets`), so it carries no
    gradient (it is computed from detached bounds).
    """
    l, u = l.detach(), u.detach()
    zero = torch.zeros_like(l)
    lz, uz = torch.minimum(l, zero), torch.maximum(u, zero)

    f_uz = fn.f(uz)  # constant through the iteration

    def g(s: Tensor) -> Tensor:  # -h(-expm1(s)): increasing in s >= 0
        d = -torch.expm1(s)
        f_d, df_d = fn.value_and_slope(d)
        return f_uz - f_d - df_d * (uz - d)

    crossing = (l < 0) & (u > 0)
    s_max = torch.log1p(-lz)
    cross_chord = crossing & (g(s_max) <= 0)
    chord = (l >= 0) | cross_chord
    if iters is None and fn.d2f is not None:
        d_cross = lower_tangent_root(fn, s_max, uz, f_uz, crossing & ~cross_chord)
        d_cross = torch.where(cross_chord, l, d_cross)  # the bisection's limit there (d only matters off-chord)
    else:
        d_cross = -torch.expm1(_bisect(g, zero, s_max, 40 if iters is None else iters))
    d = torch.where(u <= 0, u, torch.maximum(d_cross, l))
    return d, chord


def envelope_points(fn: SShape, l: Tensor, u: Tensor, iters: int | None = None) -> tuple[Tensor, ...]:
    """(d_lo, chord_lo, d_up, chord_up): :func:`lower_envelope_point` and :func:`upper_envelope_point` of
    [l, u] from one call on the stacked boxes [l, u] and [-u, -l] (the same numbers as two calls)."""
    d, chord = lower_envelope_point(fn, torch.stack([l, -u]), torch.stack([u, -l]), iters)
    return d[0], chord[0], -d[1], chord[1]


def upper_envelope_point(fn: SShape, l: Tensor, u: Tensor, iters: int | None = None) -> tuple[Tensor, Tensor]:
    """The upper concave envelope of f on [l, u] as (d, chord): the segment from (l, f(l)) to (d, f(d)),
    then f on [d, u]; chord where the envelope is the chord (d >= u). By the point symmetry
    f(-x) = 2 f(0) - f(x) of an S-shaped f, this is :func:`lower_envelope_point` on [-u, -l], mirrored."""
    d, chord = lower_envelope_point(fn, -u, -l, iters)
    return -d, chord


def lower_support_slope(fn: SShape, l: Tensor, u: Tensor, p: Tensor, iters: int | None = None) -> Tensor:
    """Slope of the supporting line at p in [l, u] of f's lower convex envelope on [l, u]
    (:func:`lower_envelope_point`): f'(min(p, d)) on the curved part, the segment's slope beyond it, the
    chord's slope where the envelope is the chord. (The segment's slope is f'(d): it is tangent at d.)"""
    d, chord = lower_envelope_point(fn, l, u, iters)
    k_chord, _ = _chord(fn, l, u)
    return torch.where(chord, k_chord, fn.df(torch.minimum(p, d)))


def upper_support_slope(fn: SShape, l: Tensor, u: Tensor, p: Tensor, iters: int | None = None) -> Tensor:
    """Slope of the supporting line at p in [l, u] of f's upper concave envelope on [l, u]
    (:func:`upper_envelope_point`): f'(max(p, d)), or the chord's slope where the envelope is the chord.
    (Evaluated on [l, u] itself, not mirrored: f near +1 has no digits to spare for f(u) - f(l).)"""
    d, chord = upper_envelope_point(fn, l, u, iters)
    k_chord, _ = _chord(fn, l, u)
    return torch.where(chord, k_chord, fn.df(torch.maximum(p, d)))


RULES = ("blend", "min-area", "crown")


def sshape_slopes(fn: SShape, l: Tensor, u: Tensor, rule: str = "blend", kappa: float = BLEND_KAPPA,
                  iters: int | None = None) -> tuple[Tensor, Tensor]:
    """(lower slope, upper slope) of the non-optimised lines on [l, u] (tensors of one shape).

    rule 'blend' (default): the lower line maximises (1 - kappa) * mean + kappa * min of the line over
    [l, u] among all lines below f; the upper line minimises (1 - kappa) * mean + kappa * max among all
    lines above f (criterion: :data:`~certnn.relax.types.BLEND_KAPPA`). Every useful slope a is >= 0, so
    the mean of a line is its value at m = (l+u)/2 and its min its value at l:
        (1 - kappa) line(m) + kappa line(l) = line(q_lo),   q_lo = m - kappa (u - l) / 2,
    and the lower line highest at one point q_lo is the supporting line at q_lo of f's lower convex
    envelope on [l, u]: slope f'(min(q_lo, d_l)), with d_l the envelope point of
    :func:`lower_envelope_point` (the chord's slope where the envelope is the chord). The upper line is the
    concave envelope's supporting line at q_up = m + kappa (u - l) / 2: slope f'(max(q_up, d_u)).

    rule 'min-area': 'blend' with kappa = 0, the supporting lines at m. Among the lines below f, the area
    between line and f is  int f - (u - l) line(m),  so this is the line with the least area (auto_LiRPA's
    CROWN lines: its switch to the tangent at m when the crossing-case tangent point passes m is this rule).

    rule 'crown' (Zhang et al. NeurIPS 2018, Sec. 3.3): u <= 0: chord above, tangent at m below; l >= 0:
    tangent at m above, chord below; l < 0 < u: the line through (l, f(l)) tangent at d_u >= 0 above and the
    line through (u, f(u)) tangent at d_l <= 0 below (chords where the tangent point leaves [l, u]).

    Why kappa > 0: in a backward bound the line is evaluated where the input set puts the neuron, which
    is its centre when the coefficients of many neurons cancel and its worst end when they do not;
    min-area optimises only for the centre, where moving the tangent point costs only second order
    (d line(m) / d q = f''(q)(m - q) vanishes at q = m) while the slope it saves shrinks every
    coefficient propagated further back. Measured (docs/benchmarks.md, issue 12): kappa = 0.2 gives
    tighter margins than min-area on every model tried.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; supported: {', '.join(RULES)}")
    m = (l + u) / 2
    if rule == "crown":  # the segment's slope in the crossing case (any point beyond the envelope point)
        crossing = (l < 0) & (u > 0)
        q_lo, q_up = torch.where(crossing, u, m), torch.where(crossing, l, m)
    else:
        k = 0.0 if rule == "min-area" else kappa
        if not 0.0 <= k <= 1.0:
            raise ValueError(f"kappa must lie in [0, 1], got {k}")
        half = k * (u - l) / 2
        q_lo, q_up = m - half, m + half
    # lower_support_slope(q_lo), upper_support_slope(q_up), with both envelope points from one call
    d_lo, chord_lo, d_up, chord_up = envelope_points(fn, l, u, iters)
    k_chord, _ = _chord(fn, l, u)
    return (torch.where(chord_lo, k_chord, fn.df(torch.minimum(q_lo, d_lo))),
            torch.where(chord_up, k_chord, fn.df(torch.maximum(q_up, d_up))))


def sshape_relaxation(fn: SShape, l: Tensor, u: Tensor, rule: str = "blend", kappa: float = BLEND_KAPPA,
                      iters: int | None = None) -> LinearRelaxation:
    """Lines a_lo x + b_lo <= f(x) <= a_up x + b_up on [l, u] for an S-shaped f (tensors of one shape):
    slopes by :func:`sshape_slopes` (default: the 'blend' lines), offsets exact (:func:`sshape_lines`).

    Soundness: the slope is only a choice; each intercept is the exact extreme of f(x) - a x over [l, u]
    plus a few ulps, so the lines bound f on the whole interval whatever the slope.
    """
    if (u < l).any():
        raise ValueError("sshape_relaxation needs l <= u")
    lo_k, up_k = sshape_slopes(fn, l, u, rule, kappa, iters)
    # sshape_lines(fn, l, u, lo_k, up_k), both sides' offsets from one exact_offsets call (same numbers)
    lo_b, up_b = exact_offsets(fn, torch.stack([lo_k, up_k]), l, u)
    return LinearRelaxation(lo_k, lo_b[0], up_k, up_b[1])


def sshape_lines(fn: SShape, l: Tensor, u: Tensor, lower_slope: Tensor, upper_slope: Tensor) -> LinearRelaxation:
    """Sound lines with the given slopes: lower_slope x + b_lo <= f(x) <= upper_slope x + b_up on [l, u].

    Any slopes (negative, zero, beyond f'(0)) and any broadcastable shapes, e.g. l, u (B, 1, n) and slopes
    (B, S, n) for per-spec slopes of an optimiser; the result has the broadcast shape.
        b_lo = min_{x in [l, u]} f(x) - lower_slope x,   b_up = max_{x in [l, u]} f(x) - upper_slope x
    (exact, :func:`exact_offsets`, plus a few ulps). Gradients flow from b_lo, b_up to the slopes and to
    l, u (envelope theorem: d b_lo / d a = -x_min, and to l or u where the extreme sits at an end).
    """
    if (u < l).any():
        raise ValueError("sshape_lines needs l <= u")
    lo_b, _ = exact_offsets(fn, lower_slope, l, u)
    _, up_b = exact_offsets(fn, upper_slope, l, u)
    return LinearRelaxation(lower_slope.expand_as(lo_b), lo_b, upper_slope.expand_as(up_b), up_b)


def sshape_slope_range(fn: SShape, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """(k_min, k_max) with every useful slope of a lower or an upper line on [l, u] inside [k_min, k_max]:

        k_min = min(f'(l), f'(u), chord),   k_max = max(f'(clip(0, l, u)), chord).

    A line below f is dominated (lower everywhere on [l, u] than another line below f) unless its slope is
    a supporting slope of f's convex envelope on [l, u], which lies between the envelope's end slopes:
    f'(l) or the chord's slope at l, and f'(d_l) <= f'(clip(0, l, u)) or the chord's slope at u; likewise
    for the upper line and the concave envelope. So an optimiser loses nothing by projecting slopes into
    this range (any slope is still sound with :func:`sshape_lines`)."""
    k_chord, _ = _chord(fn, l, u)
    peak = fn.df(torch.minimum(torch.maximum(torch.zeros_like(l), l), u))
    k_min = torch.minimum(torch.minimum(fn.df(l), fn.df(u)), k_chord)
    return k_min, torch.maximum(peak, k_chord)


def parallel_relaxation(fn: SShape, l: Tensor, u: Tensor, slope: str = "secant") -> LinearRelaxation:
    """Two parallel lines a*x + c_lo <= f(x) <= a*x + c_hi on [l, u] (zonotope-style transformer).

    slope 'secant' (Cert-RNN): a = (f(u) - f(l)) / (u - l); 'deepz' (Singh et al. 2018): a = min(f'(l), f'(u)).
    Offsets are the exact extremes of f - a*x, so the pair is sound and as tight as parallel lines with that
    slope can be.
    """
    if slope == "secant":
        a, _ = _chord(fn, l, u)
    elif slope == "deepz":
        a = torch.minimum(fn.df(l), fn.df(u))
    else:
        raise ValueError(f"unknown slope rule {slope!r}")
    c_lo, c_hi = exact_offsets(fn, a, l, u)
    return LinearRelaxation(a, c_lo, a.clone(), c_hi)


def interval_image(fn: SShape, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Exact image [f(l), f(u)] of a monotone increasing f (IBP)."""
    return fn.f(l), fn.f(u)


__all__ = ["SShape", "SIGMOID", "TANH", "ARCTAN", "SSHAPES", "RULES", "sshape_relaxation", "sshape_slopes",
           "sshape_lines", "sshape_slope_range", "lower_envelope_point", "upper_envelope_point", "lower_support_slope",
           "upper_support_slope", "parallel_relaxation", "exact_offsets", "stationary_candidates", "interval_image"]

