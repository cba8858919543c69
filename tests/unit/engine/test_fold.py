"""BatchNorm after a conv pushed back as one folded conv (engine/fold.py), and patch windows shared by
the lower and upper passes at an activation (engine/patches.py): the same bounds as the step-by-step
rules."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.engine import backward, fold, patches
from certnn.engine.backward import compute_intermediate_bounds, propagate
from certnn.engine.context import RunContext
from certnn.engine.interval import interval_pass
from certnn.testing.nets import ResBlock, init_batchnorm, init_weights


def _bn_resnet(seed: int) -> nn.Module:
    """conv + BN + ReLU, a residual block with BN, conv + BN + ReLU, linear: every BN right after a conv."""
    g = torch.Generator().manual_seed(seed)
    stem, mid = nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1)
    bn1, bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
    for m in (stem, mid):
        init_weights(m, g)
    for b in (bn1, bn2):
        init_batchnorm(b, g)
    return nn.Sequential(stem, bn1, nn.ReLU(), ResBlock(4, nn.ReLU, g, bn=True), nn.ReLU(), mid, bn2, nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 10 * 10, 3)).double().eval()


def _unfolded(ctx, name):
    return ctx.graph.nodes[name]


def _bounds(graph, x, method="crown", patches_mode=True):
    spec = make_spec(graph, x, 0.05, "inf")
    ctx = RunContext(graph, spec, certnn.get_method(method), patches=patches_mode)
    compute_intermediate_bounds(ctx)
    C = torch.eye(3, dtype=torch.float64).unsqueeze(0).expand(len(x), 3, 3)
    zeros = x.new_zeros(len(x), 3)
    lo, hi = propagate(ctx, graph.output_name, C, C, zeros, zeros)
    return ctx, lo, hi


@pytest.mark.parametrize("patches_mode", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_folded_batchnorm_same_bounds(monkeypatch, seed, patches_mode):
    graph = certnn.from_torch(_bn_resnet(seed), (2, 20, 20))
    x = torch.rand(2, 2, 20, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    ctx, lo, hi = _bounds(graph, x, patches_mode=patches_mode)
    assert len(ctx.memo[fold._KEY]) == 3  # all three BatchNorms were folded
    monkeypatch.setattr(backward, "backward_node", _unfolded)
    ref_ctx, lo_ref, hi_ref = _bounds(graph, x, patches_mode=patches_mode)
    assert fold._KEY not in ref_ctx.memo
    for a, b in ((lo, lo_ref), (hi, hi_ref)):
        assert ((a - b).abs() / (1 + b.abs())).max() <= 1e-12
    for name, iv in ref_ctx.bounds.items():
        for a, b in ((ctx.bounds[name].lower, iv.lower), (ctx.bounds[name].upper, iv.upper)):
            assert ((a - b).abs() / (1 + b.abs())).max() <= 1e-12, name
    # the intermediate bounds are not trivially equal: some were refined by the backward passes
    ibp = interval_pass(RunContext(graph, ctx.spec, certnn.get_method("ibp")))
    assert any(bool((ibp[n].upper - iv.upper > 1e-6).any()) for n, iv in ctx.bounds.items())


def test_captured_conv_is_not_folded():
    """A conv whose coefficients are captured receives them: its BatchNorm is pushed through step by step."""
    graph = certnn.from_torch(_bn_resnet(0), (2, 20, 20))
    x = torch.rand(1, 2, 20, 20, dtype=torch.float64)
    spec = make_spec(graph, x, 0.05, "inf")
    ctx = RunContext(graph, spec, certnn.get_method("crown"))
    compute_intermediate_bounds(ctx)
    bn = next(n for n in graph.order if fold.backward_node(ctx, n) is not graph.nodes[n])
    conv = graph.nodes[bn].inputs[0]
    ctx.capture = {conv}
    assert fold.backward_node(ctx, bn) is graph.nodes[bn]
    C = torch.ones(1, 1, 3, dtype=torch.float64)
    propagate(ctx, graph.output_name, C, None, x.new_zeros(1, 1), x.new_zeros(1, 1))
    assert conv in ctx.captured


def test_float32_sound_never_folds():
    graph = certnn.from_torch(_bn_resnet(0), (2, 20, 20))
    x = torch.rand(1, 2, 20, 20, dtype=torch.float64)
    ctx = RunContext(graph, make_spec(graph, x, 0.05, "inf"), certnn.get_method("crown"))
    ctx.rounding = object()  # any rounding model: the per-step rounding bounds need every step
    assert all(fold.backward_node(ctx, n) is graph.nodes[n] for n in graph.order)


@pytest.mark.parametrize("method", ["crown", "fastlin"])
def test_shared_windows_bit_identical(monkeypatch, method):
    """Lines gathered once for two patches on the same windows give the same numbers as one side at a time."""
    graph = certnn.from_torch(_bn_resnet(1), (2, 20, 20))
    x = torch.rand(2, 2, 20, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    calls = []
    real = patches.same_windows

    def spy(a, b):
        calls.append(real(a, b))
        return calls[-1]

    monkeypatch.setattr(patches, "same_windows", spy)
    ctx, lo, hi = _bounds(graph, x, method)
    assert any(calls)  # the shared path was taken
    monkeypatch.setattr(patches, "same_windows", lambda a, b: False)
    ref_ctx, lo_ref, hi_ref = _bounds(graph, x, method)
    assert torch.equal(lo, lo_ref) and torch.equal(hi, hi_ref)
    for name, iv in ref_ctx.bounds.items():
        assert torch.equal(ctx.bounds[name].lower, iv.lower) and torch.equal(ctx.bounds[name].upper, iv.upper)


def test_folded_bounds_contain_samples():
    graph = certnn.from_torch(_bn_resnet(2), (2, 20, 20))
    x = torch.rand(2, 2, 20, 20, dtype=torch.float64)
    spec = make_spec(graph, x, 0.05, "inf")
    lo, hi, _ = bounds_for_spec(graph, spec, "crown")
    pts = x.unsqueeze(1) + 0.05 * (2 * torch.rand((2, 256) + x.shape[1:], dtype=torch.float64) - 1)
    with torch.no_grad():
        y = graph.forward(pts.reshape((-1,) + x.shape[1:])).reshape(2, 256, 3)
    assert bool((y >= lo.unsqueeze(1) - 1e-9).all()) and bool((y <= hi.unsqueeze(1) + 1e-9).all())
