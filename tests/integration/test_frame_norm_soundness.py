"""Per-frame balls (an Lq ball per frame, frames independent; POPQORN's threat model): every method's bounds
contain sampled points of the set (uniform, corner-heavy, every frame on its sphere / vertices / axis points)
and PGD pushed against them; hand fixtures match the mixed dual norm exactly; the LP/MILP encodings are
refused; radii on linear models equal the closed form and PGD's attack radius."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.attacks import PGDConfig, attack_radius, pgd_attack
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.errors import ConfigError, SpecError, UnsupportedOpError
from certnn.specs.frames import frame_scale
from certnn.specs.lp import LpBall
from certnn.testing import check_bounds_contain, pgd_against_bounds, sample_ball
from certnn.testing.nets import recurrent_classifier

torch.set_num_threads(1)
TOL = 1e-9
METHODS = ["ibp", "fastlin", "crown", "crown-ibp", "popqorn", "cnncert", "certrnn", "deepz", "lipschitz"]


def mlp(T=4, d=3):
    return nn.Sequential(nn.Flatten(), nn.Linear(T * d, 12), nn.ReLU(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3))


def _model(kind, seed):
    torch.manual_seed(seed)
    m = mlp() if kind == "mlp" else recurrent_classifier(kind, 3, 5, 3, bidirectional=seed % 2 == 1)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    return m.double().eval()


def _check(model, frame_norm, method, seed, eps=0.3, scale=None, clip=None, n=150):
    g = torch.Generator().manual_seed(seed)
    shape = (4, 3)
    x = torch.rand((2,) + shape, generator=g, dtype=torch.float64)
    graph = certnn.from_torch(model, shape)
    spec = make_spec(graph, x, eps, "inf", clip, scale, frame_norm)
    y = graph.forward(x).argmax(1)
    C = margin_matrix(y, 3, None, torch.float64)
    lo, hi, _ = bounds_for_spec(graph, spec, method, C)
    pts = sample_ball(spec, n, g)
    assert spec.contains(pts.reshape((-1,) + shape).reshape(2, -1, *shape)[:, 0]).all()
    viol = check_bounds_contain(graph.forward, pts, lo, hi, C)
    assert viol <= TOL, (method, frame_norm, viol)
    viol = pgd_against_bounds(graph.forward, spec, lo, hi, C, steps=15, restarts=1, seed=seed)
    assert viol <= TOL, (method, frame_norm, "pgd", viol)
    return lo, hi


@pytest.mark.parametrize("frame_norm", ["2", "1"])
@pytest.mark.parametrize("kind", ["mlp", "rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("method", METHODS)
def test_bounds_contain_samples_and_pgd(kind, method, frame_norm):
    if method == "lipschitz" and kind != "mlp":
        pytest.skip("the Lipschitz baseline needs a plain chain of layers")
    model = _model(kind, seed=len(kind) + len(method))
    _check(model, frame_norm, method, seed=1)


@pytest.mark.parametrize("method", ["ibp", "crown", "popqorn", "certrnn"])
def test_frames_weights_and_clip(method):
    """Chosen frames with their own weights (frozen frames) and a clip box."""
    model = _model("lstm", seed=3)
    scale = frame_scale((4, 3), (0, 2, 3), (1.0, 0.5, 2.0))
    _check(model, "2", method, seed=2, scale=scale, clip=(0.0, 1.0), eps=0.4)
    _check(model, "1", method, seed=3, scale=scale, eps=0.4)


def test_mixed_dual_norm_on_a_linear_model():
    """w . x over { ||x_t - x0_t||_2 <= eps } is w . x0 +- eps * sum_t ||w_t||_2, for every method."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(6, 1)).double()
    graph = certnn.from_torch(lin, (3, 2))
    x = torch.rand(2, 3, 2, dtype=torch.float64)
    w = lin[1].weight.detach().reshape(3, 2)
    for fn, q in (("2", 2.0), ("1", float("inf"))):
        rad = 0.1 * torch.linalg.vector_norm(w, ord=q, dim=1).sum()
        want = graph.forward(x)[:, 0]
        for method in ("ibp", "crown", "fastlin", "certrnn", "deepz", "lipschitz"):
            spec = make_spec(graph, x, 0.1, "inf", frame_norm=fn)
            lo, hi, _ = bounds_for_spec(graph, spec, method)
            if method == "lipschitz":  # sound, from the L-inf constant (the set lies in the box)
                assert (lo[:, 0] <= want - rad + 1e-12).all() and (hi[:, 0] >= want + rad - 1e-12).all()
                continue
            torch.testing.assert_close(lo[:, 0], want - rad, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(hi[:, 0], want + rad, rtol=1e-9, atol=1e-12)


def test_the_set_is_between_the_joint_ball_and_the_box():
    """The joint L2 ball of radius eps lies in the per-frame set, which lies in the L-inf box: exact bounds
    of a linear layer are ordered accordingly."""
    torch.manual_seed(1)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double()
    graph = certnn.from_torch(lin, (4, 3))
    x = torch.rand(3, 4, 3, dtype=torch.float64)
    widths = []
    for norm, fn in (("2", None), ("inf", "2"), ("inf", None)):
        lo, hi, _ = bounds_for_spec(graph, make_spec(graph, x, 0.2, norm, frame_norm=fn), "crown")
        widths.append(hi - lo)
    assert (widths[0] <= widths[1] + 1e-12).all() and (widths[1] <= widths[2] + 1e-12).all()
    assert (widths[1] < widths[2]).any() and (widths[0] < widths[1]).any()


def test_exact_encodings_are_refused_and_bad_specs_are_errors():
    model = _model("mlp", seed=0)
    graph = certnn.from_torch(model, (4, 3))
    x = torch.rand(1, 4, 3, dtype=torch.float64)
    spec = make_spec(graph, x, 0.1, "inf", frame_norm="2")
    for method in ("lp", "milp"):
        with pytest.raises(UnsupportedOpError, match="per-frame"):
            bounds_for_spec(graph, spec, method)
    with pytest.raises(SpecError, match="L-inf across frames"):
        LpBall.make(x, 0.1, "2", frame_norm="2")
    with pytest.raises(SpecError, match="sequence input"):
        LpBall.make(torch.rand(2, 5, dtype=torch.float64), 0.1, "inf", frame_norm="2")
    with pytest.raises(ConfigError, match="L-inf across frames"):
        certnn.CertifyConfig(norm="2", frame_norm="2")
    assert LpBall.make(x, 0.1, "inf", frame_norm="inf").is_box  # L-inf frames: the plain box


@pytest.mark.parametrize("frame_norm", ["2", "1"])
def test_radius_on_a_linear_model_is_the_closed_form_and_pgd_finds_it(frame_norm):
    """Two classes, f_0 - f_1 = v . x + c: the certified radius is margin / sum_t ||v_t||_{q*} for every method,
    and PGD (per-frame steps) finds an adversarial example just above it."""
    torch.manual_seed(2)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(8, 2)).double()
    graph = certnn.from_torch(lin, (4, 2))
    x = torch.rand(3, 4, 2, dtype=torch.float64)
    y = graph.forward(x).argmax(1)
    W = lin[1].weight.detach()
    q = 2.0 if frame_norm == "2" else float("inf")
    sign = torch.where(y == 0, 1.0, -1.0).to(torch.float64)
    v = (W[0] - W[1]).reshape(4, 2)
    margin = sign * (graph.forward(x)[:, 0] - graph.forward(x)[:, 1])
    exact = margin / torch.linalg.vector_norm(v, ord=q, dim=1).sum()
    for method in ("crown", "popqorn", "certrnn", "ibp"):
        r = certnn.certified_radius(graph, x, y, norm="inf", method=method, frame_norm=frame_norm).certified_radius
        assert (r <= exact * (1 + 1e-9)).all(), (method, r, exact)
        if method != "ibp":  # IBP bounds the logits separately, so its margins are looser
            assert (r >= exact * (1 - 1e-3)).all(), (method, r, exact)
    ar = attack_radius(graph, x, y, "inf", PGDConfig(steps=50, restarts=2), eps_max=10.0, frame_norm=frame_norm)
    assert ar.success.all()
    assert (ar.radius >= exact * (1 - 1e-9)).all() and (ar.radius <= exact * 1.01).all(), (ar.radius, exact)
    # the examples lie in the per-frame set of that radius
    spec = LpBall.make(x, ar.radius, "inf", frame_norm=frame_norm)
    assert spec.contains(ar.x_adv.to(torch.float64), tol=1e-7).all()


def test_pgd_respects_each_frame_ball():
    model = _model("gru", seed=4)
    x = torch.rand(5, 4, 3, dtype=torch.float64)
    y = model(x).argmax(1)
    for fn in ("2", "1"):
        res = pgd_attack(model, x, y, 0.5, "inf", PGDConfig(steps=20, restarts=2), frame_norm=fn, clip=(0.0, 1.0))
        d = (res.x_adv - x).reshape(5, 4, -1)
        per = torch.linalg.vector_norm(d, ord=float(fn), dim=2)
        assert (per <= 0.5 * (1 + 1e-9)).all()
        assert torch.allclose(res.distance, per.amax(1))
