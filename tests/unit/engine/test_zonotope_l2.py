"""engine/zonotope_l2.py: an L2 input group compressed at the first Linear (k symbols -> m): the same bounds
as the uncompressed pass up to rounding, fewer symbols, sampled points and PGD inside; the rounding
accounting of the factorisation checked in float32 against float64; not applied to L1, boxes, m >= k, or a
Linear over two frames' balls."""
from __future__ import annotations

import types
from contextlib import nullcontext
from unittest import mock

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.engine import zonotope_l2
from certnn.engine.zonotope_run import ZonotopeRun
from certnn.testing import check_bounds_contain, pgd_against_bounds, sample_ball
from certnn.testing.nets import recurrent_classifier

torch.set_num_threads(1)


def _rnn(kind="rnn_tanh", d=10, hidden=4, seed=0):
    torch.manual_seed(seed)
    return recurrent_classifier(kind, d, hidden, 3).double().eval()


def _mlp(d=20, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()


def _bounds(model, shape, norm, frame_norm, method, eps, scale=None, clip=None, compress=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((3,) + shape, generator=g, dtype=torch.float64)
    graph = certnn.from_torch(model, shape)
    spec = make_spec(graph, x, eps, norm, clip, scale, frame_norm)
    C = margin_matrix(graph.forward(x).argmax(1), 3, None, torch.float64)
    off = mock.patch.object(zonotope_l2, "_plan", lambda *a, **k: None)  # no Linear compressed, every slice built
    with nullcontext() if compress else off:
        lo, hi, timers = bounds_for_spec(graph, spec, method, C)
    return graph, spec, C, lo, hi, timers


CASES = [  # (model, shape, norm, frame_norm, scale)
    ("rnn", (4, 10), "inf", "2", None),
    ("lstm", (4, 10), "inf", "2", None),
    ("mlp", (20,), "2", None, None),
    ("mlp", (20,), "2", None, "frozen"),
    ("flat", (1, 5, 4), "2", None, None),  # nn.Flatten, then the Linear
]


def _model(name):
    if name == "lstm":  # 4 gates x 2 units = 8 projection outputs < 10 inputs per frame
        return _rnn("lstm", hidden=2)
    if name == "flat":
        return nn.Sequential(nn.Flatten(), _mlp()).double().eval()
    return _mlp() if name == "mlp" else _rnn()


@pytest.mark.parametrize("method", ["certrnn", "deepz"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_same_bounds_fewer_symbols_and_sound(case, method):
    name, shape, norm, frame_norm, scale = CASES[case]
    if scale == "frozen":  # half the features frozen: 10 live symbols, still more than 6 outputs
        scale = (torch.arange(shape[0]) % 2).to(torch.float64)
    model = _model(name)
    graph, spec, C, lo, hi, t = _bounds(model, shape, norm, frame_norm, method, 0.4, scale)
    _, _, _, lo0, hi0, t0 = _bounds(model, shape, norm, frame_norm, method, 0.4, scale, compress=False)
    assert t["peak_symbols"] < t0["peak_symbols"]
    scale_b = 1 + lo0.abs().max() + hi0.abs().max()
    assert float((lo - lo0).abs().max()) <= 1e-11 * scale_b and float((hi - hi0).abs().max()) <= 1e-11 * scale_b
    pts = sample_ball(spec, 200, torch.Generator().manual_seed(2))
    assert check_bounds_contain(graph.forward, pts, lo, hi, C) <= 1e-9
    assert pgd_against_bounds(graph.forward, spec, lo, hi, C, steps=15, restarts=1, seed=3) <= 1e-9


def test_clip_box_and_zero_eps_sample():
    model = _rnn()
    graph, spec, C, lo, hi, _ = _bounds(model, (4, 10), "inf", "2", "certrnn", 0.5, clip=(0.0, 1.0))
    pts = sample_ball(spec, 200, torch.Generator().manual_seed(4))
    assert check_bounds_contain(graph.forward, pts, lo, hi, C) <= 1e-9
    x = torch.rand(2, 4, 10, dtype=torch.float64)
    spec0 = make_spec(graph, x, torch.tensor([0.0, 0.2], dtype=torch.float64), "inf", None, None, "2")
    C0 = margin_matrix(graph.forward(x).argmax(1), 3, None, torch.float64)
    lo0, hi0, _ = bounds_for_spec(graph, spec0, "certrnn", C0)
    exact = torch.einsum("bsk,bk->bs", C0, graph.forward(x[:1]).repeat(2, 1))[0]
    assert float((lo0[0] - exact).abs().max()) <= 1e-9 and float((hi0[0] - exact).abs().max()) <= 1e-9


@pytest.mark.parametrize("norm,frame_norm,shape,name", [("1", None, (20,), "mlp"), ("inf", None, (20,), "mlp"),
                                                        ("inf", "1", (4, 10), "rnn"),
                                                        ("2", None, (4, 10), "rnn")])  # one ball over 4 frames
def test_not_applied_where_the_rotation_or_a_part_does_not_keep_the_set(norm, frame_norm, shape, name):
    model = _model(name)
    _, _, _, lo, _, t = _bounds(model, shape, norm, frame_norm, "deepz", 0.1)
    _, _, _, lo0, _, t0 = _bounds(model, shape, norm, frame_norm, "deepz", 0.1, compress=False)
    assert t["peak_symbols"] == t0["peak_symbols"] and torch.equal(lo, lo0)


def test_not_applied_across_two_frames_balls_or_when_outputs_outnumber_inputs():
    m = nn.Sequential(nn.Flatten(), nn.Linear(8, 3), nn.Tanh(), nn.Linear(3, 3)).double().eval()  # 2 frames of 4
    _, _, _, lo, _, t = _bounds(m, (2, 4), "inf", "2", "deepz", 0.1)
    _, _, _, lo0, _, t0 = _bounds(m, (2, 4), "inf", "2", "deepz", 0.1, compress=False)
    assert t["peak_symbols"] == t0["peak_symbols"] and torch.equal(lo, lo0)
    model = _rnn(d=3, hidden=5)
    _, _, _, lo, _, t = _bounds(model, (4, 3), "inf", "2", "certrnn", 0.1)
    _, _, _, lo0, _, t0 = _bounds(model, (4, 3), "inf", "2", "certrnn", 0.1, compress=False)
    assert t["peak_symbols"] == t0["peak_symbols"] and torch.equal(lo, lo0)


@pytest.mark.parametrize("seed", range(5))
def test_factor_rounding_bounds_hold_in_float32(seed):
    g = torch.Generator().manual_seed(seed)
    k, m = 40, 12
    W = torch.randn(m, k, generator=g, dtype=torch.float64) * 10 ** (seed - 2)
    s = torch.rand(k, generator=g, dtype=torch.float64)
    M32 = s.float().unsqueeze(1) * W.float().T  # as the pass forms it, in float32
    run = types.SimpleNamespace(unit=float(torch.finfo(torch.float32).eps))
    run.gamma = lambda n: ZonotopeRun.gamma(run, n)
    R, sigma, rho = zonotope_l2._factor(run, M32)
    Q32, R32 = torch.linalg.qr(M32, mode="reduced")
    assert torch.equal(R, R32)
    Q, R64 = Q32.double(), R32.double()
    assert float(torch.linalg.matrix_norm(Q, ord=2)) <= sigma
    exact = s.unsqueeze(1) * W.T  # float64 stands in for the exact M (float32's rounding is far above its own)
    assert (torch.linalg.vector_norm(exact - Q @ R64, dim=0) <= rho.double()).all()


class _TwoReaders(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.a, self.b, self.head = nn.Linear(20, 6), nn.Linear(20, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.a(x)) + self.b(x))


def test_not_applied_where_another_node_reads_the_same_symbols():
    m = _TwoReaders().double().eval()
    _, _, _, lo, _, t = _bounds(m, (20,), "2", None, "deepz", 0.2)
    _, _, _, lo0, _, t0 = _bounds(m, (20,), "2", None, "deepz", 0.2, compress=False)
    assert t["peak_symbols"] == t0["peak_symbols"] and torch.equal(lo, lo0)


def test_factor_cache_hits_only_for_the_same_weights_columns_and_scales():
    run = types.SimpleNamespace(unit=float(torch.finfo(torch.float64).eps))
    run.gamma = lambda n: ZonotopeRun.gamma(run, n)
    W = torch.randn(4, 9, dtype=torch.float64)
    cols, s = torch.arange(9), torch.rand(9, dtype=torch.float64)
    a = zonotope_l2._factor_cached(run, W, cols, s)
    assert zonotope_l2._factor_cached(run, W, cols, s) is a
    b = zonotope_l2._factor_cached(run, W, cols, s * 2)  # another scale: recomputed
    assert b is not a and torch.allclose(b[0].abs(), 2 * a[0].abs())
    with torch.no_grad():
        W.mul_(3)  # in place: the version counter moves
    c = zonotope_l2._factor_cached(run, W, cols, s * 2)
    assert c is not b and torch.allclose(c[0].abs(), 3 * b[0].abs())
    assert zonotope_l2._factor_cached(run, W, cols[:8], s[:8]) is not c


@pytest.mark.parametrize("method", ["deepz", "certrnn"])
def test_exact_on_a_linear_net(method):
    """Exact level: on an affine net the L2 ball's image is known in closed form, C W x0 +- eps ||(C W)_s||_2,
    and the compressed pass must reproduce it (up to its rounding widening), not just contain samples."""
    torch.manual_seed(7)
    m = nn.Sequential(nn.Flatten(), nn.Linear(20, 6), nn.Linear(6, 3)).double().eval()
    graph, spec, C, lo, hi, t = _bounds(m, (1, 4, 5), "2", None, method, 0.3)
    _, _, _, _, _, t0 = _bounds(m, (1, 4, 5), "2", None, method, 0.3, compress=False)
    assert t["peak_symbols"] < t0["peak_symbols"]
    W = m[2].weight @ m[1].weight  # (3, 20)
    CW = torch.einsum("bsk,kn->bsn", C, W)
    mid = torch.einsum("bsk,bk->bs", C, graph.forward(spec.center))
    rad = 0.3 * CW.norm(dim=-1)
    tol = 1e-12 * (1 + mid.abs() + rad)
    assert (lo <= mid - rad + tol).all() and (lo >= mid - rad - tol).all()
    assert (hi >= mid + rad - tol).all() and (hi <= mid + rad + tol).all()
