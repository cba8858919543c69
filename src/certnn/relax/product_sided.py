"""One-sided exact extremes of g(x, y) = F(x, y) - A x - B y on a box: only the min (a lower plane's
offset) or only the max (an upper plane's), with the candidates a min (max) can be at.

:mod:`certnn.relax.product_extremes` enumerates every point where g can have an extremum, for both sides
at once. A lower plane needs only min g, an upper plane only max g, and second-order conditions rule out
about half of the candidates for each side (side s = -1 for the min, +1 for the max):

* an extremiser inside an edge is a 1-D local min (max) of g on that edge, so g'' >= 0 (<= 0) there;
* an extremiser inside the box is a 2-D local min (max): grad g = 0 and the Hessian of g (that of F)
  positive (negative) semi-definite.

F = sigma(x) tanh(y), t = tanh(y), p = sigma(x):
  * edge x = x_e: g'' = sigma(x_e) tanh''(y) = -2 p t (1 - t^2), >= 0 iff y <= 0: the min can only be at
    y = -y_c, the max at +y_c (y_c = tanh'^{-1}(B / sigma(x_e)) >= 0): y = s * y_c.
  * edge y = y_e: g'' = tanh(y_e) sigma''(x), sigma'' >= 0 iff x <= 0: x = s * sign(tanh(y_e)) * x_c.
  * interior (grad g = 0: p (1 - p) t = A, p (1 - t^2) = B): g_yy = -2 p t (1 - t^2) has the sign of -t,
    i.e. of -A, so a min needs A < 0 and a max A > 0 (A = 0: t = 0, g_xx = g_yy = 0 != g_xy, a saddle).
    The Hessian's determinant, with 1 - t^2 = B / p and sigma' = p (1 - p), is
        det = sigma' (1 - t^2) [2 p (2p - 1) t^2 - sigma' (1 - t^2)] = sigma' (B / p) q(p),
        q(p) = 4 p^2 - (2 + 3B) p + B,
    and q < 0 between its roots, the smaller of which lies below B (q(B) = B^2 - B < 0): on the stationary
    curve's domain p >= B, det >= 0 iff p >= p*, the larger root. That is the *second* monotone piece
    of product_extremes (psi decreasing, x >= x*); on the first the stationary point is a saddle. So each
    side has at most one interior candidate, and none unless s * A > 0.
F = sigma(x) y: g is affine in y (corners on the edges x = x_e); edge y = y_e as above with y_e for
  tanh(y_e); the interior stationary point is a saddle (det = -sigma'^2 < 0): corners and two edge points.

Interior point: the root of h(x) = log|A| - log psi(x) (increasing on piece 2; psi as in
product_extremes) by Newton's method safeguarded by a bracket (a step leaving the bracket is a bisection
step; every evaluation of h moves one end), stopped when a step is at rounding level; two probes at
x -+ delta (delta = twice the last step plus a few ulps) then shrink the bracket around x, and elements
whose bracket is still wide get BISECT_ITERS bisection steps. No root on the piece: no interior
candidate, except the point at x* where x* is inside the box (a root within rounding of x* is there;
product_extremes' first piece ends at x* and keeps that point too). Soundness does not depend on Newton
converging: the bracket [a, b] holds the root (every update is a sign test of the monotone h), so the
slack HESSIAN_BOUND * ((b - a)^2 + (y(b) - y(a))^2) covers the distance from the candidate to the true
stationary point exactly as product_extremes' bisection bracket does. Sign tests of h carry the same
rounding assumption as that bisection. All arithmetic runs in float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as Fn
from torch import Tensor

from .product_extremes import BISECT_ITERS, HESSIAN_BOUND, _candidate, _clip, _dfinv, _logit, _safe_ratio
from .sshape import SIGMOID, TANH, SShape, _bisect_bracket
from .ties import tie_averaged

#: at most this many Newton steps (each converged element stops moving; typically 4-8 are run)
NEWTON_ITERS = 40
#: a bracket narrower than this fraction of its piece needs no bisection after Newton (the bisection's own
#: bracket after BISECT_ITERS steps is 2^-BISECT_ITERS of the piece)
FINE = 2.0 ** -BISECT_ITERS


def _side_point(fn: SShape, slope: Tensor, side: Tensor, l: Tensor, u: Tensor) -> Tensor:
    """side * x*(slope) clipped into [l, u] (relax.sshape.stationary_candidates' +x* or -x*, the same
    values and gradients: only a clip to l or u carries one). Callers pass a detached slope (its graph
    would never be used: envelope theorem, see stationary_candidates)."""
    a = slope.detach().clamp(min=torch.finfo(slope.dtype).tiny, max=fn.peak_slope)
    xs = torch.nan_to_num(fn.dfinv(a), nan=0.0, posinf=1e300, neginf=0.0)
    return torch.minimum(torch.maximum(side * xs, l), u)


def _reduce_side(F: list[Tensor], xs: list[Tensor], ys: list[Tensor], A: Tensor, B: Tensor, side: Tensor,
                 last_valid: Tensor | None = None) -> Tensor:
    """min over the candidates (x_k, y_k) of g = F_k - A x_k - B y_k where side = -1, max where side = +1
    (tie-averaged gradient); the last candidate only where `last_valid` (when given). F_k = F(x_k, y_k) is
    passed in: at the corners and edges it is computed on the box's own shape, which is usually far
    smaller than the tilts' (one box, many spec rows)."""
    # each candidate's value on its own (broadcast) shape: the corners' and edges' points keep the box's
    # shape, and no stacked copies of x and y are made (the same arithmetic, candidate by candidate)
    w = torch.stack(torch.broadcast_tensors(*[side * (f - A * x - B * y) for f, x, y in zip(F, xs, ys)]))
    if last_valid is not None:  # a value no extreme can take: never the max, never tied, no gradient
        w[-1] = torch.where(last_valid, w[-1], torch.full_like(w[-1], -1e300))
    m = w.detach().amax(0)  # (its own gradient is replaced below: autograd need not keep w for it)
    if w.requires_grad:  # relax.ties: the gradient must not follow which tied candidate rounding picks
        m = tie_averaged(m, w, "max", ext=m)
    return side * m


def _h_dh(x: Tensor, logA: Tensor, Bc: Tensor) -> tuple[Tensor, Tensor]:
    """h(x) = log|A| - log psi(x) and h'(x), psi(x) = sigma(x) sigma(-x) sqrt(1 - B / sigma(x))."""
    p, q = torch.sigmoid(x), torch.sigmoid(-x)
    r = (Bc / p).clamp(max=1.0)
    h = logA - Fn.logsigmoid(x) - Fn.logsigmoid(-x) - 0.5 * torch.log1p(-r)
    return h, p - q - Bc * q / (2 * (p - Bc))


def _newton_bracket(logA: Tensor, Bc: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(x, a, b) for h(a) <= 0 < h(b) (h increasing): x in [a, b], [a, b] still holding the root."""
    x = (a + b) / 2
    width0 = b - a
    step = width0
    done = torch.zeros_like(x, dtype=torch.bool)
    for _ in range(NEWTON_ITERS):
        hx, dh = _h_dh(x, logA, Bc)
        live = ~done
        pos = hx > 0
        b = torch.where(live & pos, x, b)
        a = torch.where(live & ~pos, x, a)
        xn = x - hx / dh
        # a Newton step at rounding level has converged, even where it does not leave x (x is then an
        # end of the bracket, and bisecting would throw the root away: 25 more steps, measured)
        conv = (xn - x).abs() <= 4 * torch.finfo(x.dtype).eps * (1 + x.abs())  # NaN: False
        xn = torch.where(((xn > a) & (xn < b)) | conv, _clip(xn, a, b), (a + b) / 2)  # NaN / outside: bisect
        stepn = (xn - x).abs()
        step = torch.where(live, stepn, step)
        x = torch.where(live, xn, x)
        done = done | conv | (b - a <= FINE * width0)
        if bool(done.all()):
            break
    delta = 2 * step + 16 * torch.finfo(x.dtype).eps * (1 + x.abs())
    for probe in (torch.minimum(x + delta, b), torch.maximum(x - delta, a)):
        pos = _h_dh(probe, logA, Bc)[0] > 0
        b = torch.where(pos, probe, b)
        a = torch.where(pos, a, probe)
    wide = b - a > FINE * width0
    if bool(wide.any()):  # rare: Newton or the probes failed to pin the root; bisection as product_extremes
        idx = torch.nonzero(wide).reshape(-1)
        lA, Bw = logA.index_select(0, idx), Bc.index_select(0, idx)
        aw, bw = _bisect_bracket(lambda t: _h_dh(t, lA, Bw)[0], a.index_select(0, idx), b.index_select(0, idx),
                                 BISECT_ITERS)
        a, b = a.index_copy(0, idx, aw), b.index_copy(0, idx, bw)
    return _clip(x, a, b), a, b


def _interior(A: Tensor, B: Tensor, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, side: Tensor):
    """The interior candidate of sigma(x) tanh(y) - A x - B y per side: (x, y, valid, slack), all of the
    broadcast shape, or None when no element has one. valid marks the elements with a stationary point
    in piece 2 (s A > 0 and a root of h there, or x* inside the box); elsewhere no interior point can be
    the side's extreme and (x, y) is a placeholder left out of the reduction. Computed on the candidates'
    elements only."""
    shape = torch.broadcast_shapes(A.shape, B.shape, lx.shape, side.shape)
    flat = lambda t: torch.broadcast_to(t.detach(), shape).reshape(-1)  # noqa: E731
    idx = torch.nonzero(flat(side * A.detach() > 0)).reshape(-1)
    if not idx.numel():
        return None
    pick = lambda t, i=idx: flat(t).index_select(0, i)  # noqa: E731
    A_s, lx_s, ux_s = pick(A), pick(lx), pick(ux)
    Bc = pick(B).clamp(min=torch.finfo(B.dtype).tiny, max=1 - torch.finfo(B.dtype).eps)
    disc = torch.sqrt((2 + 3 * Bc) ** 2 - 16 * Bc)
    x_star = _logit(((2 + 3 * Bc) + disc) / 8, 4 * (1 - Bc) / (6 - 3 * Bc + disc))  # product_extremes
    lo = _clip(torch.maximum(x_star, lx_s), lx_s, ux_s)
    logA = torch.log(A_s.abs())
    h_lo = _h_dh(lo, logA, Bc)[0]
    root = (h_lo <= 0) & (_h_dh(ux_s, logA, Bc)[0] > 0)  # implies ux > lo
    # h(x*) > 0 with x* inside the box: no root, or one within rounding of the computed x* (where psi is
    # flat); the point at x* stands for it (product_extremes' first piece ends there and keeps it too)
    gap = (h_lo > 0) & (lo > lx_s) & (ux_s > lo)
    ci = torch.nonzero(root | gap).reshape(-1)
    if not ci.numel():
        return None
    sel = lambda t: t.index_select(0, ci)  # noqa: E731
    Bc, A_s, logA, root, lo, ux_s = (sel(t) for t in (Bc, A_s, logA, root, lo, ux_s))
    x, a, b = lo.clone(), lo.clone(), lo.clone()
    ri = torch.nonzero(root).reshape(-1)
    if ri.numel():
        r = lambda t: t.index_select(0, ri)  # noqa: E731
        xr, ar, br = _newton_bracket(r(logA), r(Bc), r(lo), r(ux_s))
        x, a, b = x.index_copy(0, ri, xr), a.index_copy(0, ri, ar), b.index_copy(0, ri, br)
    gi = idx.index_select(0, ci)
    ly_s, uy_s = pick(ly, gi), pick(uy, gi)
    y_of = lambda t: _clip(torch.sign(A_s) * _dfinv(TANH, Bc / torch.sigmoid(t)), ly_s, uy_s)  # noqa: E731
    y = y_of(x)
    slack = HESSIAN_BOUND * ((b - a) ** 2 + (y_of(b) - y_of(a)) ** 2)
    n = flat(lx).numel()
    put = lambda v: torch.zeros(n, dtype=v.dtype, device=v.device).index_copy(0, gi, v).reshape(shape)  # noqa: E731
    valid = torch.zeros(n, dtype=torch.bool, device=x.device).index_fill(0, gi, True).reshape(shape)
    return _candidate(put(x), lx, ux), _candidate(put(y), ly, uy), valid, put(slack)


def sigmoid_tanh_sided(A: Tensor, B: Tensor, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor,
                       side: Tensor) -> tuple[Tensor, Tensor]:
    """(min where side = -1 / max where side = +1 of sigma(x) tanh(y) - A x - B y on the box, slack):
    the true extreme lies within [ext - slack, ext] (min) or [ext, ext + slack] (max)."""
    s_l, s_u, t_l, t_u = torch.sigmoid(lx), torch.sigmoid(ux), torch.tanh(ly), torch.tanh(uy)
    F, xs, ys = [s_l * t_l, s_l * t_u, s_u * t_l, s_u * t_u], [lx, lx, ux, ux], [ly, uy, ly, uy]
    for x_e, s_e in ((lx, s_l), (ux, s_u)):  # vertical edges: y = s * y_c
        y = _side_point(TANH, _safe_ratio(B.detach(), s_e.detach()), side, ly, uy)
        F.append(s_e * torch.tanh(y)); xs.append(x_e); ys.append(y)
    for y_e, t_e in ((ly, t_l), (uy, t_u)):  # horizontal edges: x = s * sign(tanh(y_e)) * x_c
        x = _side_point(SIGMOID, _safe_ratio(A.detach(), t_e.detach()), side * torch.sign(t_e.detach()), lx, ux)
        F.append(torch.sigmoid(x) * t_e); xs.append(x); ys.append(y_e)
    inner = _interior(A, B, lx, ux, ly, uy, side)
    if inner is None:
        return _reduce_side(F, xs, ys, A, B, side), 0.0
    xi, yi, valid, slack = inner
    F.append(torch.sigmoid(xi) * torch.tanh(yi)); xs.append(xi); ys.append(yi)
    return _reduce_side(F, xs, ys, A, B, side, valid), slack


def sigmoid_mul_sided(A: Tensor, B: Tensor, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor,
                      side: Tensor) -> tuple[Tensor, float]:
    """(min where side = -1 / max where side = +1 of sigma(x) y - A x - B y on the box, 0.0): exact."""
    s_l, s_u = torch.sigmoid(lx), torch.sigmoid(ux)
    F, xs, ys = [s_l * ly, s_l * uy, s_u * ly, s_u * uy], [lx, lx, ux, ux], [ly, uy, ly, uy]
    for y_e in (ly, uy):  # horizontal edges: x = s * sign(y_e) * x_c
        x = _side_point(SIGMOID, _safe_ratio(A.detach(), y_e.detach()), side * torch.sign(y_e.detach()), lx, ux)
        F.append(torch.sigmoid(x) * y_e); xs.append(x); ys.append(y_e)
    return _reduce_side(F, xs, ys, A, B, side), 0.0


__all__ = ["sigmoid_tanh_sided", "sigmoid_mul_sided", "NEWTON_ITERS"]
