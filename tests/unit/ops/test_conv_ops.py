"""Op level for the convolutional ops: a point box reproduces forward(); the transpose (conv form) equals
autograd's vjp for random strides / paddings / dilations / groups and input sizes the strided windows do
not cover exactly; IBP is sound on random boxes; the dense form equals the op; max pooling's backward rule
is sound on its own (sampled points inside the linear bounds)."""
from __future__ import annotations

import itertools

import pytest
import torch

from certnn.domains import Interval
from certnn.engine.backward import propagate as _propagate
from certnn.engine.context import RunContext
from certnn.engine.methods import get_method
from certnn.graph import GraphBuilder
from certnn.graph.passes import dense_form
from certnn.ops.conv import AvgPool, Conv, GlobalAvgPool, ZeroPad
from certnn.ops.pooling import MaxPool
from certnn.specs import LpBall

D = torch.float64


def _conv_cases():
    """(id, op, input shape) with random conv hyperparameters, 1-D and 2-D."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for i in range(14):
        nd = 1 if i % 4 == 3 else 2
        groups = [1, 2, 3][i % 3]
        cin, cout = groups * int(torch.randint(1, 3, (1,), generator=g)), groups * int(torch.randint(1, 3, (1,), generator=g))
        k = tuple(int(torch.randint(1, 4, (1,), generator=g)) for _ in range(nd))
        s = tuple(int(torch.randint(1, 4, (1,), generator=g)) for _ in range(nd))
        d = tuple(int(torch.randint(1, 3, (1,), generator=g)) for _ in range(nd))
        p = tuple(int(torch.randint(0, 3, (1,), generator=g)) for _ in range(nd))
        spatial = tuple(int(torch.randint(5, 10, (1,), generator=g)) for _ in range(nd))
        w = torch.randn((cout, cin // groups) + k, generator=g, dtype=D)
        b = torch.randn(cout, generator=g, dtype=D) if i % 2 == 0 else None
        cases.append((f"conv{nd}d_{i}_g{groups}_k{k}_s{s}_d{d}_p{p}_in{spatial}", Conv(w, b, s, p, d, groups),
                      (cin,) + spatial))
    return cases


def _pool_cases():
    cases = [
        ("zeropad2d", ZeroPad((1, 2, 0, 3)), (2, 4, 5)),
        ("zeropad1d", ZeroPad((2, 1)), (3, 6)),
        ("avg2d", AvgPool(2), (2, 6, 6)),
        ("avg2d_odd", AvgPool(2), (2, 7, 5)),
        ("avg2d_s1_p1", AvgPool(3, 1, 1), (2, 5, 6)),
        ("avg2d_p1_nocount", AvgPool(3, 2, 1, count_include_pad=False), (2, 7, 6)),
        ("avg2d_ceil", AvgPool(3, 2, 1, ceil_mode=True), (2, 6, 8)),
        ("avg2d_ceil_nocount", AvgPool((2, 3), (2, 2), (1, 0), ceil_mode=True, count_include_pad=False), (1, 7, 6)),
        ("avg1d", AvgPool((3,), (2,), (1,), nd=1), (2, 9)),
        ("global2d", GlobalAvgPool(), (3, 4, 5)),
        ("global1d", GlobalAvgPool(), (3, 7)),
    ]
    return cases


AFFINE = _conv_cases() + _pool_cases()


@pytest.mark.parametrize("name,op,shape", AFFINE, ids=[c[0] for c in AFFINE])
def test_transpose_is_vjp(name, op, shape):
    x = torch.randn((2,) + shape, dtype=D, requires_grad=True)
    y = op.forward(x)
    A = torch.randn((2, 4) + tuple(y.shape[1:]), dtype=D)
    AT = op.transpose(A, shape)
    assert AT.shape == (2, 4) + shape
    for s in range(4):
        (g,) = torch.autograd.grad(y, x, A[:, s], retain_graph=True)
        assert torch.allclose(AT[:, s], g, atol=1e-12), name
    bt = op.bias_term(A)
    y0 = op.forward(torch.zeros_like(x))
    want = (A * y0.unsqueeze(1)).reshape(2, 4, -1).sum(-1)
    assert torch.allclose(bt if bt is not None else torch.zeros_like(want), want, atol=1e-12)


@pytest.mark.parametrize("name,op,shape", AFFINE, ids=[c[0] for c in AFFINE])
def test_point_box_interval_soundness_and_dense_form(name, op, shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2,) + shape, generator=g, dtype=D)
    iv = op.interval(None, Interval.point(x))
    y = op.forward(x)
    assert torch.allclose(iv.lower, y, atol=1e-12) and torch.allclose(iv.upper, y, atol=1e-12)
    r = torch.rand((2,) + shape, generator=g, dtype=D)
    r[:, 0] = 0.0  # a zero-width channel
    iv = op.interval(None, Interval(x - r, x + r))
    u = torch.rand((2, 150) + shape, generator=g, dtype=D) * 2 - 1
    corners = torch.where(torch.rand((2, 150) + shape, generator=g) < 0.5, -1.0, 1.0).to(D)
    pts = x.unsqueeze(1) + torch.cat([u, corners], 1) * r.unsqueeze(1)
    out = op.forward(pts.reshape((-1,) + shape)).reshape((2, 300) + tuple(y.shape[1:]))
    assert (out >= iv.lower.unsqueeze(1) - 1e-12).all() and (out <= iv.upper.unsqueeze(1) + 1e-12).all()
    dense = dense_form(op, shape, tuple(y.shape[1:]))
    assert torch.allclose(dense.forward(x), y, atol=1e-12)
    div = dense.interval(None, Interval(x - r, x + r))
    assert torch.allclose(div.lower, iv.lower, atol=1e-12) and torch.allclose(div.upper, iv.upper, atol=1e-12)


def test_conv_transpose_rejects_wrong_input_shape():
    op = Conv(torch.randn(2, 1, 3, 3, dtype=D), None, 2, 0, 1, 1)
    A = torch.randn(1, 1, 2, 3, 3, dtype=D)
    with pytest.raises(ValueError, match="does not give output"):
        op.transpose(A, (1, 12, 7))


def _maxpool_cases():
    return [
        ("mp2", MaxPool(2), (2, 4, 4)),
        ("mp2_odd", MaxPool(2), (2, 5, 5)),
        ("mp3_s1_p1", MaxPool(3, 1, 1), (2, 4, 5)),
        ("mp3_s2_p1_ceil", MaxPool(3, 2, 1, ceil_mode=True), (1, 6, 6)),
        ("mp2_dil2", MaxPool(2, 1, 0, 2), (2, 5, 5)),
        ("mp_rect", MaxPool((2, 3), (1, 2)), (1, 4, 7)),
        ("mp1d", MaxPool((3,), (2,), (1,), nd=1), (2, 9)),
    ]


MAXPOOL = _maxpool_cases()


@pytest.mark.parametrize("name,op,shape", MAXPOOL, ids=[c[0] for c in MAXPOOL])
def test_maxpool_point_box_and_interval(name, op, shape):
    x = torch.randn((2,) + shape, dtype=D)
    iv = op.interval(None, Interval.point(x))
    assert torch.equal(iv.lower, op.forward(x)) and torch.equal(iv.upper, op.forward(x))


@pytest.mark.parametrize("name,op,shape", MAXPOOL, ids=[c[0] for c in MAXPOOL])
@pytest.mark.parametrize("regime", ["random", "zero_width", "ties", "dominated"])
def test_maxpool_backward_rule_sound(name, op, shape, regime):
    """The linear bounds of A . maxpool(x) from the backward rule contain A . maxpool(p) for points p of
    the box (uniform, vertices), with zero-width boxes, ties and dominated windows; a point box is exact."""
    g = torch.Generator().manual_seed(hash((name, regime)) % 1000)
    c = torch.randn((2,) + shape, generator=g, dtype=D)
    r = torch.rand((2,) + shape, generator=g, dtype=D) * 0.8
    if regime == "zero_width":
        r = torch.where(torch.rand(r.shape, generator=g) < 0.5, torch.zeros_like(r), r)
    if regime == "ties":
        c = c.round()
        r = torch.where(torch.rand(r.shape, generator=g) < 0.5, torch.full_like(r, 0.5), torch.zeros_like(r))
    if regime == "dominated":
        c = c * 10
        r = r * 0.1
    b = GraphBuilder(shape)
    out = b.add(op, [b.input_name])
    graph = b.build(out)
    spec = LpBall.make(c, 1.0, "inf", scale=r)  # the box [c - r, c + r]
    ctx = RunContext(graph, spec, get_method("crown"))
    ctx.bounds[b.input_name] = spec.box()
    y0 = op.forward(c)
    A = torch.randn((2, 5) + tuple(y0.shape[1:]), generator=g, dtype=D)
    zeros = torch.zeros(2, 5, dtype=D)
    lo, hi = _propagate(ctx, out, A, A, zeros, zeros)
    u = torch.rand((2, 200) + shape, generator=g, dtype=D) * 2 - 1
    v = torch.where(torch.rand((2, 200) + shape, generator=g) < 0.5, -1.0, 1.0).to(D)
    pts = c.unsqueeze(1) + torch.cat([u, v], 1) * r.unsqueeze(1)
    ys = op.forward(pts.reshape((-1,) + shape)).reshape((2, 400) + tuple(y0.shape[1:]))
    vals = torch.einsum("bsk,bnk->bns", A.reshape(2, 5, -1), ys.reshape(2, 400, -1))
    assert (vals >= lo.unsqueeze(1) - 1e-10).all() and (vals <= hi.unsqueeze(1) + 1e-10).all()
    # IBP of A . y from the exact interval of y is never beaten by more than the box allows: sanity only
    assert (lo <= hi + 1e-12).all()
    # a point box: both bounds are A . maxpool(c)
    spec0 = LpBall.make(c, 0.0, "inf")
    ctx0 = RunContext(graph, spec0, get_method("crown"))
    ctx0.bounds[b.input_name] = spec0.box()
    lo0, hi0 = _propagate(ctx0, out, A, A, zeros, zeros)
    want = (A * y0.unsqueeze(1)).reshape(2, 5, -1).sum(-1)
    assert torch.allclose(lo0, want, atol=1e-12) and torch.allclose(hi0, want, atol=1e-12)


def test_maxpool_dominated_window_is_exact():
    """One input's lower bound above every other upper bound: the max is that input, both lines equal it."""
    op = MaxPool(2)
    lo = torch.tensor([[[[0.0, -3.0], [-2.0, -1.0]]]], dtype=D)
    hi = torch.tensor([[[[1.0, -0.5], [-1.0, 0.0]]]], dtype=D)
    rel, imap = op.relaxation(lo, hi, (1, 1))
    assert int(rel.lower_index) == int(rel.upper_index) == 0
    assert float(rel.upper_slope) == 1.0 and float(rel.upper_bias) == 0.0


def test_conv_ops_keep_dtype_through_to():
    op = Conv(torch.randn(2, 1, 3, 3), torch.randn(2), 2, 1, 1, 1).to(D)
    assert op.weight.dtype == D and op.bias.dtype == D and op.stride == (2, 2)
    for a, bb in itertools.product([1, 2], [1, 3]):
        assert Conv(torch.randn(2, 1, 3), None, a, bb, 1, 1).stride == (a,)
