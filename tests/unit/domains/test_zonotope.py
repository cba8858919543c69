"""Domain level, zonotopes: concrete points from sampled noise (uniform, vertices, Lp-sphere points for the
input group) stay inside concretize() after chains of affine maps, adds of zonotopes with partially shared
symbols, and relaxations; L2/L1 input groups concretise to the exact range of affine functions; aligning
symbols by id is sound where aligning by position is not."""
from __future__ import annotations

import pytest
import torch

from certnn.domains import SymbolTable, Zonotope, align, apply_planes, concat
from certnn.relax import (TANH, LinearRelaxation, mccormick_planes, mul_parallel_planes, parallel_relaxation,
                          sigmoid_mul_planes, sigmoid_tanh_planes)

torch.set_num_threads(1)
DT = torch.float64
DUAL = {"inf": 1.0, "2": 2.0, "1": float("inf")}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _lp_sphere(n_samples: int, B: int, n: int, norm: str, g: torch.Generator) -> torch.Tensor:
    """(S, B, n) points with ||delta||_p = 1 (for inf: vertices and uniform points of the box)."""
    if norm == "inf":
        u = torch.rand(n_samples, B, n, generator=g, dtype=DT) * 2 - 1
        v = torch.where(torch.rand(n_samples, B, n, generator=g) < 0.5, -1.0, 1.0).to(DT)
        return torch.cat([u, v])
    if norm == "2":
        d = torch.randn(n_samples, B, n, generator=g, dtype=DT)
        return d / d.norm(dim=-1, keepdim=True)
    # L1: random points on the sphere plus the vertices +-e_i
    d = -torch.log(torch.rand(n_samples, B, n, generator=g, dtype=DT))
    d = d * torch.where(torch.rand(n_samples, B, n, generator=g) < 0.5, -1.0, 1.0).to(DT)
    d = d / d.abs().sum(-1, keepdim=True)
    eye = torch.eye(n, dtype=DT)
    verts = torch.cat([eye, -eye])[:, None, :].expand(2 * n, B, n)
    return torch.cat([d, verts])


def _noise(table: SymbolTable, S: int, B: int, g: torch.Generator) -> torch.Tensor:
    """(S, B, count) values for every id of the table: uniform and vertex values in [-1, 1]."""
    u = torch.rand(S, B, table.count, generator=g, dtype=DT) * 2 - 1
    v = torch.where(torch.rand(S, B, table.count, generator=g) < 0.5, -1.0, 1.0).to(DT)
    return torch.cat([u, v])


def _inside(values: torch.Tensor, z: Zonotope, tol: float = 1e-12) -> None:
    lo, hi = z.concretize()
    assert (values >= lo - tol * (1 + lo.abs())).all() and (values <= hi + tol * (1 + hi.abs())).all(), \
        f"worst excess {torch.maximum(lo - values, values - hi).max().item():.3e}"


# ---- constructors -------------------------------------------------------------------------------------
def test_from_box_symbols_and_bounds():
    t = SymbolTable()
    lo = torch.tensor([[0.0, 1.0, -2.0], [0.0, 3.0, -1.0]], dtype=DT)
    hi = torch.tensor([[1.0, 1.0, 2.0], [0.0, 3.0, 5.0]], dtype=DT)
    z = Zonotope.from_box(lo, hi, t)
    assert z.num_symbols == 2  # coordinate 1 is degenerate in both rows, 0 only in row 1
    l, u = z.concretize()
    assert torch.allclose(l, lo) and torch.allclose(u, hi)
    assert t.count == 2 and t.is_input(z.ids).all()


def test_table_is_not_global():
    t1, t2 = SymbolTable(), SymbolTable()
    a = Zonotope.from_box(torch.zeros(1, 2, dtype=DT), torch.ones(1, 2, dtype=DT), t1)
    b = Zonotope.from_box(torch.zeros(1, 2, dtype=DT), torch.ones(1, 2, dtype=DT), t2)
    assert torch.equal(a.ids, b.ids)  # both tables start at 0: no hidden global counter
    with pytest.raises(ValueError):
        a + b


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_lp_ball_affine_range_is_exact(norm):
    """w.x + b over {c + eps * scale * delta : ||delta||_p <= 1} is exactly w.c + b +- eps ||w * scale||_q,
    with the dual norm taken over ALL input features of a sample (here a (3, 4) input, flattened)."""
    g = _gen(1)
    B, shape, m = 3, (3, 4), 5
    c = torch.randn(B, *shape, generator=g, dtype=DT)
    eps = torch.tensor([0.1, 0.5, 2.0], dtype=DT)
    scale = torch.rand(*shape, generator=g, dtype=DT) + 0.5
    t = SymbolTable()
    z = Zonotope.from_lp_ball(c, eps, norm, t, scale=scale)
    W = torch.randn(m, 12, generator=g, dtype=DT)
    b = torch.randn(m, dtype=DT)
    out = z.linear_map(lambda v: v.reshape(v.shape[0], -1) @ W.T, b)
    lo, hi = out.concretize()
    centre = c.reshape(B, -1) @ W.T + b
    rad = eps[:, None] * torch.linalg.vector_norm(W * scale.reshape(1, -1), ord=DUAL[norm], dim=1)[None, :]
    assert torch.allclose(lo, centre - rad, rtol=1e-12, atol=1e-12)
    assert torch.allclose(hi, centre + rad, rtol=1e-12, atol=1e-12)
    if norm != "inf":
        assert [grp.norm for grp in t.input_groups()] == [norm] and len(t.input_groups()[0]) == 12
        # the box representation is a sound over-approximation: it contains the exact range
        zb = Zonotope.from_lp_ball(c, eps, norm, SymbolTable(), scale=scale, representation="box")
        lb, hb = zb.linear_map(lambda v: v.reshape(v.shape[0], -1) @ W.T, b).concretize()
        assert (lb <= lo + 1e-12).all() and (hb >= hi - 1e-12).all()


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_sampled_affine_chain_matches_and_is_inside(norm):
    """at(eps) reproduces the concrete affine computation exactly and lies inside the bounds, for eps on
    the Lp sphere (input group) and uniform / vertex values of the other symbols."""
    g = _gen(2)
    B, n, S = 4, 6, 200
    t = SymbolTable()
    c = torch.randn(B, n, generator=g, dtype=DT)
    x = Zonotope.from_lp_ball(c, 0.3, norm, t)
    W1, b1 = torch.randn(8, n, generator=g, dtype=DT), torch.randn(8, dtype=DT)
    W2, b2 = torch.randn(8, n, generator=g, dtype=DT), torch.randn(8, dtype=DT)
    h = x.affine(W1, b1)
    extra = Zonotope.from_box(-torch.rand(B, 8, generator=g, dtype=DT), torch.rand(B, 8, generator=g, dtype=DT), t,
                              label="other")
    k = x.affine(W2, b2) + extra            # shares the input symbols with h, adds its own
    W3, b3 = torch.randn(3, 8, generator=g, dtype=DT), torch.randn(3, dtype=DT)
    y = (h - 2.0 * k).affine(W3, b3)
    assert y.num_symbols == t.count
    delta = _lp_sphere(S, B, n, norm, g)                     # input part
    noise = _noise(t, S, B, g)[: delta.shape[0]]
    noise[..., x.ids] = delta                                 # the input ids are 0..n-1
    ids = torch.arange(t.count)
    xs = x.at(noise, ids)
    assert torch.allclose(xs, c + 0.3 * delta)
    es = extra.at(noise, ids)
    manual = ((xs @ W1.T + b1) - 2 * (xs @ W2.T + b2 + es)) @ W3.T + b3
    ys = y.at(noise, ids)
    assert torch.allclose(ys, manual)
    _inside(ys, y)


def test_add_aligns_partially_shared_symbols_by_id():
    t = SymbolTable()
    a_id, b_id, c_id = t.fresh(1), t.fresh(1), t.fresh(1)
    c0 = torch.zeros(1, 2, dtype=DT)
    z1 = Zonotope(c0, torch.tensor([[[1.0, 0.0], [2.0, 1.0]]], dtype=DT), torch.cat([a_id, b_id]), t)
    z2 = Zonotope(c0, torch.tensor([[[3.0, 1.0], [4.0, -1.0]]], dtype=DT), torch.cat([b_id, c_id]), t)
    s = z1 + z2
    assert s.ids.tolist() == [0, 1, 2]
    assert torch.equal(s.generators[0], torch.tensor([[1.0, 0.0], [5.0, 2.0], [4.0, -1.0]], dtype=DT))
    lo, hi = s.concretize()
    assert torch.allclose(hi, torch.tensor([[10.0, 3.0]], dtype=DT))
    d = z1 - z1
    assert torch.equal(d.concretize()[0], torch.zeros(1, 2, dtype=DT))  # same symbols cancel exactly


# ---- aliasing by position vs by id ---------------------------------------------------------------------
def _combine_by_position(zx: Zonotope, zy: Zonotope, A, B, mid, rad):
    """The unsound bookkeeping of an implementation without symbol identities: column k of both operands
    is taken to be the same noise symbol."""
    K = max(zx.num_symbols, zy.num_symbols)
    pad = lambda z: torch.nn.functional.pad(z.generators, (0, 0, 0, K - z.num_symbols))  # noqa: E731
    G = A.unsqueeze(1) * pad(zx) + B.unsqueeze(1) * pad(zy)
    c = A * zx.center + B * zy.center + mid
    r = G.abs().sum(1) + rad
    return c - r, c + r


def test_aliasing_by_position_is_unsound_by_id_is_sound():
    t = SymbolTable()
    one = torch.ones(1, 1, dtype=DT)
    x = Zonotope.from_box(0 * one, 2 * one, t)                  # x = 1 + e_a
    y = -(Zonotope.from_box(-2 * one, 0 * one, t))              # y = 1 - e_b, a different symbol
    lx, ux = x.concretize()
    ly, uy = y.concretize()
    planes = mul_parallel_planes(lx, ux, ly, uy)
    s = apply_planes(x, y, planes)
    # concrete x*y at the noise corners (e_a, e_b) in {-1, 1}^2 (and a grid)
    ea, eb = torch.meshgrid(torch.linspace(-1, 1, 21, dtype=DT), torch.linspace(-1, 1, 21, dtype=DT), indexing="ij")
    prod = ((1 + ea) * (1 - eb)).reshape(-1, 1, 1)
    _inside(prod, s)                                            # by id: sound, [-2, 4] contains [0, 4]
    lo_s, hi_s = s.concretize()
    assert hi_s.item() >= 4 - 1e-12
    # by position e_b is read as e_a: A x + B y = 2 exactly, and x*y = 4 (e_a = 1, e_b = -1) is missed
    mid, rad = (planes.lower_c + planes.upper_c) / 2, (planes.upper_c - planes.lower_c) / 2
    lo_p, hi_p = _combine_by_position(x, y, planes.lower_a, planes.lower_b, mid, rad)
    assert hi_p.item() < 4 - 0.5
    # relational soundness by id: for every (e_a, e_b) some e_new in [-1, 1] reproduces x*y
    lin = s.center + s.generators[0, 0] * ea.reshape(-1, 1, 1) + s.generators[0, 1] * eb.reshape(-1, 1, 1)
    assert ((prod - lin).abs() <= s.generators[0, 2].abs() + 1e-12).all()


def test_square_from_the_same_symbol():
    """x * x with one symbol: the planes see one variable (aligned by id), result sound and relational."""
    t = SymbolTable()
    one = torch.ones(1, 1, dtype=DT)
    x = Zonotope.from_box(0 * one, 2 * one, t)
    l, u = x.concretize()
    for planes in (mul_parallel_planes(l, u, l, u), mccormick_planes(l, u, l, u)):
        s = apply_planes(x, x, planes)
        assert s.num_symbols == 2  # e_a and one fresh symbol
        ea = torch.linspace(-1, 1, 101, dtype=DT).reshape(-1, 1, 1)
        sq = (1 + ea) ** 2
        _inside(sq, s)
        lin = s.center + s.generators[0, 0] * ea
        assert ((sq - lin).abs() <= s.generators[0, 1].abs() + 1e-12).all()


@pytest.mark.parametrize("mode", ["certrnn", "popqorn"])
def test_products_of_zonotopes_with_different_symbols(mode):
    """sigma(x) tanh(y) and sigma(x) y of two zonotopes with distinct (and some shared) symbols: sampled
    joint noise gives values inside the bounds."""
    g = _gen(4)
    B, n = 3, 5
    t = SymbolTable()
    inp = Zonotope.from_box(-torch.rand(B, n, generator=g, dtype=DT), torch.rand(B, n, generator=g, dtype=DT), t)
    W1, W2 = torch.randn(n, n, generator=g, dtype=DT) * 2, torch.randn(n, n, generator=g, dtype=DT) * 2
    own = Zonotope.from_box(-torch.ones(B, n, dtype=DT), torch.ones(B, n, dtype=DT), t, label="other")
    zx, zy = inp.affine(W1), inp.affine(W2) + own              # partially shared symbols
    (lx, ux), (ly, uy) = zx.concretize(), zy.concretize()
    noise = _noise(t, 300, B, g)
    ids = torch.arange(t.count)
    xs, ys = zx.at(noise, ids), zy.at(noise, ids)
    for planes_fn, F in ((sigmoid_tanh_planes, lambda a, b: torch.sigmoid(a) * torch.tanh(b)),
                         (sigmoid_mul_planes, lambda a, b: torch.sigmoid(a) * b)):
        out = apply_planes(zx, zy, planes_fn(lx, ux, ly, uy, mode=mode))
        _inside(F(xs, ys), out)


def test_chain_with_relaxations_sound_on_samples():
    """input box -> affine -> tanh (parallel lines) -> affine -> + branch -> sigma*tanh planes -> affine."""
    g = _gen(5)
    B, n, h = 4, 6, 7
    t = SymbolTable()
    c = torch.randn(B, n, generator=g, dtype=DT)
    x = Zonotope.from_lp_ball(c, 0.2, "2", t)
    W1, W2, W3 = (torch.randn(h, n, generator=g, dtype=DT), torch.randn(h, h, generator=g, dtype=DT),
                  torch.randn(h, n, generator=g, dtype=DT))
    W4 = torch.randn(2, h, generator=g, dtype=DT)
    a = x.affine(W1)
    ta = a.apply_relaxation(parallel_relaxation(TANH, *a.concretize()), label="tanh")
    u = ta.affine(W2) + x.affine(W3)
    v = x.affine(W3) - ta                                        # shares input and tanh symbols with u
    (lu, uu), (lv, uv) = u.concretize(), v.concretize()
    p = apply_planes(u, v, sigmoid_tanh_planes(lu, uu, lv, uv))
    y = p.affine(W4, torch.ones(2, dtype=DT))
    delta = _lp_sphere(300, B, n, "2", g) * torch.rand(300, B, 1, generator=g, dtype=DT) ** 0.5
    xs = c + 0.2 * delta
    ta_s = torch.tanh(xs @ W1.T)
    us, vs = ta_s @ W2.T + xs @ W3.T, xs @ W3.T - ta_s
    ys = (torch.sigmoid(us) * torch.tanh(vs)) @ W4.T + 1
    for z, val in ((ta, ta_s), (u, us), (v, vs), (p, torch.sigmoid(us) * torch.tanh(vs)), (y, ys)):
        _inside(val, z)


# ---- relaxations, shapes ----------------------------------------------------------------------------
def test_apply_relaxation_rules():
    t = SymbolTable()
    z = Zonotope.from_box(torch.tensor([[-1.0, 2.0]], dtype=DT), torch.tensor([[1.0, 2.0]], dtype=DT), t)
    one = torch.ones(1, 2, dtype=DT)
    with pytest.raises(ValueError):
        z.apply_relaxation(LinearRelaxation(one, 0 * one, 2 * one, one))
    # exact line (c_lo == c_hi) adds no symbol; a gap adds one per neuron with a gap
    T = lambda *v: torch.tensor([list(v)], dtype=DT)  # noqa: E731
    rel = LinearRelaxation(one, T(0.0, -1.0), one.clone(), T(0.0, 1.0))
    out = z.apply_relaxation(rel)
    assert out.num_symbols == z.num_symbols + 1
    lo, hi = out.concretize()
    assert torch.allclose(lo, T(-1.0, 1.0)) and torch.allclose(hi, T(1.0, 3.0))
    point = Zonotope.from_box(one, one, t)
    exact = LinearRelaxation(2 * one, one, 2 * one, one.clone())
    assert point.apply_relaxation(exact).num_symbols == 0
    lo, hi = point.apply_relaxation(parallel_relaxation(TANH, one, one)).concretize()
    assert (hi - lo).max() < 1e-13 and torch.allclose(lo, torch.tanh(one))


def test_concat_index_reshape_hull():
    g = _gen(6)
    t = SymbolTable()
    z1 = Zonotope.from_box(-torch.rand(2, 3, 4, generator=g, dtype=DT), torch.rand(2, 3, 4, generator=g, dtype=DT), t)
    z2 = z1.scale(2.0) + Zonotope.from_box(-torch.ones(2, 3, 4, dtype=DT), torch.ones(2, 3, 4, dtype=DT), t)
    cat = concat([z1, z2], dim=1)
    assert cat.shape == (3, 8) and cat.num_symbols == t.count
    lo, hi = cat.concretize()
    l1, h1 = z1.concretize()
    assert torch.allclose(lo[:, :, :4], l1) and torch.allclose(hi[:, :, 4:], z2.concretize()[1])
    sub = cat[1:, 2:6]
    assert sub.shape == (2, 4) and torch.allclose(sub.concretize()[0], lo[:, 1:, 2:6])
    r = cat.reshape(24)
    assert r.shape == (24,) and torch.allclose(r.concretize()[1], hi.reshape(2, 24))
    hull = cat.interval_hull()
    assert torch.allclose(hull.concretize()[0], lo) and hull.num_symbols <= 24
    (G1, G2), ids = align(z1, z2)
    assert G1.shape == G2.shape == (2, ids.numel(), 3, 4)
