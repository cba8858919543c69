"""Cert-RNN's tilts (A, B) for the parallel bounding planes of sigma(x)*tanh(y) and sigma(x)*y.

Reference: Du et al., "Cert-RNN: Towards Certifying the Robustness of Recurrent Neural Networks",
CCS 2021, Sec. 4.3 (Theorems 4.2, 4.3) and Appendices B, C (Tables 8, 9). The paper bounds
F on the box by  A x + B y + C1 <= F <= A x + B y + C2  and picks (A, B) by the region of the box.
Only the tilt is taken from the paper; the offsets are always the exact extremes of F - A x - B y
(:mod:`certnn.relax.product_extremes`), because the printed offsets are not sound in every case.

Notation: s_l, s_u = sigma(lx), sigma(ux); t_l, t_u = tanh(ly), tanh(uy); S_x = (s_u - s_l)/(ux - lx)
the secant of sigma; T_y = (t_u - t_l)/(uy - ly) the secant of tanh (derivatives at the midpoint when a
width is ~0); f_ab = F at the corner (x = a, y = b).

Corner fit ("cf"), the least-squares plane through the four corner values:
    A = mean of the two x-secants of F along y = ly, uy,  B = mean of the two y-secants along x = lx, ux.
For sigma*tanh: A = S_x (t_l + t_u)/2, B = T_y (s_l + s_u)/2. Its residual at the corners is +-d with
d = (f_uu - f_ul - f_lu + f_ll)/4 (the twist), which is the least any plane can leave there.

sigma(x)*tanh(y) (Table 8). F is increasing in y; its x-slope sigma'(x) tanh(y) has the sign of y;
F is convex in x for x <= 0 and concave for x >= 0 when y >= 0 (the reverse when y <= 0); tanh is
concave for y >= 0. Cases (ties at 0 go to the first match):
  1  lx >= 0, ly >= 0     concave in both: corner fit.
  2  ux <= 0, ly >= 0     convex in x, concave in y: the paper lists several tilts and no rule to pick
                          one; we take each and keep the narrowest exact width C2 - C1:
                          (i)   A = S_x t_u (top-edge secant), B = F_y(lx, uy);
                          (ii)  B = s_u T_y (right-edge secant), A equalises the maxima of g on the two
                                vertical edges: A = (h(ux) - h(lx)) / (ux - lx), h(x_e) = max_y
                                [sigma(x_e) tanh(y) - B y] (attained at a corner or tanh'(y) = B/s_e);
                          (iii) as (ii) with B = the corner-fit B;
                          (iv)  A = F_x(ux, ly), B equalises the minima of g on the two horizontal edges:
                                B = (m(uy) - m(ly)) / (uy - ly), m(y_e) = min_x [sigma(x) tanh(y_e) - A x];
                          (v)   corner fit.
                          (ii)-(iv) are our own derivations of the paper's sub-solutions "fix one slope,
                          choose the other so that the residual's extremes on opposite edges are equal".
  3  ux <= 0, uy <= 0     case 2 on the reflected box: F(x, -y) = -F(x, y), so with (A', B') the case-2
                          tilt for [lx, ux] x [-uy, -ly], (A, B) = (-A', B'); the width is unchanged.
  4  lx >= 0, uy <= 0     reflection of case 1; the corner fit is reflection-equivariant: corner fit.
  5  lx >= 0, ly < 0 < uy the x-slope changes sign with y across the box: A = 0,
                          B = min{(f_uu - f_ll), (f_lu - f_ul)} / (uy - ly) (the smaller diagonal secant).
  6  ux <= 0, ly < 0 < uy as case 5.
  7  lx < 0 < ux, ly >= 0 A = S_x t_l (bottom-edge secant), B = s_l T_y (left-edge secant).
  8  lx < 0 < ux, uy <= 0 reflection of case 7: A = S_x t_u, B = s_l T_y.
  9  lx < 0 < ux, ly < 0 < uy   as case 5.

sigma(x)*y (Table 9; the paper writes x*sigma(y), we swap the arguments). F is affine in y, so for any
tilt the residual's extremes lie on the edges y = ly, uy, where F is the S-curve y_e sigma(x). The corner
fit A = S_x (ly + uy)/2, B = (s_l + s_u)/2 balances the twist sigma'(x) at the corners (B is the mean
value of dF/dy at the two x-ends, A the mean of the edge secants y_e S_x) and is the plane the paper's
Appendix C construction arrives at in every sign case: when ly >= 0 or uy <= 0 both edges bend the same
way and their secant slopes ly S_x, uy S_x average to A; when ly < 0 < uy the edges bend oppositely and
A is again their mean. We use it in all cases.

Source note: we could not read the paper's PDF tables directly; the case conditions and the tilts of
cases 1 and 4-9 follow a transcription of Table 8, the case-2 sub-solutions are re-derived as described.
Measured on random boxes (the exact widths C2 - C1), the transcribed tilts of cases 5-9 are wider than
the corner fit (from ~1% on wide boxes up to ~2x for case 7 on small ones), so
:func:`~certnn.relax.products.sigmoid_tanh_planes` always adds the corner fit as a candidate and keeps the
narrowest; in cases 2 and 3, (ii) or the corner fit win almost always.

Soundness: the tilt only affects tightness. Offsets are computed exactly for whatever tilt is returned.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .product_extremes import _clip, _dfinv, _safe_ratio
from .product_fns import SIGMOID_TANH
from .sshape import SIGMOID, TANH


def _dq(f_hi: Tensor, f_lo: Tensor, l: Tensor, u: Tensor, deriv_mid: Tensor) -> Tensor:
    """Difference quotient (f_hi - f_lo)/(u - l), or the midpoint derivative when u - l is ~0."""
    w = u - l
    tiny = w <= 1e-9 * (1 + torch.maximum(l.abs(), u.abs()))
    return torch.where(tiny, deriv_mid, (f_hi - f_lo) / torch.where(tiny, torch.ones_like(w), w))


def _box_terms(lx, ux, ly, uy):
    mx, my = (lx + ux) / 2, (ly + uy) / 2
    s_l, s_u, t_l, t_u = torch.sigmoid(lx), torch.sigmoid(ux), torch.tanh(ly), torch.tanh(uy)
    S_x = _dq(s_u, s_l, lx, ux, SIGMOID.df(mx))
    T_y = _dq(t_u, t_l, ly, uy, TANH.df(my))
    return s_l, s_u, t_l, t_u, S_x, T_y


def _edge_max_y(s_e: Tensor, B: Tensor, ly: Tensor, uy: Tensor) -> Tensor:
    """max over y in [ly, uy] of s_e tanh(y) - B y (ends and the stationary points)."""
    yc = _dfinv(TANH, _safe_ratio(B, s_e))
    ys = [ly, uy, _clip(yc, ly, uy), _clip(-yc, ly, uy)]
    return torch.stack([s_e * torch.tanh(y) - B * y for y in ys]).amax(0)


def _edge_min_x(t_e: Tensor, A: Tensor, lx: Tensor, ux: Tensor) -> Tensor:
    """min over x in [lx, ux] of t_e sigma(x) - A x (ends and the stationary points)."""
    xc = _dfinv(SIGMOID, _safe_ratio(A, t_e))
    xs = [lx, ux, _clip(xc, lx, ux), _clip(-xc, lx, ux)]
    return torch.stack([t_e * torch.sigmoid(x) - A * x for x in xs]).amin(0)


def _case2_tilts(lx, ux, ly, uy) -> list[tuple[Tensor, Tensor]]:
    """Sub-solutions (i)-(iv) of case 2 (ux <= 0 <= ly), computed for every element."""
    F = SIGMOID_TANH
    s_l, s_u, t_l, t_u, S_x, T_y = _box_terms(lx, ux, ly, uy)
    out = [(S_x * t_u, F.fy(lx, uy))]                                      # (i)
    for B in (s_u * T_y, (s_l + s_u) / 2 * T_y):                           # (ii), (iii)
        h_l, h_u = _edge_max_y(s_l, B, ly, uy), _edge_max_y(s_u, B, ly, uy)
        A = _dq(h_u, h_l, lx, ux, S_x * (t_l + t_u) / 2)
        out.append((A, B))
    A = F.fx(ux, ly)                                                       # (iv)
    m_l, m_u = _edge_min_x(t_l, A, lx, ux), _edge_min_x(t_u, A, lx, ux)
    out.append((A, _dq(m_u, m_l, ly, uy, (s_l + s_u) / 2 * T_y)))
    return out


def corner_fit(fn_name: str, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> tuple[Tensor, Tensor]:
    """The corner-fit tilt (least-squares plane through the four corner values)."""
    s_l, s_u, t_l, t_u, S_x, T_y = _box_terms(lx, ux, ly, uy)
    if fn_name == "sigmoid_tanh":
        return S_x * (t_l + t_u) / 2, T_y * (s_l + s_u) / 2
    if fn_name == "sigmoid_mul":
        return S_x * (ly + uy) / 2, (s_l + s_u) / 2
    raise ValueError(f"unknown product {fn_name!r}")


def sigmoid_tanh_case(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> Tensor:
    """Table-8 case number 1..9 of each box (ties at 0 go to the lowest matching case)."""
    xp, xn = lx >= 0, ux <= 0
    yp, yn = ly >= 0, uy <= 0
    case = torch.full_like(lx, 9, dtype=torch.int64)
    # assign from the last case to the first so that the first matching case wins
    for c, m in ((8, yn), (7, yp), (6, xn), (5, xp), (4, xp & yn), (3, xn & yn), (2, xn & yp), (1, xp & yp)):
        case = torch.where(m, torch.full_like(case, c), case)
    return case


def certrnn_sigmoid_tanh_candidates(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> tuple[Tensor, Tensor]:
    """Candidate tilts (K, *shape) per element from Table 8; slot 0 is the case's primary tilt.

    Cases with a single tilt repeat it in every slot; case 2 / 3 fill the slots with sub-solutions
    (i)-(v). The caller keeps the candidate with the narrowest exact width."""
    F = SIGMOID_TANH
    case = sigmoid_tanh_case(lx, ux, ly, uy)
    s_l, s_u, t_l, t_u, S_x, T_y = _box_terms(lx, ux, ly, uy)
    A_cf, B_cf = corner_fit("sigmoid_tanh", lx, ux, ly, uy)
    f_ll, f_lu, f_ul, f_uu = F.f(lx, ly), F.f(lx, uy), F.f(ux, ly), F.f(ux, uy)
    d1 = _dq(f_uu, f_ll, ly, uy, B_cf)
    d2 = _dq(f_lu, f_ul, ly, uy, B_cf)
    zero = torch.zeros_like(lx)
    single = {
        5: (zero, torch.minimum(d1, d2)),
        7: (S_x * t_l, s_l * T_y),
        8: (S_x * t_u, s_l * T_y),
    }
    single[6] = single[9] = single[5]
    c2 = _case2_tilts(lx, ux, ly, uy) + [(A_cf, B_cf)]
    c3 = [(-a, b) for a, b in _case2_tilts(lx, ux, -uy, -ly)] + [(A_cf, B_cf)]
    As, Bs = [], []
    for k in range(5):
        A, B = A_cf, B_cf
        for c, (a, b) in single.items():
            A = torch.where(case == c, a, A); B = torch.where(case == c, b, B)
        A = torch.where(case == 2, c2[k][0], A); B = torch.where(case == 2, c2[k][1], B)
        A = torch.where(case == 3, c3[k][0], A); B = torch.where(case == 3, c3[k][1], B)
        As.append(A); Bs.append(B)
    return _finite(torch.stack(As)), _finite(torch.stack(Bs))


def certrnn_sigmoid_mul_candidates(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> tuple[Tensor, Tensor]:
    """Candidate tilts (1, *shape) for sigma(x)*y: the corner fit (Table 9, see module docstring)."""
    A, B = corner_fit("sigmoid_mul", lx, ux, ly, uy)
    return _finite(A[None]), _finite(B[None])


def _finite(t: Tensor) -> Tensor:
    return torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)


__all__ = ["corner_fit", "sigmoid_tanh_case", "certrnn_sigmoid_tanh_candidates", "certrnn_sigmoid_mul_candidates"]
