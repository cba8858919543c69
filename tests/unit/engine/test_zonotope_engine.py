"""The forward zonotope engine (certrnn, deepz): rule by rule (a point zonotope reproduces forward; sampled
outputs stay inside each op's zonotope), the hand fixture, symbol identities (no aliasing), and fuzzed
networks (MLPs and hand-unrolled RNN/LSTM/GRU of 1-3 layers) where sampled points and PGD stay inside the
bounds for L∞/L2/L1, frame masks, per-frame eps weights and clip boxes."""
from __future__ import annotations

import pytest
import torch
from rnn_graphs import build_graph, check_parity, make_model
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.domains.interval import Interval
from certnn.engine.context import RunContext
from certnn.engine.zonotope import ZONOTOPE_RULES, ZonotopeRun, zonotope_bounds, zonotope_pass
from certnn.errors import UnsupportedOpError
from certnn.graph.ir import GraphBuilder
from certnn.ops.activation import Activation
from certnn.ops.affine import ElementwiseAffine, Linear
from certnn.ops.base import AffineOp, Op, sum_out
from certnn.ops.product import Mul, SigmoidMul, SigmoidTanhMul
from certnn.ops.shape import Add, Concat, Permute, Reshape, Slice
from certnn.testing import check_bounds_contain, pgd_against_bounds, sample_ball

torch.set_num_threads(1)
DT = torch.float64
ZMETHODS = ["certrnn", "deepz"]
TOL = 1e-9


def _bounds(graph, x, eps, norm, method, C=None, clip=None, scale=None):
    spec = make_spec(graph, x, eps, norm, clip, scale)
    lo, hi, _ = bounds_for_spec(graph, spec, method, C)
    return spec, lo, hi


def _check_net(graph, x, eps, norm, method, C=None, clip=None, scale=None, n=240, pgd=True, seed=0):
    spec, lo, hi = _bounds(graph, x, eps, norm, method, C, clip, scale)
    assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
    assert (lo <= hi).all()
    g = torch.Generator().manual_seed(seed)
    pts = sample_ball(spec, n, g)
    v = check_bounds_contain(graph.forward, pts, lo, hi, C)
    assert v <= TOL, f"sampled point outside {method}/{norm} bounds by {v}"
    if pgd:
        v = pgd_against_bounds(graph.forward, spec, lo, hi, C, steps=12, restarts=1, seed=seed)
        assert v <= TOL, f"PGD point outside {method}/{norm} bounds by {v}"
    return lo, hi


# ---- one graph per op kind ----------------------------------------------------------------------------
def _op_graphs():
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g, dtype=DT)  # noqa: E731
    out = {}
    b = GraphBuilder((4,))
    out["linear"] = b.build(b.add(Linear(r(3, 4), r(3)), [b.input_name]))
    b = GraphBuilder((2, 3))
    out["elementwise_affine"] = b.build(b.add(ElementwiseAffine(r(3), r(2, 3)), [b.input_name]))
    b = GraphBuilder((2, 3))
    out["reshape"] = b.build(b.add(Reshape((2, 3), (6,)), [b.input_name]))
    b = GraphBuilder((3, 4))
    out["slice"] = b.build(b.add(Slice((3, 4), (slice(1, 3), 2)), [b.input_name]))
    b = GraphBuilder((2, 3))
    out["permute"] = b.build(b.add(Permute((1, 0)), [b.input_name]))
    for sign in (1.0, -1.0):
        b = GraphBuilder((2, 3))
        s = b.add(Slice((2, 3), (slice(0, 1),)), [b.input_name])  # (1, 3) broadcast against (2, 3)
        l1 = b.add(Linear(r(3, 3), r(3)), [b.input_name])
        out[f"add{sign:+.0f}"] = b.build(b.add(Add(sign), [l1, s]))
    b = GraphBuilder((3,))
    l1 = b.add(Linear(r(2, 3), None), [b.input_name])
    out["concat"] = b.build(b.add(Concat(0, (3, 2)), [b.input_name, l1]))
    for act, params in [("relu", {}), ("leaky_relu", {"negative_slope": 0.2}), ("sigmoid", {}), ("tanh", {}),
                        ("arctan", {}), ("hardtanh", {"min_val": -0.5, "max_val": 0.7})]:
        b = GraphBuilder((5,))
        pre = b.add(Linear(r(5, 5) * 2, r(5)), [b.input_name])
        out[act] = b.build(b.add(Activation(act, **params), [pre]))
    for op in (SigmoidTanhMul(), SigmoidMul(), Mul()):
        b = GraphBuilder((4,))
        x = b.add(Linear(r(3, 4) * 2, r(3)), [b.input_name])
        y = b.add(Linear(r(3, 4) * 2, r(3)), [b.input_name])  # shares input symbols with x
        out[op.kind] = b.build(b.add(op, [x, y]))
    return out


OP_GRAPHS = _op_graphs()


def test_every_kind_has_a_rule():
    kinds = {k.split("+")[0].split("-")[0] for k in OP_GRAPHS} | {"add"}
    assert kinds - {"add+1", "add-1"} <= set(ZONOTOPE_RULES) | {"add"}


@pytest.mark.parametrize("method", ZMETHODS)
@pytest.mark.parametrize("name", list(OP_GRAPHS))
def test_point_zonotope_reproduces_forward(method, name):
    graph = OP_GRAPHS[name]
    x = torch.randn((3,) + graph.input_shape, dtype=DT)
    _, lo, hi = _bounds(graph, x, 0.0, "inf", method)
    f = graph(x).reshape(3, -1)
    assert torch.allclose(lo, f, rtol=1e-12, atol=1e-12) and torch.allclose(hi, f, rtol=1e-12, atol=1e-12), name


@pytest.mark.parametrize("method", ZMETHODS)
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
@pytest.mark.parametrize("name", list(OP_GRAPHS))
def test_each_op_contains_sampled_outputs(method, norm, name):
    graph = OP_GRAPHS[name]
    x = torch.randn((2,) + graph.input_shape, dtype=DT)
    for eps in (1e-3, 0.3, 2.0):
        _check_net(graph, x, eps, norm, method, pgd=eps == 0.3)


def test_hand_fixture_linear():
    """w = 1, b = 2, x = [1, 2, 3] +- 1 gives [5, 11]."""
    b = GraphBuilder((3,))
    graph = b.build(b.add(Linear(torch.ones(1, 3, dtype=DT), torch.tensor([2.0], dtype=DT)), [b.input_name]))
    for method in ZMETHODS:
        _, lo, hi = _bounds(graph, torch.tensor([[1.0, 2.0, 3.0]], dtype=DT), 1.0, "inf", method)
        assert abs(lo.item() - 5.0) < 1e-12 and abs(hi.item() - 11.0) < 1e-12


def _separate(b: GraphBuilder, i: int) -> str:
    """Input coordinate i through hardtanh(-5, 5), exact on [-1, 1]: after pruning, the node carries only
    its own input symbol (ids differ between coordinates, so aliasing by position would pair them)."""
    x = b.add(Slice((2,), (slice(i, i + 1),)), [b.input_name])
    return b.add(Activation("hardtanh", min_val=-5.0, max_val=5.0), [x])


def test_symbols_not_aliased_in_products():
    """x * y and x - y on [-1, 1]^2 with separate symbols: x - y spans [-2, 2] and x * y [-1, 1]; aliasing
    the symbols by position would give x - y = 0 and x * y = x^2. With the same symbol, x - x = 0."""
    b = GraphBuilder((2,))
    x, y = _separate(b, 0), _separate(b, 1)
    out = b.add(Concat(0, (1, 1)), [b.add(Mul(), [x, y]), b.add(Add(-1.0), [x, y])])
    graph = b.build(out)
    for method in ZMETHODS:
        x0 = torch.zeros(1, 2, dtype=DT)
        _, lo, hi = _bounds(graph, x0, 1.0, "inf", method)
        assert lo[0, 0] <= -1.0 and hi[0, 0] >= 1.0
        assert lo[0, 1] <= -2.0 and hi[0, 1] >= 2.0
        _check_net(graph, x0 + 0.3, 1.0, "inf", method)
    b = GraphBuilder((2,))
    x = _separate(b, 0)
    graph = b.build(b.add(Concat(0, (1, 1)), [b.add(Mul(), [x, x]), b.add(Add(-1.0), [x, x])]))
    _, lo, hi = _bounds(graph, torch.zeros(1, 2, dtype=DT), 1.0, "inf", "certrnn")
    assert lo[0, 0] <= 0.0 and hi[0, 0] >= 1.0
    assert abs(lo[0, 1].item()) < 1e-12 and abs(hi[0, 1].item()) < 1e-12


def test_margin_is_bounded_as_one_affine_form():
    """C · z on a network whose two logits are equal: f_0 - f_1 = 0 exactly, which separate logit bounds
    would never prove; the zonotope margin is 0 up to rounding."""
    torch.manual_seed(0)
    b = GraphBuilder((4,))
    h = b.add(Activation("tanh"), [b.add(Linear(torch.randn(5, 4, dtype=DT), torch.randn(5, dtype=DT)), [b.input_name])])
    w = torch.randn(1, 5, dtype=DT)
    out = b.add(Linear(torch.cat([w, w]), torch.zeros(2, dtype=DT)), [h])
    graph = b.build(out)
    C = torch.tensor([[[1.0, -1.0]]], dtype=DT)
    _, lo, hi = _bounds(graph, torch.zeros(1, 4, dtype=DT), 0.5, "inf", "certrnn", C=C)
    assert lo.item() > -1e-12 and hi.item() < 1e-12


class DenseAffine(AffineOp):
    """A stand-in for an affine op without a dedicated zonotope rule (e.g. a convolution): x -> x M + c
    over the flattened input, with a `bias` attribute."""

    kind = "dense_affine_test"

    def __init__(self, M, bias, shape):
        self.M, self.bias, self.shape = M, bias, shape

    def forward(self, x):
        y = x.reshape(x.shape[0], -1) @ self.M
        return y if self.bias is None else y + self.bias

    def interval(self, ctx, x):
        mid = self.forward(x.center)
        rad = x.radius.reshape(x.shape[0], -1) @ self.M.abs()
        return Interval(mid - rad, mid + rad)

    def transpose(self, A):
        return (A @ self.M.T).reshape(A.shape[:2] + self.shape)

    def bias_term(self, A):
        return None if self.bias is None else sum_out(A * self.bias)


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_generic_affine_op(norm):
    torch.manual_seed(1)
    b = GraphBuilder((2, 3))
    a = b.add(DenseAffine(torch.randn(6, 4, dtype=DT), torch.randn(4, dtype=DT), (2, 3)), [b.input_name])
    graph = b.build(b.add(Activation("tanh"), [a]))
    x = torch.randn(2, 2, 3, dtype=DT)
    lo, hi = _check_net(graph, x, 0.3, norm, "certrnn")
    _, lo0, hi0 = _bounds(graph, x, 0.0, norm, "certrnn")
    assert torch.allclose(lo0, graph(x), atol=1e-12) and torch.allclose(hi0, graph(x), atol=1e-12)


class Square(Op):
    kind = "square_test"
    affine = False

    def forward(self, x):
        return x * x


def test_unsupported_op_names_supported_kinds():
    b = GraphBuilder((3,))
    graph = b.build(b.add(Square(), [b.input_name]))
    with pytest.raises(UnsupportedOpError) as exc:
        _bounds(graph, torch.zeros(1, 3, dtype=DT), 0.1, "inf", "certrnn")
    msg = str(exc.value)
    assert "square_test" in msg and "sigmoid_tanh_mul" in msg and "linear" in msg


@pytest.mark.parametrize("norm", ["2", "1"])
def test_slice_reshape_before_first_linear_is_exact(norm):
    """The input reshaped and sliced before the first linear layer: the L2/L1 group spans the whole input,
    so the first layer's zonotope bounds equal x0 W ± eps ||W_full||_q exactly."""
    torch.manual_seed(0)
    b = GraphBuilder((12,))
    r = b.add(Reshape((12,), (4, 3)), [b.input_name])
    s = b.add(Slice((4, 3), (slice(1, 3),)), [r])
    f = b.add(Reshape((2, 3), (6,)), [s])
    W = torch.randn(5, 6, dtype=DT)
    graph = b.build(b.add(Linear(W, None), [f]))
    x = torch.rand(2, 12, dtype=DT)
    _, lo, hi = _bounds(graph, x, 0.5, norm, "certrnn")
    q = {"2": 2, "1": float("inf")}[norm]
    rad = 0.5 * torch.linalg.vector_norm(W, ord=q, dim=1)
    mid = x.reshape(2, 4, 3)[:, 1:3].reshape(2, 6) @ W.T
    assert torch.allclose(lo, mid - rad, atol=1e-12) and torch.allclose(hi, mid + rad, atol=1e-12)


# ---- feed-forward networks ------------------------------------------------------------------------------
ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky": lambda: nn.LeakyReLU(0.1),
        "hardtanh": nn.Hardtanh}


def _mlp(seed: int):
    g = torch.Generator().manual_seed(seed)
    d = int(torch.randint(2, 8, (1,), generator=g))
    layers, width = [], d
    names = list(ACTS)
    for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
        w = int(torch.randint(2, 12, (1,), generator=g))
        lin = nn.Linear(width, w)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(w, width, generator=g) * (1.5 / width ** 0.5))
            lin.bias.copy_(torch.randn(w, generator=g) * 0.5)
        layers += [lin, ACTS[names[int(torch.randint(0, len(names), (1,), generator=g))]]()]
        width = w
    layers.append(nn.Linear(width, 3))
    return nn.Sequential(*layers).double(), d


@pytest.mark.parametrize("method", ZMETHODS)
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_random_mlps(method, norm):
    for seed in range(6):
        model, d = _mlp(seed)
        graph = certnn.from_torch(model, (d,))
        x = torch.rand(3, d, dtype=DT)
        y = model(x).argmax(1)
        eps = [0.05, 0.3, 1.0][seed % 3]
        for C in (None, margin_matrix(y, 3)):
            _check_net(graph, x, eps, norm, method, C=C, pgd=seed % 2 == 0, seed=seed)


def test_mlp_clip_and_scale_mask():
    for seed, norm in [(0, "inf"), (1, "2"), (2, "1")]:
        model, _ = _mlp(seed)
        d = model[0].in_features
        graph = certnn.from_torch(model, (d,))
        scale = torch.tensor(([1.0, 0.0, 0.5, 2.0] * 3)[:d], dtype=DT)
        x = torch.rand(3, d, dtype=DT)
        _check_net(graph, x, 0.4, norm, "certrnn", clip=(0.0, 1.0), scale=scale, seed=seed)


# ---- recurrent networks (hand-unrolled) ------------------------------------------------------------------
RNN_CASES = [("rnn", 1, "tanh"), ("rnn", 2, "relu"), ("rnn", 3, "tanh"), ("lstm", 1, None), ("lstm", 2, None),
             ("gru", 1, None), ("gru", 2, None)]


@pytest.mark.parametrize("kind,layers,nl", RNN_CASES)
def test_hand_unrolled_graph_matches_torch(kind, layers, nl):
    model = make_model(kind, 3, 4, layers, 3, seed=layers, nonlinearity=nl or "tanh")
    graph = build_graph(model, 4, 3)
    assert check_parity(model, graph, 4, 3) < 1e-12


def _frame_scale(T: int, d: int, mode: str, g: torch.Generator) -> torch.Tensor | None:
    if mode == "all":
        return None
    s = torch.zeros(T, d, dtype=DT)
    if mode == "one":
        s[int(torch.randint(0, T, (1,), generator=g))] = 1.0
    elif mode == "list":
        s[0] = 1.0
        s[T - 1] = 1.0
    else:  # per-frame eps weights
        s[:] = torch.rand(T, 1, generator=g, dtype=DT) * 2
        s[1] = 0.0
    return s


@pytest.mark.parametrize("method", ZMETHODS)
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
@pytest.mark.parametrize("kind,layers,nl", RNN_CASES)
def test_recurrent_sound(method, norm, kind, layers, nl):
    g = torch.Generator().manual_seed(layers * 7 + len(kind))
    for rep, frames in enumerate(["all", "one", "list", "weights"]):
        T = int(torch.randint(2, 5, (1,), generator=g))
        d = int(torch.randint(2, 4, (1,), generator=g))
        H = int(torch.randint(2, 6, (1,), generator=g))
        model = make_model(kind, d, H, layers, 3, seed=rep + 10 * layers, nonlinearity=nl or "tanh")
        graph = build_graph(model, T, d)
        x = torch.randn(2, T, d, generator=g, dtype=DT)
        y = graph(x).argmax(1)
        scale = _frame_scale(T, d, frames, g)
        eps = [0.05, 0.3, 0.1, 0.2][rep]
        C = margin_matrix(y, 3) if rep % 2 else None
        _check_net(graph, x, eps, norm, method, C=C, scale=scale, n=150, pgd=rep < 2, seed=rep)


def test_frozen_frames_get_no_symbols():
    model = make_model("lstm", 3, 4, 1, 3, seed=0)
    graph = build_graph(model, 5, 3)
    x = torch.randn(2, 5, 3, dtype=DT)
    scale = torch.zeros(5, 3, dtype=DT)
    scale[2] = 1.0
    for norm in ("inf", "2"):
        spec = make_spec(graph, x, 0.1, norm, None, scale)
        run = ZonotopeRun(RunContext(graph, spec, certnn.get_method("certrnn")))
        zonotope_pass(run)
        assert run.table.input_groups()[0].stop - run.table.input_groups()[0].start == 3


def test_clip_with_l2_is_sound_and_uses_ibp():
    model = make_model("rnn", 3, 4, 1, 3, seed=5)
    graph = build_graph(model, 3, 3)
    x = torch.rand(2, 3, 3, dtype=DT)
    lo, hi = _check_net(graph, x, 2.0, "2", "certrnn", clip=(0.0, 1.0))
    _, ilo, ihi = _bounds(graph, x, 2.0, "2", "ibp", clip=(0.0, 1.0))
    # never looser than IBP up to the IBP_ULPS widening of the IBP bounds (~1e-12 here)
    tol = 1e-10 * (1 + ilo.abs() + ihi.abs())
    assert (lo >= ilo - tol).all() and (hi <= ihi + tol).all()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_consolidation_is_sound_and_caps_symbols(kind):
    model = make_model(kind, 3, 5, 2, 3, seed=2)
    graph = build_graph(model, 5, 3)
    x = torch.randn(2, 5, 3, dtype=DT)
    y = graph(x).argmax(1)
    C = margin_matrix(y, 3)
    for norm in ("inf", "2"):
        spec = make_spec(graph, x, 0.1, norm)
        ctx = RunContext(graph, spec, certnn.get_method("certrnn"))
        lo, hi = zonotope_bounds(ctx, C, max_symbols=40)
        pts = sample_ball(spec, 200)
        assert check_bounds_contain(graph.forward, pts, lo, hi, C) <= TOL
        assert pgd_against_bounds(graph.forward, spec, lo, hi, C, steps=10, restarts=1) <= TOL
        ctx_full = RunContext(graph, spec, certnn.get_method("certrnn"))
        lo_full, _ = zonotope_bounds(ctx_full, C)
        assert ctx.timers["peak_symbols"] < ctx_full.timers["peak_symbols"]
        # a node's zonotope holds at most the cap plus its own fresh symbols plus (for an add) the other
        # summand's; the input group is kept whole
        assert ctx.timers["peak_symbols"] <= 2 * (40 + 5) + 15


def test_certrnn_tighter_than_ibp_on_lstm():
    model = make_model("lstm", 3, 6, 1, 3, seed=4)
    graph = build_graph(model, 4, 3)
    x = torch.randn(3, 4, 3, dtype=DT)
    C = margin_matrix(graph(x).argmax(1), 3)
    _, lo_z, _ = _bounds(graph, x, 0.05, "inf", "certrnn", C=C)
    _, lo_i, _ = _bounds(graph, x, 0.05, "inf", "ibp", C=C)
    assert (lo_z >= lo_i).all() and (lo_z > lo_i + 1e-6).any()


def test_float32_graph_bounds_contain_float64_outputs():
    model = make_model("lstm", 3, 4, 1, 3, seed=6)
    graph = build_graph(model, 3, 3)
    g32 = graph.to(torch.float32)
    x = torch.randn(2, 3, 3, dtype=DT)
    spec = make_spec(g32, x, 0.1, "inf")
    lo, hi, _ = bounds_for_spec(g32, spec, "certrnn")
    pts = sample_ball(make_spec(graph, x, 0.1, "inf"), 200)
    # the float32 graph's parameters, evaluated exactly enough in float64
    g64 = g32.to(DT)
    assert check_bounds_contain(g64.forward, pts, lo.to(DT), hi.to(DT)) <= 1e-12


def test_certifier_radius_and_certify():
    model = make_model("lstm", 3, 4, 1, 3, seed=1)
    graph = build_graph(model, 4, 3)
    x = torch.randn(4, 4, 3, dtype=DT)
    y = graph(x).argmax(1)
    res = certnn.certified_radius(graph, x, y, norm="inf", method="certrnn")
    assert (res.certified_radius > 0).all()
    cr = certnn.certify(graph, x, y, res.certified_radius, norm="inf", method="certrnn")
    assert cr.certified.all()
    acc = certnn.Certifier(graph, certnn.CertifyConfig(method="deepz")).certified_accuracy(x, y, [0.0, 1e-4])
    assert acc[0.0] == 1.0
    # the certified radius is a lower bound of the attack radius
    from certnn.attacks import PGDConfig, attack_radius
    ar = attack_radius(graph, x, y, "inf", PGDConfig(steps=30, restarts=2, seed=0))
    ok = torch.isfinite(ar.radius)
    assert (res.certified_radius[ok] <= ar.radius[ok].to(DT) + 1e-9).all()


def test_commute_slices_is_an_equivalent_graph():
    """Linear over a (T, d) sequence followed by frame slices is computed per frame: same outputs, the
    full-sequence Linear is gone, and the bounds are those of the original graph (both exact affine)."""
    from certnn.engine.zonotope import commute_slices

    torch.manual_seed(0)
    b = GraphBuilder((4, 3))
    xp = b.add(Linear(torch.randn(5, 3, dtype=DT), torch.randn(5, dtype=DT)), [b.input_name])
    frames = [b.add(Slice((4, 5), (t,)), [xp]) for t in range(4)]
    two = b.add(Slice((4, 5), (slice(1, 3),)), [xp])
    acc = frames[0]
    for f in frames[1:]:
        acc = b.add(Add(), [b.add(Activation("tanh"), [acc]), f])
    mixed = b.add(Add(), [acc, b.add(Slice((2, 5), (0,)), [two])])
    graph = b.build(b.add(Linear(torch.randn(2, 5, dtype=DT), None), [mixed]))
    g2 = commute_slices(graph)
    assert xp not in g2.nodes and xp in graph.nodes
    x = torch.randn(3, 4, 3, dtype=DT)
    assert torch.allclose(g2(x), graph(x), atol=1e-13)
    for norm in ("inf", "2"):
        _check_net(graph, x, 0.2, norm, "certrnn")


def test_input_used_by_slices_and_directly():
    """The input feeds a frame slice and a Linear over the whole input: the lazily built diagonal input
    is materialised once, and both paths share its symbols (x - x = 0 across the two paths)."""
    b = GraphBuilder((2, 3))
    s = b.add(Slice((2, 3), (0,)), [b.input_name])
    e0 = torch.zeros(3, 6, dtype=DT)
    e0[:, :3] = torch.eye(3, dtype=DT)
    flat = b.add(Reshape((2, 3), (6,)), [b.input_name])
    direct = b.add(Linear(e0, None), [flat])  # = x[0] again
    graph = b.build(b.add(Add(-1.0), [s, direct]))
    x = torch.randn(2, 2, 3, dtype=DT)
    for norm in ("inf", "2", "1"):
        _, lo, hi = _bounds(graph, x, 0.5, norm, "certrnn")
        assert lo.abs().max() < 1e-12 and hi.abs().max() < 1e-12


def test_cnn_ops_through_the_generic_affine_rule():
    """Conv / AvgPool (ops/conv.py, when present) have no dedicated rule: their bias-free forward maps the
    generators. Point balls reproduce forward; sampled points and PGD stay inside."""
    conv = pytest.importorskip("certnn.ops.conv")
    torch.manual_seed(2)
    b = GraphBuilder((2, 6, 6))
    c1 = b.add(conv.Conv(torch.randn(3, 2, 3, 3, dtype=DT) * 0.5, torch.randn(3, dtype=DT), stride=1, padding=1),
               [b.input_name])
    r1 = b.add(Activation("relu"), [c1])
    p1 = b.add(conv.AvgPool(2, 2), [r1])
    t1 = b.add(Activation("tanh"), [p1])
    f = b.add(Reshape((3, 3, 3), (27,)), [t1])
    graph = b.build(b.add(Linear(torch.randn(3, 27, dtype=DT), torch.randn(3, dtype=DT)), [f]))
    x = torch.rand(2, 2, 6, 6, dtype=DT)
    _, lo, hi = _bounds(graph, x, 0.0, "inf", "certrnn")
    assert torch.allclose(lo, graph(x), atol=1e-12) and torch.allclose(hi, graph(x), atol=1e-12)
    for norm in ("inf", "2", "1"):
        _check_net(graph, x, 0.1, norm, "certrnn", C=margin_matrix(graph(x).argmax(1), 3))
