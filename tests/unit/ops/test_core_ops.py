"""Op level: a point box reproduces forward(); the backward transpose equals autograd's vjp; IBP is
sound on random boxes; the hand fixture every method must agree on."""
from __future__ import annotations

import pytest
import torch

import certnn
from certnn.domains import Interval
from certnn.engine.context import RunContext
from certnn.graph import GraphBuilder
from certnn.ops.activation import ACTIVATIONS, Activation
from certnn.ops.affine import ElementwiseAffine, Linear, normalize
from certnn.ops.shape import Add, Concat, Permute, Reshape, Slice
from certnn.specs import LpBall

D = torch.float64


def _affine_cases():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 6, generator=g, dtype=D)
    b = torch.randn(4, generator=g, dtype=D)
    return [
        ("linear", Linear(W, b), (6,)),
        ("linear_nobias", Linear(W, None), (6,)),
        ("linear_seq", Linear(W, b), (3, 6)),
        ("elementwise", ElementwiseAffine(torch.randn(6, generator=g, dtype=D), torch.randn(6, generator=g, dtype=D)), (6,)),
        ("normalize", normalize(torch.tensor([0.1, 0.2, 0.3]).reshape(3, 1, 1), torch.tensor([0.5, 0.25, 2.0]).reshape(3, 1, 1)), (3, 2, 2)),
        ("reshape", Reshape((2, 3, 4), (24,)), (2, 3, 4)),
        ("slice", Slice((4, 5), (slice(1, 3), slice(None, None, 2))), (4, 5)),
        ("slice_int", Slice((4, 5), (2,)), (4, 5)),
        ("permute", Permute((2, 0, 1)), (2, 3, 4)),
    ]


@pytest.mark.parametrize("name,op,shape", _affine_cases(), ids=[c[0] for c in _affine_cases()])
def test_affine_transpose_is_vjp(name, op, shape):
    x = torch.randn((3,) + shape, dtype=D, requires_grad=True)
    y = op.forward(x)
    A = torch.randn((3, 5) + tuple(y.shape[1:]), dtype=D)
    AT = op.transpose(A)
    for s in range(5):
        (g,) = torch.autograd.grad(y, x, A[:, s], retain_graph=True)
        assert torch.allclose(AT[:, s], g, atol=1e-12), name
    # bias term: A . (T(0) + c) - A . T(0) = A . c
    bt = op.bias_term(A)
    y0 = op.forward(torch.zeros_like(x))
    want = (A * y0.unsqueeze(1)).reshape(3, 5, -1).sum(-1)
    assert torch.allclose(bt if bt is not None else torch.zeros_like(want), want, atol=1e-12)


@pytest.mark.parametrize("name,op,shape", _affine_cases(), ids=[c[0] for c in _affine_cases()])
def test_affine_point_box_and_interval_soundness(name, op, shape):
    x = torch.randn((2,) + shape, dtype=D)
    iv = op.interval(None, Interval.point(x))
    assert torch.allclose(iv.lower, op.forward(x), atol=1e-12) and torch.allclose(iv.upper, op.forward(x), atol=1e-12)
    r = torch.rand((2,) + shape, dtype=D)
    iv = op.interval(None, Interval(x - r, x + r))
    pts = x.unsqueeze(1) + (torch.rand((2, 200) + shape, dtype=D) * 2 - 1) * r.unsqueeze(1)
    out = op.forward(pts.reshape((-1,) + shape)).reshape((2, 200) + tuple(iv.lower.shape[1:]))
    assert (out >= iv.lower.unsqueeze(1) - 1e-12).all() and (out <= iv.upper.unsqueeze(1) + 1e-12).all()


def test_add_concat_backward_is_vjp():
    b = GraphBuilder((3, 4))
    s1 = b.add(Slice((3, 4), (slice(0, 2),)), [b.input_name])
    s2 = b.add(Slice((3, 4), (slice(1, 3),)), [b.input_name])
    a = b.add(Add(-1.0), [s1, s2])
    c = b.add(Concat(0, (2, 2)), [a, s1])
    g = b.build(c)
    x = torch.randn(2, 3, 4, dtype=D, requires_grad=True)
    y = g.forward(x)
    A = torch.randn((2, 3) + tuple(y.shape[1:]), dtype=D)
    spec = LpBall.make(x.detach(), 0.0, "inf")
    ctx = RunContext(g, spec, certnn.get_method("crown"))
    from certnn.engine.backward import propagate as _propagate
    lo, _ = _propagate(ctx, c, A, None, torch.zeros(2, 3, dtype=D), torch.zeros(2, 3, dtype=D))
    want = (A * y.unsqueeze(1)).reshape(2, 3, -1).sum(-1)
    assert torch.allclose(lo, want.detach(), atol=1e-12)


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_point_box_and_interval(kind):
    op = Activation(kind, negative_slope=0.2) if kind == "leaky_relu" else Activation(kind)
    x = torch.randn(50, dtype=D) * 3
    iv = op.interval(None, Interval.point(x))
    assert torch.equal(iv.lower, op.forward(x))
    r = torch.rand(50, dtype=D)
    iv = op.interval(None, Interval(x - r, x + r))
    pts = x + (torch.rand(400, 50, dtype=D) * 2 - 1) * r
    out = op.forward(pts)
    assert (out >= iv.lower).all() and (out <= iv.upper).all()


@pytest.mark.parametrize("method", ["ibp", "fastlin", "crown", "crown-ibp", "lipschitz"])
def test_hand_fixture_linear_layer(method):
    """w = 1, b = 2, x = [1, 2, 3] +- 1 (L∞): y = x1 + x2 + x3 + 2 lies in [5, 11] for every method."""
    lin = torch.nn.Linear(3, 1).double()
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.fill_(2.0)
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=D)
    iv = certnn.compute_bounds(torch.nn.Sequential(lin), x, 1.0, "inf", method)
    assert torch.allclose(iv.lower, torch.tensor([[5.0]], dtype=D))
    assert torch.allclose(iv.upper, torch.tensor([[11.0]], dtype=D))


def test_hand_fixture_relu_unstable():
    """relu(x) for x in [-1, 3]: IBP [0, 3]; the backward methods bound relu(x) - 0 on a 1-neuron net and
    agree on the exact upper bound 3; crown's lower line (slope 1) gives -1, fastlin's (slope 3/4) -0.75."""
    m = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.ReLU(), torch.nn.Linear(1, 1)).double()
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight.fill_(1.0)
            lin.bias.fill_(0.0)
    x = torch.tensor([[1.0]], dtype=D)
    ibp = certnn.compute_bounds(m, x, 2.0, "inf", "ibp")
    fl = certnn.compute_bounds(m, x, 2.0, "inf", "fastlin")
    cr = certnn.compute_bounds(m, x, 2.0, "inf", "crown")
    assert ibp.lower.item() == 0.0 and ibp.upper.item() == 3.0
    assert abs(fl.upper.item() - 3.0) < 1e-12 and abs(cr.upper.item() - 3.0) < 1e-12
    # the backward lower line is intersected with nothing at the output: it can be below IBP's
    assert abs(fl.lower.item() - (-0.75)) < 1e-12 and abs(cr.lower.item() - (-1.0)) < 1e-12
