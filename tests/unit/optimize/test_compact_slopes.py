"""Compact ReLU slopes (optimize/compact_slopes.py): the same lines and gradients as the full layout
(lines.ReluSlopes) on dense coefficients and on patch windows, and alpha-CROWN's bounds unchanged (to
1e-12 relative) when the intermediate starts use them, on residual CNNs (patches and dense form) and MLPs;
every iterate of the compact run stays sound."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import make_spec
from certnn.certify.targets import margin_matrix
from certnn.engine.context import RunContext
from certnn.engine.methods import get_method
from certnn.engine.patches import Patches
from certnn.optimize import AlphaConfig, optimized_bounds
from certnn.optimize import plan
from certnn.optimize.compact_slopes import CompactReluSlopes, compact_params
from certnn.optimize.lines import ReluSlopes
from certnn.ops.activation import Activation
from certnn.testing import check_bounds_contain, pgd_against_bounds, random_cnn, random_relu_mlp, sample_ball

RELU = Activation("relu")


def _bounds(seed: int, shape=(3, 5, 5)):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn((2,) + shape, generator=g, dtype=torch.float64)
    r = torch.rand((2,) + shape, generator=g, dtype=torch.float64)
    r[1] *= 0.3  # the second sample has fewer unstable neurons (padding columns)
    return c - r, c + r


def _pair(seed: int, rows: int):
    """Compact and full-layout parameters holding the same random slopes."""
    l, u = _bounds(seed)
    cp = CompactReluSlopes.create(l, u, rows)
    cp.alpha = torch.rand(cp.alpha.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    full = ReluSlopes.initial(l, u, rows).reshape(2, rows, -1)
    valid = (cp.lookup.gather(1, cp.neurons) > 0).unsqueeze(1).expand_as(cp.alpha)
    idx = cp.neurons.unsqueeze(1).expand_as(cp.alpha)
    full = full.scatter(2, idx, torch.where(valid, cp.alpha, full.gather(2, idx)))
    fp = ReluSlopes(full.reshape((2, rows) + tuple(l.shape[1:])))
    for p in (cp, fp):
        p.alpha.requires_grad_(True)
    return l, u, cp, fp


def _shrunk(l, u, seed: int):
    """Tighter bounds inside [l, u] (some unstable neurons become stable)."""
    t = torch.rand(l.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return l + 0.6 * t * (u - l), u - 0.6 * (1 - t) * (u - l)


@pytest.mark.parametrize("seed", range(4))
def test_dense_lines_and_gradients_equal_the_full_layout(seed):
    l, u, cp, fp = _pair(seed, 3)
    assert cp.alpha.shape[2] < l[0].numel()  # stored for the unstable neurons only
    for lo, hi in ((l, u), _shrunk(l, u, seed)):
        a, b = cp(RELU, lo, hi), fp(RELU, lo, hi)
        for x, y in zip((a.lower_slope, a.lower_bias, a.upper_slope, a.upper_bias),
                        (b.lower_slope, b.lower_bias, b.upper_slope, b.upper_bias)):
            assert torch.equal(torch.broadcast_to(x, y.shape), torch.broadcast_to(y, x.shape))
        w = torch.randn(a.lower_slope.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        gc, = torch.autograd.grad((a.lower_slope * w).sum(), cp.alpha)
        gf, = torch.autograd.grad((b.lower_slope * w).sum(), fp.alpha)
        gf = gf.reshape(2, 3, -1)
        on = gf.gather(2, cp.neurons.unsqueeze(1).expand_as(gc))
        valid = (cp.lookup.gather(1, cp.neurons) > 0).unsqueeze(1)
        assert torch.equal(torch.where(valid, gc, 0.0), torch.where(valid, on, 0.0))
        rest = gf.scatter(2, cp.neurons.unsqueeze(1).expand_as(gc), 0.0)
        assert not rest.any()  # the full layout's gradient lives on the columns only


@pytest.mark.parametrize("seed", range(4))
def test_window_lines_equal_the_full_layout_gathered(seed):
    l, u, cp, fp = _pair(seed, 4)
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(2, 4, 3, 3, 3, generator=g, dtype=torch.float64)
    offset = torch.randint(-2, 5, (2, 4, 2), generator=g)  # some windows hang over the image's edge
    P = Patches(data, offset, (5, 5))
    for lo, hi in ((l, u), _shrunk(l, u, seed + 7)):
        ls, lb, us, ub = cp.window_lines(RELU, lo, hi, P)
        rel = fp(RELU, lo, hi)
        want = P.gather_many([rel.lower_slope, rel.upper_slope, rel.upper_bias])
        assert lb is None
        for x, y in zip((ls, us, ub), want):
            assert torch.equal(x, y)
        gc, = torch.autograd.grad((ls * data).sum(), cp.alpha)
        gf, = torch.autograd.grad((want[0] * data).sum(), fp.alpha)
        on = gf.reshape(2, 4, -1).gather(2, cp.neurons.unsqueeze(1).expand_as(gc))
        valid = (cp.lookup.gather(1, cp.neurons) > 0).unsqueeze(1)
        assert torch.allclose(torch.where(valid, gc, 0.0), torch.where(valid, on, 0.0), rtol=1e-14, atol=0)


def test_shared_row_and_other_ops():
    l, u = _bounds(3)
    cp = CompactReluSlopes.create(l, u, 1)
    P = Patches(torch.ones(2, 5, 3, 2, 2, dtype=torch.float64), torch.zeros(2, 5, 2, dtype=torch.long), (5, 5))
    assert cp.window_lines(RELU, l, u, P)[0].shape == (2, 5, 3, 2, 2)
    assert compact_params(Activation("tanh"), l, u, 2) is None


class _Res(nn.Module):
    """A small MNIST-like residual CNN with batch norm (resnet2_relu's shape, smaller)."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.c1, self.b1, self.a1 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.c2, self.b2, self.a2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.head = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
        with torch.no_grad():
            for bn in (self.stem[1], self.b1, self.b2):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        h = self.stem(x)
        return self.head(self.a2(h + self.b2(self.c2(self.a1(self.b1(self.c1(h)))))))


def _nets():
    yield "res", _Res(0).double().eval(), (1, 8, 8), 0.08
    for seed in (1, 4):
        m, shape = random_cnn(seed, "relu")
        yield f"cnn{seed}", m.double().eval(), shape, 0.2
    yield "mlp", random_relu_mlp(2, d=6, h=20, depth=3, out=3), (6,), 0.15


def _run(graph, spec, C, patches: bool, cfg, on_iterate=None):
    ctx = RunContext(graph, spec, get_method("alpha-crown"), patches=patches)
    return optimized_bounds(ctx, C, config=cfg, on_iterate=on_iterate)


@pytest.mark.parametrize("patches", [True, False])
def test_bounds_equal_the_full_layout(monkeypatch, patches):
    cfg = AlphaConfig(iterations=6, patience=6)
    for name, model, shape, eps in _nets():
        x = torch.rand((2,) + shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) - 0.5
        graph = certnn.from_torch(model, shape)
        spec = make_spec(graph, x, torch.tensor([eps, eps / 3], dtype=torch.float64), "inf")
        C = margin_matrix(model(x).argmax(1), 3)
        pts = sample_ball(spec, 100, torch.Generator().manual_seed(4))

        def sound(it, lo, hi):
            assert check_bounds_contain(model, pts, lo, hi, C) <= 1e-9, f"{name}: iterate {it} unsound"

        res = _run(graph, spec, C, patches, cfg, sound)
        compact = [p for (s, _), p in res.params.items() if s != graph.output_name]
        assert compact and all(isinstance(p, CompactReluSlopes) for p in compact), name
        assert pgd_against_bounds(model, spec, res.lower, res.upper, C, steps=10) <= 1e-9
        with monkeypatch.context() as mp:
            mp.setattr(plan, "compact_params", lambda *a: None)
            ref = _run(graph, spec, C, patches, cfg)
        assert not any(isinstance(p, CompactReluSlopes) for p in ref.params.values())
        assert res.iterations == ref.iterations
        for a, b in ((res.lower, ref.lower), (res.upper, ref.upper)):
            assert ((a - b).abs() / (1 + b.abs())).max() <= 1e-12, name
        for k, iv in ref.bounds.items():
            assert torch.allclose(res.bounds[k].lower, iv.lower, rtol=1e-12, atol=1e-12), (name, k)


def test_warm_start_needs_the_same_columns():
    model = random_relu_mlp(2, d=6, h=20, depth=3, out=3)
    graph = certnn.from_torch(model, (6,))
    x = torch.rand(1, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) - 0.5
    C = margin_matrix(model(x).argmax(1), 3)
    cfg = AlphaConfig(iterations=4)
    first = _run(graph, make_spec(graph, x, 0.15, "inf"), C, True, cfg)
    keys = [k for k, p in first.params.items() if isinstance(p, CompactReluSlopes)]
    assert keys
    ctx = RunContext(graph, make_spec(graph, x, 0.15, "inf"), get_method("alpha-crown"))
    again = optimized_bounds(ctx, C, config=AlphaConfig(iterations=1), warm=first.params)
    assert torch.equal(again.params[keys[0]].alpha, first.params[keys[0]].alpha)  # same columns: taken
    k = keys[0]
    p = first.params[k]
    moved = {k: p._copy(neurons=p.neurons.roll(1, 1))}
    ctx = RunContext(graph, make_spec(graph, x, 0.15, "inf"), get_method("alpha-crown"))
    cold = optimized_bounds(ctx, C, config=AlphaConfig(iterations=1), warm=moved)
    assert not torch.equal(cold.params[k].alpha, p.alpha)  # other columns: started from CROWN's slopes
