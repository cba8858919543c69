"""Relaxation level, two-input products: lower <= F <= upper on dense grids, corners, edges and random
interior points of thousands of boxes (scales 1e-3..1e3, zero-width sides, one-quadrant boxes), in float64
and float32; offsets equal the true extremes found by dense grid + scipy; the Table-8 case table is
exercised and its reflection symmetry holds; McCormick touches at the corners."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from certnn.relax.product_fns import SIGMOID_MUL, SIGMOID_TANH
from certnn.relax.product_tilts import _case2_tilts, certrnn_sigmoid_tanh_candidates, sigmoid_tanh_case
from certnn.relax.products import mccormick_planes, mul_parallel_planes, sigmoid_mul_planes, sigmoid_tanh_planes

torch.set_num_threads(1)

PRODUCTS = {
    "sigmoid_tanh": (sigmoid_tanh_planes, lambda x, y: torch.sigmoid(x) * torch.tanh(y)),
    "sigmoid_mul": (sigmoid_mul_planes, lambda x, y: torch.sigmoid(x) * y),
}
SCALES = (1e-3, 0.3, 1.0, 3.0, 10.0, 1e3)


def _boxes(dtype, n=60, seed=0):
    """Random boxes per scale: general, one quadrant, zero-width x, zero-width y, a point, touching 0."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in SCALES:
        r = lambda: (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * s  # noqa: E731
        a, b, c, d = r(), r(), r(), r()
        lx, ux, ly, uy = torch.minimum(a, b), torch.maximum(a, b), torch.minimum(c, d), torch.maximum(c, d)
        sx = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).double()
        sy = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).double()
        qx = torch.sort(torch.stack([a.abs(), b.abs()]) * sx, 0).values
        qy = torch.sort(torch.stack([c.abs(), d.abs()]) * sy, 0).values
        out += [(lx, ux, ly, uy), (qx[0], qx[1], qy[0], qy[1]), (a, a.clone(), ly, uy), (lx, ux, c, c.clone()),
                (a, a.clone(), c, c.clone()), (torch.zeros_like(a), ux.abs(), -ly.abs(), torch.zeros_like(a))]
    lx, ux, ly, uy = (torch.cat([b[i] for b in out]).to(dtype) for i in range(4))
    extra = torch.tensor([[0, 0, 0, 0], [-1, 1, -1, 1], [-1e3, 1e3, -1e3, 1e3], [-50, 50, 0, 0], [0, 0, -50, 50],
                          [-40, -20, 3, 7], [20, 40, -7, -3], [-1e3, -999, 999, 1e3]], dtype=dtype)
    return (torch.cat([lx, extra[:, 0]]), torch.cat([ux, extra[:, 1]]),
            torch.cat([ly, extra[:, 2]]), torch.cat([uy, extra[:, 3]]))


def _uniform_boxes(n: int, s: float, seed: int) -> tuple[torch.Tensor, ...]:
    """n float64 boxes (lx, ux, ly, uy) with ends uniform in [-s, s]."""
    g = torch.Generator().manual_seed(seed)
    r = lambda: (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * s  # noqa: E731
    a, b, c, d = r(), r(), r(), r()
    return torch.minimum(a, b), torch.maximum(a, b), torch.minimum(c, d), torch.maximum(c, d)


def _points(lx, ux, ly, uy, k=41, n_edge=16, n_rand=64, seed=1):
    """(N, P) points: k x k grid, corners, random points on the four edges, random interior points."""
    g = torch.Generator().manual_seed(seed)
    dt, N = lx.dtype, lx.shape[0]
    t = torch.linspace(0, 1, k, dtype=dt)
    gx = (t[:, None] * torch.ones(k, dtype=dt)[None, :]).reshape(-1)
    gy = (torch.ones(k, dtype=dt)[:, None] * t[None, :]).reshape(-1)
    ex = torch.rand(n_edge, generator=g).to(dt)
    zero, one = torch.zeros(n_edge, dtype=dt), torch.ones(n_edge, dtype=dt)
    rx, ry = torch.rand(n_rand, generator=g).to(dt), torch.rand(n_rand, generator=g).to(dt)
    fx = torch.cat([gx, torch.tensor([0.0, 0, 1, 1], dtype=dt), ex, ex, zero, one, rx])
    fy = torch.cat([gy, torch.tensor([0.0, 1, 0, 1], dtype=dt), zero, one, ex, ex, ry])
    X = lx[:, None] + (ux - lx)[:, None] * fx[None, :]
    Y = ly[:, None] + (uy - ly)[:, None] * fy[None, :]
    X = torch.where(fx[None, :] == 1, ux[:, None], torch.minimum(X, ux[:, None]))  # exact upper ends
    Y = torch.where(fy[None, :] == 1, uy[:, None], torch.minimum(Y, uy[:, None]))
    return X, Y


def _assert_sound(rel, F, box):
    lx, ux, ly, uy = box
    X, Y = _points(*box)
    f = F(X, Y)
    c = lambda v: v[:, None]  # noqa: E731
    lo = c(rel.lower_a) * X + c(rel.lower_b) * Y + c(rel.lower_c)
    hi = c(rel.upper_a) * X + c(rel.upper_b) * Y + c(rel.upper_c)
    eps = torch.finfo(X.dtype).eps
    # only the rounding of evaluating the planes themselves is tolerated
    tol = 16 * eps * (1 + (c(rel.lower_a) * X).abs() + (c(rel.lower_b) * Y).abs() + c(rel.lower_c).abs()
                      + (c(rel.upper_a) * X).abs() + (c(rel.upper_b) * Y).abs() + c(rel.upper_c).abs())
    for name, bad in (("lower", lo - f > tol), ("upper", f - hi > tol)):
        rows = bad.any(1)
        assert not rows.any(), (f"{name} plane crosses F on {int(rows.sum())} boxes, e.g. "
                                f"{[t[rows][:3].tolist() for t in box]}")
    for v in (rel.lower_a, rel.lower_b, rel.lower_c, rel.upper_a, rel.upper_b, rel.upper_c):
        assert torch.isfinite(v).all() and v.dtype == lx.dtype and v.shape == lx.shape


MODES = ["certrnn", "popqorn", "blend"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_planes_sound(product, mode, dtype):
    planes, F = PRODUCTS[product]
    box = _boxes(dtype, seed=2 * sorted(PRODUCTS).index(product) + (mode == "popqorn") + 10 * (mode == "blend"))
    rel = planes(*box, mode=mode)
    _assert_sound(rel, F, box)
    if mode == "certrnn":  # parallel planes for the zonotope transformer
        assert torch.equal(rel.lower_a, rel.upper_a) and torch.equal(rel.lower_b, rel.upper_b)
        assert (rel.upper_c >= rel.lower_c).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_float32_planes_hold_in_float64(product, mode):
    """float32 planes (coefficients and box are exact float64 numbers) still enclose F when everything is
    evaluated in float64: the offsets were rounded outwards and widened, not merely rounded to nearest."""
    planes, F = PRODUCTS[product]
    box32 = _boxes(torch.float32, n=30, seed=21)
    rel = planes(*box32, mode=mode)
    box = tuple(t.double() for t in box32)
    rel64 = type(rel)(*(v.double()[:, None] for v in (rel.lower_a, rel.lower_b, rel.lower_c,
                                               rel.upper_a, rel.upper_b, rel.upper_c)))
    X, Y = _points(*box)
    f = F(X, Y)
    lo, hi = rel64.evaluate(X, Y)
    tol = 4 * torch.finfo(torch.float64).eps * (1 + lo.abs() + hi.abs() + (rel64.lower_a * X).abs()
                                                + (rel64.upper_a * X).abs() + (rel64.lower_b * Y).abs()
                                                + (rel64.upper_b * Y).abs())
    assert not (lo - f > tol).any() and not (f - hi > tol).any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mccormick_sound_and_touching(dtype):
    box = _boxes(dtype, seed=7)
    rel = mccormick_planes(*box)
    _assert_sound(rel, lambda x, y: x * y, box)
    lx, ux, ly, uy = box
    # lower touches at (lx, *) and (*, ly); upper at (lx, *) and (*, uy): check at the corners
    touching = ((lx, ly, "lo"), (ux, ly, "lo"), (lx, uy, "lo"), (lx, ly, "hi"), (lx, uy, "hi"), (ux, uy, "hi"))
    for (x, y, which) in touching:
        lo, hi = rel.evaluate(x, y)
        v = lo if which == "lo" else hi
        mag = (lx.abs() + ux.abs()) * (ly.abs() + uy.abs())
        assert ((v - x * y).abs() <= 32 * torch.finfo(dtype).eps * (1 + mag)).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mul_parallel_planes_sound_and_tight(dtype):
    box = _boxes(dtype, seed=8)
    rel = mul_parallel_planes(*box)
    _assert_sound(rel, lambda x, y: x * y, box)
    assert torch.equal(rel.lower_a, rel.upper_a) and torch.equal(rel.lower_b, rel.upper_b)
    lx, ux, ly, uy = (t.double() for t in box)
    # the offsets are the extremes: the width is 2 h_x h_y (up to the widening)
    w = (rel.upper_c - rel.lower_c).double()
    tol = 64 * torch.finfo(dtype).eps * (1 + (lx.abs() + ux.abs()) * (ly.abs() + uy.abs()))
    assert ((w - (ux - lx) * (uy - ly) / 2).abs() <= tol).all()


def _true_extreme(F, A, B, box, sign):
    """sign * min over the box of sign * (F - A x - B y): 401 x 401 grid, then L-BFGS-B from the 5 best."""
    lx, ux, ly, uy = box
    g = lambda x, y: sign * (F(x, y) - A * x - B * y)  # noqa: E731
    xs, ys = np.linspace(lx, ux, 401), np.linspace(ly, uy, 401)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    G = g(X, Y)
    best = G.min()
    for i in np.argsort(G.ravel())[:5]:
        r = minimize(lambda z: g(z[0], z[1]), [X.ravel()[i], Y.ravel()[i]], method="L-BFGS-B",
                     bounds=[(lx, ux), (ly, uy)], options=dict(ftol=1e-15, gtol=1e-12))
        best = min(best, float(r.fun))
    return sign * best


NP_F = {"sigmoid_tanh": lambda x, y: np.tanh(y) / (1 + np.exp(-x)), "sigmoid_mul": lambda x, y: y / (1 + np.exp(-x))}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_offsets_are_the_true_extremes(product, mode):
    """The computed C_l (C_u) is within 1e-6 of the true min (max) of F - A x - B y: the enumerated
    candidates really contain the extremisers (so the offsets are as tight as the tilt allows)."""
    planes, _ = PRODUCTS[product]
    rng = np.random.default_rng(3)
    boxes = []
    for s in (0.5, 2.0, 6.0, 15.0):
        for _ in range(6):
            lx, ux = np.sort(rng.uniform(-s, s, 2)); ly, uy = np.sort(rng.uniform(-s, s, 2))
            boxes.append((lx, ux, ly, uy))
    T = lambda i: torch.tensor([b[i] for b in boxes], dtype=torch.float64)  # noqa: E731
    rel = planes(T(0), T(1), T(2), T(3), mode=mode)
    for k, box in enumerate(boxes):
        for sign, A, B, C in ((1, rel.lower_a, rel.lower_b, rel.lower_c), (-1, rel.upper_a, rel.upper_b, rel.upper_c)):
            true = _true_extreme(NP_F[product], A[k].item(), B[k].item(), box, sign)
            diff = sign * (true - C[k].item())  # >= 0 when sound
            assert -1e-12 <= diff <= 1e-6, (box, sign, diff)


def _quartic_interior(A, B, box):
    """Independent oracle: interior stationary points of sigma(x) tanh(y) - A x - B y from the quartic
    p^4 - (2+B) p^3 + (1+2B) p^2 - B p - A^2 = 0 (companion-matrix eigenvalues, Newton-polished)."""
    n = A.shape[0]
    C = torch.zeros(n, 4, 4, dtype=torch.float64)
    C[:, 1, 0] = C[:, 2, 1] = C[:, 3, 2] = 1.0
    C[:, 0, 3], C[:, 1, 3], C[:, 2, 3], C[:, 3, 3] = A * A, B, -(1 + 2 * B), 2 + B
    roots = torch.linalg.eigvals(C)
    p = roots.real
    keep = (roots.imag.abs() < 1e-7) & (p > 0) & (p < 1)
    for _ in range(5):
        q = (((p - (2 + B[:, None])) * p + (1 + 2 * B[:, None])) * p - B[:, None]) * p - A[:, None] ** 2
        dq = ((4 * p - 3 * (2 + B[:, None])) * p + 2 * (1 + 2 * B[:, None])) * p - B[:, None]
        p = torch.where(keep & (dq != 0), p - q / torch.where(dq != 0, dq, torch.ones_like(dq)), p)
    t = A[:, None] / (p * (1 - p))
    keep &= (t.abs() < 1) & (p > 0) & (p < 1)
    x, y = torch.log(p) - torch.log1p(-p), torch.atanh(t.clamp(-1 + 1e-16, 1 - 1e-16))
    lx, ux, ly, uy = (b[:, None] for b in box)
    keep &= (x >= lx) & (x <= ux) & (y >= ly) & (y <= uy)
    return x, y, keep


def test_interior_stationary_points_match_quartic():
    """Every interior critical point from the quartic lies within our extremes, and where an interior
    critical point is the box's extremum, ours attains the same value (bisection = eigenvalue solve)."""
    g = torch.Generator().manual_seed(5)
    n = 20000
    c = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 6
    w = torch.rand(n, generator=g, dtype=torch.float64) * 8
    cy = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 3
    wy = torch.rand(n, generator=g, dtype=torch.float64) * 4
    box = (c - w, c + w, cy - wy, cy + wy)
    A = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 0.12
    B = torch.rand(n, generator=g, dtype=torch.float64) * 1.1 - 0.05
    e = SIGMOID_TANH.extremes(A, B, *box)
    x, y, keep = _quartic_interior(A, B, box)
    val = torch.sigmoid(x) * torch.tanh(y) - A[:, None] * x - B[:, None] * y
    assert keep.sum() > 1000  # the test really exercises interior points
    tol = 1e-12
    assert (val[keep] >= (e.lo[:, None].expand_as(val))[keep] - tol).all()
    assert (val[keep] <= (e.hi[:, None].expand_as(val))[keep] + tol).all()


def test_case_table_covered_and_symmetric():
    box = _boxes(torch.float64, n=40, seed=11)
    case = sigmoid_tanh_case(*box)
    assert set(case.unique().tolist()) == set(range(1, 10))
    # case 3 is case 2 on the y-reflected box with A -> -A: compare against the case-2 tilts directly
    lx, ux, ly, uy = box
    m = case == 3
    A, B = certrnn_sigmoid_tanh_candidates(*box)
    for k, (a2, b2) in enumerate(_case2_tilts(lx, ux, -uy, -ly)):
        assert torch.allclose(A[k][m], -a2[m]) and torch.allclose(B[k][m], b2[m])
    # the exact widths are reflection invariant: F(x, -y) = -F(x, y)
    rel = sigmoid_tanh_planes(lx, ux, ly, uy)
    ref = sigmoid_tanh_planes(lx, ux, -uy, -ly)
    w, wr = rel.upper_c - rel.lower_c, ref.upper_c - ref.lower_c
    assert torch.allclose(w, wr, rtol=1e-9, atol=1e-12)


def test_certrnn_never_wider_than_corner_fit_and_popqorn_mean_gap_smaller():
    box = _uniform_boxes(500, 3.0, seed=2)
    from certnn.relax.product_tilts import corner_fit
    mx, my = (box[0] + box[1]) / 2, (box[2] + box[3]) / 2
    for fn, planes in ((SIGMOID_TANH, sigmoid_tanh_planes), (SIGMOID_MUL, sigmoid_mul_planes)):
        A, B = corner_fit(fn.name, *box)
        e = fn.extremes(A, B, *box)
        rc = planes(*box, mode="certrnn")
        assert ((rc.upper_c - rc.lower_c) <= (e.hi - e.lo) + 1e-12).all()
        rp = planes(*box, mode="popqorn")
        gap_p = (rp.upper_a - rp.lower_a) * mx + (rp.upper_b - rp.lower_b) * my + rp.upper_c - rp.lower_c
        assert gap_p.mean() <= (rc.upper_c - rc.lower_c).mean()


def _plane_scores(rel, box, kappa):
    """(1 - kappa) * mean + kappa * worst value over the box of the lower plane (higher is better) and of
    the upper plane (lower is better): the 'blend' criterion; kappa = 0 is the volume criterion."""
    lx, ux, ly, uy = box
    mx, my, hx, hy = (lx + ux) / 2, (ly + uy) / 2, (ux - lx) / 2, (uy - ly) / 2
    lo = rel.lower_a * mx + rel.lower_b * my + rel.lower_c - kappa * (rel.lower_a.abs() * hx + rel.lower_b.abs() * hy)
    hi = rel.upper_a * mx + rel.upper_b * my + rel.upper_c + kappa * (rel.upper_a.abs() * hx + rel.upper_b.abs() * hy)
    return lo, hi


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_blend_planes_optimise_their_criterion(product):
    """On random boxes the 'blend' planes score better than POPQORN's least-volume planes under the blend
    criterion, and POPQORN's score better under the volume criterion (each search optimises its own)."""
    from certnn.relax.types import BLEND_KAPPA

    planes, _ = PRODUCTS[product]
    box = _uniform_boxes(400, 4.0, seed=9)
    rb, rp = planes(*box, mode="blend"), planes(*box, mode="popqorn")
    lo_b, hi_b = _plane_scores(rb, box, BLEND_KAPPA)
    lo_p, hi_p = _plane_scores(rp, box, BLEND_KAPPA)
    assert lo_b.mean() > lo_p.mean() and hi_b.mean() < hi_p.mean()
    lo_b, hi_b = _plane_scores(rb, box, 0.0)
    lo_p, hi_p = _plane_scores(rp, box, 0.0)
    assert lo_p.mean() > lo_b.mean() and hi_p.mean() < hi_b.mean()


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_degenerate_and_shapes(product):
    planes, F = PRODUCTS[product]
    # a point box: both planes pass (within ulps) through F at the point
    x = torch.tensor([-3.0, 0.0, 2.5, 700.0, -800.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, -4.0, -2.0, 3.0], dtype=torch.float64)
    for mode in MODES:
        rel = planes(x, x.clone(), y, y.clone(), mode=mode)
        lo, hi = rel.evaluate(x, y)
        assert torch.allclose(lo, F(x, y), atol=1e-9) and torch.allclose(hi, F(x, y), atol=1e-9)
    # any shape: a (2, 3, 4) batch gives the same planes as its flattened version
    g = torch.Generator().manual_seed(0)
    a, b, c, d = (torch.randn(2, 3, 4, generator=g, dtype=torch.float64) * 2 for _ in range(4))
    box = (torch.minimum(a, b), torch.maximum(a, b), torch.minimum(c, d), torch.maximum(c, d))
    rel = planes(*box)
    flat = planes(*(t.reshape(-1) for t in box))
    assert rel.lower_c.shape == (2, 3, 4)
    assert torch.allclose(rel.lower_c.reshape(-1), flat.lower_c)
    assert torch.allclose(rel.upper_a.reshape(-1), flat.upper_a)


def test_bad_inputs():
    one = torch.ones(3)
    with pytest.raises(ValueError):
        sigmoid_tanh_planes(one, 0 * one, one, one)
    with pytest.raises(ValueError):
        sigmoid_mul_planes(0 * one, one, 0 * one, one, mode="deepz")
    with pytest.raises(ValueError):
        mccormick_planes(one, one, one, torch.ones(2))
    with pytest.raises(ValueError):
        sigmoid_tanh_planes(0 * one, one * float("inf"), 0 * one, one)


def test_popqorn_tilt_search_iterations_do_not_change_the_planes_materially():
    """The tilt search scores tilts with SEARCH_ITERS bisection steps (offsets stay exact); the chosen
    planes' mean gap is within a hair of scoring with the full BISECT_ITERS steps, on random boxes."""
    from certnn.relax.product_extremes import BISECT_ITERS
    from certnn.relax.product_popqorn import SEARCH_ITERS, popqorn_tilts

    assert SEARCH_ITERS < BISECT_ITERS
    box = _uniform_boxes(400, 4.0, seed=5)
    mx, my = (box[0] + box[1]) / 2, (box[2] + box[3]) / 2
    for fn in (SIGMOID_TANH, SIGMOID_MUL):
        gaps = []
        for iters in (SEARCH_ITERS, BISECT_ITERS):
            Al, Bl, Au, Bu = popqorn_tilts(fn, *box, iters=iters)
            lo, hi = fn.extremes(Al, Bl, *box).lo, fn.extremes(Au, Bu, *box).hi  # exact offsets
            gaps.append(((Au - Al) * mx + (Bu - Bl) * my + hi - lo).mean())
        assert gaps[0] <= gaps[1] * (1 + 1e-4) + 1e-12
