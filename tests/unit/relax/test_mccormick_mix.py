"""Relaxation level, x * y between its two McCormick planes (relax.products.interpolated_mccormick, the planes
alpha-CROWN optimises for plain products): for every weight r, lower <= x y <= upper on dense grids, corners,
edges and random points of thousands of boxes (scales 1e-3..1e3, zero-width sides, one-quadrant boxes), in
float64 and float32; also for weights outside [0, 1] and weights rounded to float32; r = 1 is CROWN's McCormick
pair; the planes touch x y at the corners they should; the offsets are the exact corner extremes and their
gradients the closed forms' (also at r = 1, where three corners tie)."""
from __future__ import annotations

import pytest
import torch

from certnn.relax.products import interpolated_mccormick, mccormick_planes
from test_products import _assert_sound, _boxes, _points

torch.set_num_threads(1)
MUL = lambda x, y: x * y  # noqa: E731


def _vals(rel):
    return (rel.lower_a, rel.lower_b, rel.lower_c, rel.upper_a, rel.upper_b, rel.upper_c)


def _weights(n: int, dtype, seed: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """n weights: the ends 0 and 1, 1/2, and uniform ones in [lo, hi]."""
    g = torch.Generator().manual_seed(seed)
    r = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    r[: n // 8] = 0.0
    r[n // 8: n // 4] = 1.0
    r[n // 4: n // 4 + 3] = 0.5
    return r.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interpolated_planes_bound_xy_on_a_dense_grid(dtype, seed):
    box = _boxes(dtype, seed=30 + seed)
    n = box[0].shape[0]
    rel = interpolated_mccormick(*box, _weights(n, dtype, seed), _weights(n, dtype, 100 + seed))
    _assert_sound(rel, MUL, box)  # 41 x 41 grid, corners, edges, random interior points
    # evaluated in float64 too (the float32 offsets were rounded outwards)
    X, Y = _points(*(t.double() for t in box))
    c = lambda v: v.double()[:, None]  # noqa: E731
    lo = c(rel.lower_a) * X + c(rel.lower_b) * Y + c(rel.lower_c)
    hi = c(rel.upper_a) * X + c(rel.upper_b) * Y + c(rel.upper_c)
    tol = 4 * torch.finfo(torch.float64).eps * (1 + lo.abs() + hi.abs() + (c(rel.lower_a) * X).abs()
                                                + (c(rel.upper_a) * X).abs() + (c(rel.lower_b) * Y).abs()
                                                + (c(rel.upper_b) * Y).abs())
    assert not (lo - X * Y > tol).any() and not (X * Y - hi > tol).any()


def test_weights_outside_the_range_are_clamped_and_sound():
    box = _boxes(torch.float64, seed=40)
    n = box[0].shape[0]
    r_lo, r_up = _weights(n, torch.float64, 4, -3.0, 4.0), _weights(n, torch.float64, 5, -3.0, 4.0)
    rel = interpolated_mccormick(*box, r_lo, r_up)
    _assert_sound(rel, MUL, box)
    ref = interpolated_mccormick(*box, r_lo.clamp(0, 1), r_up.clamp(0, 1))
    for a, b in zip(_vals(rel), _vals(ref)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_weight_one_is_mccormick_and_the_planes_touch_where_they_should(dtype):
    box = _boxes(dtype, seed=41)
    lx, ux, ly, uy = box
    n = lx.shape[0]
    one = torch.ones(n, dtype=dtype)
    rel, mc = interpolated_mccormick(*box, one, one), mccormick_planes(*box)
    mag = (lx.abs() + ux.abs()) * (ly.abs() + uy.abs())
    tol = 64 * torch.finfo(dtype).eps * (1 + mag)
    for a, b in zip(_vals(rel), _vals(mc)):
        assert ((a - b).abs() <= tol).all()
    r_lo, r_up = _weights(n, dtype, 6), _weights(n, dtype, 7)
    rel = interpolated_mccormick(*box, r_lo, r_up)
    for x, y, which in ((lx, uy, "lo"), (ux, ly, "lo"), (lx, ly, "hi"), (ux, uy, "hi")):
        lo, hi = rel.evaluate(x, y)
        v = lo if which == "lo" else hi
        assert ((v - x * y).abs() <= tol).all(), which


def test_offsets_are_exact_corner_extremes_and_gradients_the_closed_forms():
    """Values: min / max over the four corners of x y - A x - B y (plus a few ulps). Gradients in r and in
    the box: those of -(r lx ly + (1 - r) ux uy) and -(r lx uy + (1 - r) ux ly), also at r = 1 (the
    optimiser's start, where the gradient of a tie-averaged extreme would be off by (ux - lx)(uy - ly) / 3)."""
    g = torch.Generator().manual_seed(3)
    lx, ux, ly, uy = (torch.randn(4, 50, generator=g, dtype=torch.float64) * 2).sort(0).values[[0, 2, 1, 3]]
    r = torch.rand(2, 50, generator=g, dtype=torch.float64)
    r[:, :10] = 1.0
    leaves = [t.clone().requires_grad_(True) for t in (lx, ux, ly, uy, r[0], r[1])]
    rel = interpolated_mccormick(*leaves)
    xs, ys = torch.stack([lx, lx, ux, ux]), torch.stack([ly, uy, ly, uy])
    lo = (xs * ys - rel.lower_a.detach() * xs - rel.lower_b.detach() * ys).amin(0)
    hi = (xs * ys - rel.upper_a.detach() * xs - rel.upper_b.detach() * ys).amax(0)
    margin = 64 * torch.finfo(torch.float64).eps * (1 + (lx.abs() + ux.abs()) * (ly.abs() + uy.abs()))
    assert (rel.lower_c <= lo).all() and (lo - rel.lower_c <= margin).all()
    assert (rel.upper_c >= hi).all() and (rel.upper_c - hi <= margin).all()
    (rel.lower_c.sum() + 2 * rel.upper_c.sum()).backward()
    gl, gu = (ux * uy - lx * ly), 2 * (ux * ly - lx * uy)
    assert torch.allclose(leaves[4].grad, gl) and torch.allclose(leaves[5].grad, gu)
    rl, ru = r[0], r[1]
    assert torch.allclose(leaves[0].grad, -rl * ly - 2 * ru * uy)  # d/d lx
    assert torch.allclose(leaves[1].grad, -(1 - rl) * uy - 2 * (1 - ru) * ly)  # d/d ux
