"""engine/zonotope_input.py DiagonalInput.through_affine: a normalisation (elementwise affine maps) before the
first layer is taken into the diagonal input set instead of being built as a dense diagonal block, so an L2
ball is still compressed at the first Linear (engine/zonotope_l2.py). The same bounds as the generic pass (to
the compression's rounding under L2, exactly under L-inf / L1), sampled points and PGD inside, negative and
zero scales, float32 against the float64 forward; not taken where another node reads the input or the scale
varies over the batch."""
from __future__ import annotations

from contextlib import nullcontext
from unittest import mock

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.engine import zonotope
from certnn.testing import check_bounds_contain, pgd_against_bounds, sample_ball

torch.set_num_threads(1)
SHAPE = (2, 3, 4)


class Normalise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64).reshape(-1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float64).reshape(-1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Skip(nn.Module):  # the input read twice: by the normalisation and by a second branch
    def __init__(self):
        super().__init__()
        self.norm, self.body, self.side = Normalise([0.5, 0.2], [0.3, 2.0]), _mlp(), nn.Linear(24, 3)

    def forward(self, x):
        return self.body(self.norm(x)) + self.side(x.flatten(1))


def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(24, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _model(mean=(0.5, 0.2), std=(0.3, 2.0), seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(Normalise(mean, std), _mlp()).double().eval()


def _bounds(model, norm, eps, method="deepz", absorb=True, dtype=torch.float64, seed=1):
    x = torch.rand((3,) + SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    graph = certnn.from_torch(model, SHAPE).to(dtype)
    spec = make_spec(graph, x.to(dtype), eps, norm, None, None, None)
    C = margin_matrix(graph.forward(x.to(dtype)).argmax(1), 3, None, dtype)
    off = mock.patch.object(zonotope, "_absorbed", lambda *a, **k: False)  # the generic pass
    with nullcontext() if absorb else off:
        lo, hi, timers = bounds_for_spec(graph, spec, method, C)
    return graph, spec, C, lo, hi, timers


@pytest.mark.parametrize("method", ["deepz", "certrnn"])
@pytest.mark.parametrize("norm,eps", [("2", 0.4), ("inf", 0.05), ("1", 0.5)])
@pytest.mark.parametrize("std", [(0.3, 2.0), (-0.3, 2.0), (0.0, 1.5)])  # a negative scale; a zero one (1/inf)
def test_same_bounds_as_the_generic_pass_and_sound(method, norm, eps, std):
    std = tuple(float("inf") if s == 0 else s for s in std)
    model = _model(std=std)
    graph, spec, C, lo, hi, t = _bounds(model, norm, eps, method)
    _, _, _, lo0, hi0, t0 = _bounds(model, norm, eps, method, absorb=False)
    scale = 1 + lo0.abs().max() + hi0.abs().max()
    if norm == "2":  # compressed at the first Linear: 24 input symbols -> 6
        assert t["peak_symbols"] < t0["peak_symbols"]
        assert float((lo - lo0).abs().max()) <= 1e-11 * scale and float((hi - hi0).abs().max()) <= 1e-11 * scale
    else:
        assert torch.equal(lo, lo0) and torch.equal(hi, hi0)
    pts = sample_ball(spec, 300, torch.Generator().manual_seed(2))
    assert check_bounds_contain(graph.forward, pts, lo, hi, C) <= 1e-9
    assert pgd_against_bounds(graph.forward, spec, lo, hi, C, steps=15, restarts=1, seed=3) <= 1e-9


def test_not_taken_when_another_node_reads_the_input():
    torch.manual_seed(1)
    model = Skip().double().eval()
    _, spec, C, lo, hi, t = _bounds(model, "2", 0.3)
    _, _, _, lo0, hi0, t0 = _bounds(model, "2", 0.3, absorb=False)
    assert t["peak_symbols"] == t0["peak_symbols"] and torch.equal(lo, lo0) and torch.equal(hi, hi0)


def test_a_scale_that_varies_over_the_batch_is_left_to_the_generic_rule():
    from certnn.engine.zonotope_input import DiagonalInput
    from certnn.ops.affine import ElementwiseAffine
    from certnn.graph.ir import Node

    d = DiagonalInput(torch.zeros(3, 4), torch.ones(3, 4), torch.arange(4), None, torch.zeros(3, 4))
    node = Node("a", ElementwiseAffine(torch.rand(3, 4)), ("input",), (4,))
    assert d.through_affine(None, node) is None


@pytest.mark.parametrize("norm,eps", [("2", 0.4), ("inf", 0.02)])
@pytest.mark.parametrize("seed", range(3))
def test_float32_bounds_contain_the_exact_image(norm, eps, seed):
    """A normalisation with a large shift and a small scale (its rounding far above float32's unit) into an
    affine net, whose image of the ball is known in closed form (float64 stands in for exact): the float32
    bounds must contain it, which needs the centre's and the generators' rounding charged to the error."""
    torch.manual_seed(seed)
    model = nn.Sequential(Normalise((40.0, -7.0), (0.05, 0.02)), nn.Flatten(), nn.Linear(24, 3)).double().eval()
    graph, spec, C, lo, hi, _ = _bounds(model, norm, eps, dtype=torch.float32, seed=seed)
    W = model[2].weight / torch.tensor([0.05, 0.02], dtype=torch.float64).repeat_interleave(12)  # d out / d x
    CW = torch.einsum("bsk,kn->bsn", C.double(), W)
    x = spec.center.double()
    mid = torch.einsum("bsk,bk->bs", C.double(), model(x))
    rad = eps * CW.norm(p=1 if norm == "inf" else 2, dim=-1)
    assert (lo.double() <= mid - rad).all() and (hi.double() >= mid + rad).all()


def test_float32_rounding_of_the_map_is_charged_to_the_error():
    """Feature by feature, the carried set's box (centre +- (radius + err)) in float32 contains the exact
    image of the input box (float64 stands in for exact)."""
    import types

    from certnn.engine.zonotope_input import DiagonalInput
    from certnn.engine.zonotope_run import ZonotopeRun
    from certnn.graph.ir import Node
    from certnn.ops.affine import ElementwiseAffine

    run = types.SimpleNamespace(unit=float(torch.finfo(torch.float32).eps))
    run.gamma = lambda n: ZonotopeRun.gamma(run, n)
    g = torch.Generator().manual_seed(0)
    f64 = dict(generator=g, dtype=torch.float64)
    c, r = torch.rand(4, 50, **f64), 0.01 * torch.rand(4, 50, **f64)
    s, h = torch.randn(50, **f64) * 30, torch.randn(50, **f64) * 1e3
    d = DiagonalInput(c.float(), r.float(), torch.arange(50), None, torch.zeros(4, 50), None, None)
    out = d.through_affine(run, Node("a", ElementwiseAffine(s.float(), h.float()), ("input",), (50,)))
    s32, h32 = s.float().double(), h.float().double()
    mid, rad = c.float().double() * s32 + h32, r.float().double() * s32.abs()
    slack = out.radius.double() + out.err.double()
    assert ((out.center.double() - slack) <= mid - rad).all() and ((out.center.double() + slack) >= mid + rad).all()
