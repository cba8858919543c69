"""Network level for CNNs (CNN-Cert): fuzzed small CNNs with convs (random stride / padding / dilation /
groups), max and average pooling, batch norm, residual blocks (torch.fx) and every activation in every
position; sampled points and PGD stay inside the ibp / fastlin / crown / crown-ibp / cnncert bounds for
L∞, L2 and L1. Conv-form bounds equal dense-unrolled bounds to 1e-9; chunked intermediate bounds equal
unchunked ones; unsupported layers name themselves; tiny conv ReLU nets contain the exact MILP range."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.engine.backward import backward_bounds, compute_intermediate_bounds, rows_per_pass
from certnn.engine.context import RunContext
from certnn.errors import ModelImportError, UnsupportedOpError
from certnn.graph.passes import fold_batchnorm, unroll_convs
from certnn.testing import bound_violations, check_bounds_contain, sample_ball
from certnn.testing.nets import ACTS, init_weights as _init, random_cnn

METHODS = ["ibp", "fastlin", "crown", "crown-ibp", "cnncert"]
TOL = 1e-9


def _check(model, shape, method, norm, seed, eps, n=240, pgd=True):
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand((2,) + shape, generator=g, dtype=torch.float64) - 0.5
    graph = certnn.from_torch(model, shape)
    spec = make_spec(graph, x, eps, norm)
    y = model(x).argmax(1)
    for C in (None, margin_matrix(y, 3)):
        lo, hi, _, v, vp = bound_violations(model, graph, spec, method, C, n, g, pgd_steps=12 if pgd else 0,
                                            seed=seed)
        assert (lo <= hi + 1e-12).all()
        assert v <= TOL, f"sampled point outside {method}/{norm} bounds by {v}"
        assert vp <= TOL, f"PGD point outside {method}/{norm} bounds by {vp}"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
@pytest.mark.parametrize("act", list(ACTS))
def test_random_cnns_every_activation(method, norm, act):
    for seed in range(2):
        model, shape = random_cnn(31 * seed + len(act) * 7 + 3, act)
        _check(model, shape, method, norm, seed, eps=[0.05, 0.3][seed], pgd=seed == 0)


@pytest.mark.parametrize("method", METHODS)
def test_random_cnns_mixed_activations(method):
    for seed in range(6):
        model, shape = random_cnn(500 + seed)
        norm = ["inf", "2", "1"][seed % 3]
        _check(model, shape, method, norm, seed, eps=[0.02, 0.1, 0.5][seed % 3], pgd=seed % 2 == 0)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_random_cnns_many(method, norm):
    for seed in range(60):
        model, shape = random_cnn(2000 + seed)
        _check(model, shape, method, norm, seed, eps=[0.01, 0.1, 0.5, 1.0][seed % 4], n=150, pgd=seed % 3 == 0)


def test_zero_width_ball_reproduces_forward():
    for seed in range(6):
        model, shape = random_cnn(900 + seed)
        x = torch.rand((3,) + shape, dtype=torch.float64)
        out = model(x)
        for method in METHODS:
            iv = certnn.compute_bounds(model, x, 0.0, "inf", method, input_shape=shape)
            assert torch.allclose(iv.lower, out, atol=1e-9) and torch.allclose(iv.upper, out, atol=1e-9), method


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_conv_form_equals_dense_form(norm):
    """The same engine on the conv form and on the dense-unrolled graph gives the same bounds (1e-9),
    intermediate bounds included; folding batch norm into the convs changes nothing either."""
    for seed in range(5):
        model, shape = random_cnn(300 + seed)
        x = torch.rand((2,) + shape, dtype=torch.float64) - 0.5
        graph = certnn.from_torch(model, shape)
        dense = unroll_convs(graph)
        folded = fold_batchnorm(graph)
        assert any(graph.nodes[n].op.kind == "conv" for n in graph.order)
        assert not any(dense.nodes[n].op.kind in ("conv", "avgpool", "global_avgpool", "pad") for n in dense.order)
        assert torch.allclose(dense.forward(x), graph.forward(x), atol=1e-12)
        y = graph.forward(x).argmax(1)
        spec = make_spec(graph, x, [0.02, 0.1][seed % 2], norm)
        for method in ["ibp", "fastlin", "crown", "cnncert", "crown-ibp"]:
            for C in (None, margin_matrix(y, 3)):
                lo, hi, _ = bounds_for_spec(graph, spec, method, C)
                lo_d, hi_d, _ = bounds_for_spec(dense, spec, method, C)
                pairs = [(lo, lo_d), (hi, hi_d)]
                if method == "crown":
                    lo_f, hi_f, _ = bounds_for_spec(folded, spec, method, C)
                    pairs += [(lo, lo_f), (hi, hi_f)]
                for a, b in pairs:
                    assert (a - b).abs().max().item() <= 1e-9, (seed, method, norm)
        ctx_c = RunContext(graph, spec, certnn.get_method("crown"))
        ctx_d = RunContext(dense, spec, certnn.get_method("crown"))
        compute_intermediate_bounds(ctx_c)
        compute_intermediate_bounds(ctx_d)
        for name, iv in ctx_c.bounds.items():
            assert (iv.lower - ctx_d.bounds[name].lower).abs().max() <= 1e-9
            assert (iv.upper - ctx_d.bounds[name].upper).abs().max() <= 1e-9


def test_memory_budget_chunks_rows_without_changing_bounds():
    """With a tiny max_elements the identity rows of a conv layer go through in many small passes, each
    holding at most max_elements coefficients, and the bounds are the same."""
    model, shape = random_cnn(42, "tanh")
    x = torch.rand((2,) + shape, dtype=torch.float64)
    graph = certnn.from_torch(model, shape)
    spec = make_spec(graph, x, 0.05, "2")
    conv = [n for n in graph.order if graph.nodes[n].op.kind == "conv"][-1]
    big = RunContext(graph, spec, certnn.get_method("crown"))
    small = RunContext(graph, spec, certnn.get_method("crown"), max_elements=2 * 200)
    compute_intermediate_bounds(big)
    compute_intermediate_bounds(small)
    widest = max(int(torch.tensor(graph.nodes[a].shape).prod()) for a in graph.ancestors(conv))
    r = rows_per_pass(small, conv)
    assert r * 2 * widest <= max(2 * 200, 2 * widest) and r < int(torch.tensor(graph.nodes[conv].shape).prod())
    lo1, hi1 = backward_bounds(big, conv)
    lo2, hi2 = backward_bounds(small, conv)
    assert torch.allclose(lo1, lo2, atol=1e-12) and torch.allclose(hi1, hi2, atol=1e-12)


class FxNet(nn.Module):
    """Functional conv / pool calls and a residual add, imported with torch.fx."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 1, 3, 3) * 0.5)
        self.b = nn.Parameter(torch.randn(3) * 0.1)
        self.c2 = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 2 * 2, 3)

    def forward(self, x):
        h = torch.relu(nn.functional.conv2d(x, self.w, self.b, stride=1, padding=1))
        h = h + torch.sigmoid(self.c2(h))
        h = nn.functional.max_pool2d(h, 2)
        h = nn.functional.avg_pool2d(h, 2, stride=1)
        h = nn.functional.adaptive_avg_pool2d(h, (2, 2))
        return self.fc(torch.flatten(h, 1))


def test_functional_calls_and_residual_via_fx():
    torch.manual_seed(0)
    model = FxNet().double().eval()
    graph = certnn.from_torch(model, (1, 7, 7))
    kinds = [graph.nodes[n].op.kind for n in graph.order]
    for k in ("conv", "maxpool", "avgpool", "add"):
        assert k in kinds
    for norm in ("inf", "2"):
        _check(model, (1, 7, 7), "cnncert", norm, 0, eps=0.1)


def test_conv1d_and_batchnorm1d():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.BatchNorm1d(3), nn.Tanh(),
                          nn.MaxPool1d(2), nn.AvgPool1d(2, 1), nn.Flatten(), nn.Linear(3 * 1, 4),
                          nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for bn in (model[1], model[7]):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 1.5)
    model.eval()
    for method in ("crown", "cnncert", "ibp"):
        for norm in ("inf", "1"):
            _check(model, (2, 9), method, norm, 0, eps=0.2)


@pytest.mark.parametrize("layer,match", [
    (nn.Conv3d(1, 1, 1), "Conv3d"),
    (nn.Conv2d(1, 2, 3, padding_mode="reflect"), "padding_mode"),
    (nn.Conv2d(1, 2, 3, padding="same"), "padding='same'"),
    (nn.LPPool2d(2, 2), "LPPool2d"),
    (nn.AdaptiveAvgPool2d(3), "adaptive average pooling"),
    (nn.AdaptiveMaxPool2d(1), "AdaptiveMaxPool2d"),
    (nn.MaxPool2d(2, return_indices=True), "return_indices"),
    (nn.BatchNorm2d(1, track_running_stats=False), "running statistics"),
    (nn.ConvTranspose2d(1, 1, 2), "ConvTranspose2d"),
])
def test_unsupported_layers_name_themselves(layer, match):
    model = nn.Sequential(layer, nn.Flatten())
    with pytest.raises((UnsupportedOpError, ModelImportError), match=match) as info:
        certnn.from_torch(model, (1, 8, 8))
    if isinstance(info.value, UnsupportedOpError):
        assert "Conv2d" in str(info.value) or "supported" in str(info.value).lower()


@pytest.mark.solvers
def test_tiny_conv_relu_net_contains_exact_milp_range():
    pytest.importorskip("highspy")
    from certnn.engine.milp import exact_bounds

    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(2, 1),
                          nn.Conv2d(2, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)).double().eval()
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _init(m, g)
    shape = (1, 5, 5)
    graph = certnn.from_torch(model, shape)
    x = torch.rand((2,) + shape, generator=g, dtype=torch.float64)
    for norm in ("inf", "1"):
        spec = make_spec(graph, x, 0.15 if norm == "inf" else 0.6, norm)
        lo_x, hi_x = exact_bounds(graph, spec)
        pts = sample_ball(spec, 300)
        assert check_bounds_contain(model, pts, lo_x - 1e-7, hi_x + 1e-7) == 0.0
        for method in ("ibp", "fastlin", "crown", "cnncert"):
            lo, hi, _ = bounds_for_spec(graph, spec, method)
            assert (lo <= lo_x + 1e-7).all() and (hi >= hi_x - 1e-7).all(), method


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_patches_mode_equals_full_conv_form(norm, monkeypatch):
    """Intermediate bounds in patches mode (the default) equal those with full-size coefficient tensors
    through conv_transpose (RunContext(patches=False)) to 1e-9 for fastlin/crown/cnncert, the patch rules
    were really used, and cnncert's bounds are CROWN's."""
    from certnn.engine import patches

    calls = {"n": 0}
    real = patches.backward

    def counting(ctx, node, lA, uA):
        calls["n"] += 1
        return real(ctx, node, lA, uA)

    monkeypatch.setattr(patches, "backward", counting)
    for seed in range(6):
        model, shape = random_cnn(700 + seed)
        x = torch.rand((2,) + shape, dtype=torch.float64) - 0.5
        graph = certnn.from_torch(model, shape)
        y = graph.forward(x).argmax(1)
        spec = make_spec(graph, x, 0.05, norm)
        for method in ("fastlin", "crown", "cnncert"):
            full = RunContext(graph, spec, certnn.get_method(method), patches=False)
            patched = RunContext(graph, spec, certnn.get_method(method))
            before = calls["n"]
            compute_intermediate_bounds(full)
            assert calls["n"] == before
            compute_intermediate_bounds(patched)
            for name, iv in full.bounds.items():
                assert (iv.lower - patched.bounds[name].lower).abs().max() <= 1e-9, (seed, method, name)
                assert (iv.upper - patched.bounds[name].upper).abs().max() <= 1e-9, (seed, method, name)
            C = margin_matrix(y, 3)
            lo, hi = backward_bounds(full, graph.output_name, C)
            lo_p, hi_p = backward_bounds(patched, graph.output_name, C)
            assert (lo - lo_p).abs().max() <= 1e-9 and (hi - hi_p).abs().max() <= 1e-9
            lo_c, hi_c, _ = bounds_for_spec(graph, spec, "crown", C)
            assert (lo_c - lo_p).abs().max() <= 1e-9 if method != "fastlin" else True
    assert calls["n"] > 0


def test_patches_helpers():
    from certnn.engine.patches import Patches, add, identity_patches

    g = torch.Generator().manual_seed(0)
    rows = torch.tensor([[0, 7, 23, 11], [5, 5, 19, 2]])
    P = identity_patches(rows, (2, 3, 4), torch.zeros((), dtype=torch.float64))
    dense = P.to_dense().reshape(2, 4, -1)
    assert torch.equal(dense, torch.nn.functional.one_hot(rows, 24).to(torch.float64))
    t = torch.randn(2, 2, 3, 4, generator=g, dtype=torch.float64)
    assert torch.equal((P.data * P.gather(t)).reshape(2, 4, -1).sum(-1), t.reshape(2, -1).gather(1, rows))
    # windows partly outside the image, merged with a shifted window: equals the dense sum
    a = Patches(torch.randn(2, 4, 2, 3, 2, generator=g, dtype=torch.float64), torch.tensor([[-1, 2]]).repeat(2, 4, 1),
                (3, 4)).masked()
    b = Patches(torch.randn(2, 4, 2, 2, 2, generator=g, dtype=torch.float64), torch.tensor([[0, 1]]).repeat(2, 4, 1), (3, 4))
    m = add(a, b)
    assert isinstance(m, Patches)
    assert torch.allclose(m.to_dense(), a.to_dense() + b.to_dense(), atol=1e-15)
