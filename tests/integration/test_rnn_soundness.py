"""Recurrent networks: sampled points (uniform, corner-heavy, vertices) and PGD stay inside the bounds of
ibp / crown / popqorn (and fastlin / crown-ibp) on random RNN (tanh, relu), LSTM and GRU models of 1-3
layers, random sizes, T in 1..5, for p = inf, 2, 1, with per-frame masks; zero-eps balls reproduce
forward(); the faults of the original POPQORN code do not occur."""
from __future__ import annotations

import math

import pytest
import torch

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.specs.frames import frame_scale
from certnn.testing import bound_violations, check_bounds_contain, sample_ball
from certnn.testing.nets import recurrent_classifier

torch.set_num_threads(1)
TOL = 1e-9
KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def random_seq_net(seed, kind=None, max_T=5):
    g = torch.Generator().manual_seed(seed)

    def ri(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    kind = kind or KINDS[ri(0, 3)]
    d, H, L, T = ri(1, 4), ri(2, 6), ri(1, 3), ri(1, max_T)
    bidir = ri(0, 3) == 0
    head = "mean" if ri(0, 2) == 0 else "last"
    torch.manual_seed(seed)
    m = recurrent_classifier(kind, d, H, 3, layers=L, bidirectional=bidir, head=head).double()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    return m.eval(), (T, d)


def _check(model, shape, method, norm, eps, seed, scale=None, n=200, pgd=True, clip=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((3,) + shape, generator=g, dtype=torch.float64)
    graph = certnn.from_torch(model, shape)
    spec = make_spec(graph, x, eps, norm, clip, scale)
    y = model(x).argmax(1)
    for C in (None, margin_matrix(y, 3)):
        lo, hi, _, v, vp = bound_violations(model, graph, spec, method, C, n, g, pgd_steps=10 if pgd else 0,
                                            seed=seed)
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
        assert (lo <= hi + 1e-12).all()
        assert v <= TOL, f"sampled point outside {method}/{norm} bounds by {v}"
        assert vp <= TOL, f"PGD point outside {method}/{norm} bounds by {vp}"
    return lo, hi


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_random_recurrent_nets(kind, norm):
    seed = KINDS.index(kind) + 3 * ["inf", "2", "1"].index(norm)
    model, shape = random_seq_net(seed, kind, max_T=4)
    for method in ("ibp", "crown", "popqorn"):
        _check(model, shape, method, norm, eps=[0.1, 0.5][seed % 2], seed=seed, n=100, pgd=method != "ibp")


@pytest.mark.parametrize("method", ["fastlin", "crown-ibp"])
def test_other_backward_methods_run_on_lstm_gru(method):
    for seed, kind in enumerate(["lstm", "gru"]):
        model, shape = random_seq_net(50 + seed, kind, max_T=3)
        _check(model, shape, method, "inf", 0.2, seed)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_per_frame_masks(norm):
    """One frame / a list of frames with their own eps: frozen frames never move (the sampled points
    respect the mask) and the bounds hold. (Bounds of a sub-ball need not be tighter than those of the
    full ball: relaxations depend on the intermediate boxes, so no such assertion is made.)"""
    seed = ["inf", "2", "1"].index(norm)
    kind = ["lstm", "gru", "rnn_tanh"][seed]
    shape = (4, 2)
    torch.manual_seed(70 + seed)
    model = recurrent_classifier(kind, 2, 3, 3, layers=2, bidirectional=seed % 2 == 0).double().eval()
    for frames, feps in [([2], None), ([0, 3], [1.0, 0.3]), (None, [0.5, 0.0, 1.0, 2.0])]:
        scale = frame_scale(shape, frames, feps)
        frozen = (scale == 0).all(-1)
        x = torch.rand((3,) + shape, dtype=torch.float64)
        pts = sample_ball(make_spec(certnn.from_torch(model, shape), x, 0.4, norm, None, scale), 50)
        assert torch.equal(pts[:, :, frozen], x.unsqueeze(1).expand_as(pts)[:, :, frozen])
        _check(model, shape, "popqorn", norm, 0.4, seed, scale=scale, n=100, pgd=(frames == [0, 3]))


def test_zero_eps_reproduces_forward():
    for seed in range(4):
        model, shape = random_seq_net(100 + seed, KINDS[seed % 4], max_T=3)
        x = torch.rand((4,) + shape, dtype=torch.float64)
        out = model(x)
        for method in ("ibp", "popqorn", "crown-ibp"):
            for norm in ("inf", "2")[: 1 + seed % 2]:
                iv = certnn.compute_bounds(model, x, 0.0, norm, method, input_shape=shape)
                assert torch.allclose(iv.lower, out, atol=1e-8) and torch.allclose(iv.upper, out, atol=1e-8), \
                    (method, norm, (iv.upper - iv.lower).max())


def test_frozen_frames_zero_width_intervals_inside():
    """Only the last frame moves: every earlier step has zero-width intervals (the original POPQORN code
    gave wrong bounds there); the bounds are sound and tight on the frozen prefix."""
    torch.manual_seed(3)
    for kind in ("lstm", "gru", "rnn_tanh"):
        model = recurrent_classifier(kind, 3, 4, 3).double().eval()
        scale = frame_scale((4, 3), [-1])
        _check(model, (4, 3), "popqorn", "inf", 0.3, 1, scale=scale, n=100)


def test_popqorn_faults_absent_inf_norm_and_relu():
    """p = inf last layer and ReLU RNNs give finite bounds (the original code returned NaN there), also
    for large eps where many ReLUs are unstable and LSTM gates saturate."""
    for kind in ("rnn_relu", "lstm"):
        model = recurrent_classifier(kind, 2, 5, 3, layers=2).double().eval()
        for eps in (1e-3, 50.0):
            x = torch.rand(2, 3, 2, dtype=torch.float64)
            iv = certnn.compute_bounds(model, x, eps, "inf", "popqorn", input_shape=(3, 2))
            assert torch.isfinite(iv.lower).all() and torch.isfinite(iv.upper).all()
            assert not math.isnan(iv.lower.sum().item())


def test_untargeted_margins_bounded_as_differences():
    """The engine bounds f_y - f_j directly (C spec), which is sound and at least as tight as the
    difference of separately bounded logits (what the original LSTM check did)."""
    torch.manual_seed(5)
    model = recurrent_classifier("lstm", 3, 5, 4).double().eval()
    x = torch.rand(3, 4, 3, dtype=torch.float64)
    graph = certnn.from_torch(model, (4, 3))
    spec = make_spec(graph, x, 0.3, "inf")
    y = model(x).argmax(1)
    C = margin_matrix(y, 4)
    lo_m, hi_m, _ = bounds_for_spec(graph, spec, "popqorn", C)
    lo, hi, _ = bounds_for_spec(graph, spec, "popqorn", None)
    sep = torch.einsum("bsk,bk->bs", C.clamp(min=0), lo) + torch.einsum("bsk,bk->bs", C.clamp(max=0), hi)
    assert (lo_m >= sep - 1e-9).all() and (lo_m > sep + 1e-6).any()
    assert check_bounds_contain(model, sample_ball(spec, 300), lo_m, hi_m, C) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_random_recurrent_nets_many(norm):
    for seed in range(40):
        model, shape = random_seq_net(1000 + seed)
        for method in ("ibp", "crown", "popqorn"):
            _check(model, shape, method, norm, eps=[0.02, 0.2, 1.0][seed % 3], seed=seed, pgd=seed % 4 == 0)
