"""One-sided extremes of F - A x - B y (relax.product_sided: the lower plane's min, the upper plane's max,
from the candidates second-order conditions allow, the interior point by safeguarded Newton) against the
full enumeration of relax.product_extremes (both sides, every candidate, bisection) and dense grids: the
same values to rounding, a slack covering every grid point, the same gradients where no candidates tie."""
from __future__ import annotations

import pytest
import torch

from certnn.relax.product_extremes import sigmoid_mul_extremes, sigmoid_tanh_extremes
from certnn.relax.product_sided import sigmoid_mul_sided, sigmoid_tanh_sided

torch.set_num_threads(1)

PAIRS = {"sigmoid_tanh": (sigmoid_tanh_extremes, sigmoid_tanh_sided,
                          lambda x, y: torch.sigmoid(x) * torch.tanh(y)),
         "sigmoid_mul": (sigmoid_mul_extremes, sigmoid_mul_sided, lambda x, y: torch.sigmoid(x) * y)}


def _cases(n: int, seed: int, scale: float = 3.0):
    """Boxes (centres ~ N(0, scale), widths up to 4/3 scale, a tenth of them zero-width in x or y) and tilts
    around the products' slopes (A in [-0.15, 0.15] for the interior points of sigma tanh, B in [-0.05,
    1.05]) plus a few large tilts."""
    g = torch.Generator().manual_seed(seed)
    r = lambda: torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    cx = torch.randn(n, generator=g, dtype=torch.float64) * scale
    cy = torch.randn(n, generator=g, dtype=torch.float64) * scale
    wx, wy = r() * scale * 2 / 3, r() * scale * 2 / 3
    wx = torch.where(r() < 0.1, torch.zeros_like(wx), wx)
    wy = torch.where(r() < 0.1, torch.zeros_like(wy), wy)
    A = (r() * 2 - 1) * 0.15
    B = r() * 1.1 - 0.05
    big = r() < 0.05
    A, B = torch.where(big, A * 40, A), torch.where(big, B * 5, B)
    return A, B, cx - wx, cx + wx, cy - wy, cy + wy


def _sided(sided, A, B, box):
    """(min, max, slack of min, slack of max) through the stacked-sides call relax.products makes."""
    two = lambda t: torch.stack([t, t])  # noqa: E731
    side = torch.tensor([-1.0, 1.0], dtype=torch.float64).reshape(2, 1)
    ext, slack = sided(two(A), two(B), *(two(t) for t in box), side)
    slack = torch.as_tensor(slack, dtype=torch.float64).expand(2, A.shape[0])
    return ext[0], ext[1], slack[0], slack[1]


@pytest.mark.parametrize("product", sorted(PAIRS))
@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0])
def test_sided_equals_full_enumeration(product, scale):
    full, sided, _ = PAIRS[product]
    A, B, *box = _cases(4000, seed=int(scale * 10) + len(product), scale=scale)
    e = full(A, B, *box)
    lo, hi, sl, sh = _sided(sided, A, B, box)
    tol = 1e-13 * (1 + e.lo.abs() + e.hi.abs())
    assert (lo - e.lo).abs().max() <= tol.max(), float((lo - e.lo).abs().max())
    assert (hi - e.hi).abs().max() <= tol.max(), float((hi - e.hi).abs().max())
    assert float(sl.max()) < 1e-12 and float(sh.max()) < 1e-12


def _grid(F, A, B, box, k: int = 301):
    lx, ux, ly, uy = box
    t = torch.linspace(0, 1, k, dtype=torch.float64)
    X = lx[:, None, None] + (ux - lx)[:, None, None] * t[None, :, None]
    Y = ly[:, None, None] + (uy - ly)[:, None, None] * t[None, None, :]
    G = (F(X, Y) - A[:, None, None] * X - B[:, None, None] * Y).flatten(1)
    return G.amin(1), G.amax(1)


@pytest.mark.parametrize("product", sorted(PAIRS))
def test_sided_bounds_every_grid_point_and_is_attained(product):
    """ext - slack <= min over a dense grid, ext + slack >= max; and ext is a value of g at a box point,
    so no grid value can lie beyond it by more than the grid's resolution allows (here: beyond at all)."""
    _, sided, F = PAIRS[product]
    A, B, *box = _cases(600, seed=7)
    lo, hi, sl, sh = _sided(sided, A, B, box)
    gmin, gmax = _grid(F, A, B, box)
    tol = 1e-12
    assert bool((lo - sl <= gmin + tol).all()) and bool((hi + sh >= gmax - tol).all())
    assert bool((lo <= gmin + tol).all()) and bool((hi >= gmax - tol).all())  # the grid cannot beat ours


def test_interior_extremes_are_found_where_they_decide():
    """Boxes and tilts where an interior stationary point is the extreme of sigma(x) tanh(y) - A x - B y
    (the corners and edges are strictly worse): the sided min / max attain it."""
    A, B, *box = _cases(20000, seed=3)
    e = sigmoid_tanh_extremes(A, B, *box)
    xs, ys = e.lo_x, e.lo_y
    lx, ux, ly, uy = box
    inner = (xs > lx + 1e-6) & (xs < ux - 1e-6) & (ys > ly + 1e-6) & (ys < uy - 1e-6)
    assert int(inner.sum()) > 50  # interior minima really occur in this sample
    lo, hi, _, _ = _sided(sigmoid_tanh_sided, A, B, box)
    assert (lo[inner] - e.lo[inner]).abs().max() <= 1e-13
    inner_hi = ((e.hi_x > lx + 1e-6) & (e.hi_x < ux - 1e-6) & (e.hi_y > ly + 1e-6) & (e.hi_y < uy - 1e-6))
    assert int(inner_hi.sum()) > 50
    assert (hi[inner_hi] - e.hi[inner_hi]).abs().max() <= 1e-13


@pytest.mark.parametrize("product", sorted(PAIRS))
def test_sided_gradients_equal_the_full_enumerations(product):
    """Gradients in A, B and the box (alpha-CROWN's optimiser follows them) equal those of the full
    enumeration. On a zero-width side both ends are the same point, and tied candidates share the gradient
    (relax.ties) with other multiplicities here (fewer duplicates), so there only the sum over the two
    ends is compared."""
    full, sided, _ = PAIRS[product]
    A, B, *box = _cases(3000, seed=11)
    leaves = [t.clone().requires_grad_(True) for t in [A, B] + box]
    e = full(*leaves)
    (e.lo.sum() + 2 * e.hi.sum()).backward()
    g_full = torch.stack([t.grad for t in leaves])
    leaves2 = [t.clone().requires_grad_(True) for t in [A, B] + box]
    lo, hi, _, _ = _sided(sided, leaves2[0], leaves2[1], leaves2[2:])
    (lo.sum() + 2 * hi.sum()).backward()
    g_sided = torch.stack([t.grad for t in leaves2])
    lx, ux, ly, uy = box
    merged = lambda g: torch.stack([g[0], g[1], g[2] + g[3], g[4] + g[5]])  # noqa: E731
    zero_w = (ux == lx) | (uy == ly)
    assert int(zero_w.sum()) > 100
    for G, H, keep in ((g_full, g_sided, ~zero_w), (merged(g_full), merged(g_sided), zero_w)):
        err = ((G - H).abs() / (1 + G.abs())).amax(0)[keep]
        assert float(err.max()) <= 1e-8, float(err.max())
