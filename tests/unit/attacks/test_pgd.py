"""Tests of certnn.attacks: PGD, the radius search and the projections.

Soundness of an attack means: every reported success is a real adversarial example (float64 forward
pass, inside the ball and the clip box). On linear classifiers the minimal adversarial distance is known
in closed form, so the attack radius must lie at or above it, and close to it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from certnn.attacks import (AttackResult, PGDConfig, RadiusAttackResult, as_dtype, attack_radius, lp_norm,
                            pgd_attack, project_box_ball, project_l1_ball)
from certnn.errors import ConfigError, DataError

DUAL = {"inf": 1.0, "2": 2.0, "1": float("inf")}
FAST = PGDConfig(steps=40, restarts=4)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def linear_problem(d=10, k=4, b=12, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g, dtype=dtype))
        lin.bias.copy_(torch.randn(k, generator=g, dtype=dtype))
    x = torch.randn(b, d, generator=g, dtype=dtype)
    with torch.no_grad():
        y = lin(x).argmax(dim=1)
    return lin, x, y


def exact_linear_distance(lin, x, y, norm, scale=None):
    """min_{j != y} (f_y - f_j) / ||s * (w_y - w_j)||_q: distance to the closest decision hyperplane."""
    w, b = lin.weight.detach().double(), lin.bias.detach().double()
    f = x.double() @ w.T + b
    best = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
    for j in range(w.shape[0]):
        wd = w[y] - w[j]
        if scale is not None:
            wd = wd * scale.double()
        gap = f.gather(1, y[:, None])[:, 0] - f[:, j]
        dist = gap / torch.linalg.vector_norm(wd, ord=DUAL[norm], dim=1)
        best = torch.where(y == j, best, torch.minimum(best, dist))
    return best


def assert_verified(res, model, x, y, eps, norm, clip=None, target=None):
    """Every success is a real adversarial example inside the ball and the clip box."""
    m64 = as_dtype(model, torch.float64)
    with torch.no_grad():
        logits = m64(res.x_adv.double())
    pred = logits.argmax(dim=1)
    ok = pred != y if target is None else pred == target
    assert bool(ok[res.success].all())
    dist = lp_norm(res.x_adv.double() - x.double(), norm)
    eps = torch.as_tensor(eps, dtype=torch.float64).expand(x.shape[0])
    assert bool((dist <= eps * (1 + 1e-9)).all())
    if clip is not None:
        assert bool((res.x_adv >= clip[0]).all()) and bool((res.x_adv <= clip[1]).all())


# ------------------------------------------------------------------------------------------ linear


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_radius_matches_closed_form_on_linear_model(norm):
    lin, x, y = linear_problem()
    exact = exact_linear_distance(lin, x, y, norm)
    res = attack_radius(lin, x, y, norm, FAST, eps_max=float(4 * exact.max()))
    assert isinstance(res, RadiusAttackResult)
    assert bool(res.success.all())
    # any example found is real, so it can never beat the exact minimal distance
    assert bool((res.distance >= exact * (1 - 1e-9)).all())
    assert bool((res.radius >= res.distance * (1 - 1e-12)).all())
    # L-inf and L1 PGD converge to the optimal vertex; L2 PGD only approaches the optimal direction
    # geometrically (the total path is 2.5 eps), hence the looser tolerance
    assert float((res.radius / exact).max()) <= {"inf": 1.01, "1": 1.01, "2": 1.05}[norm]
    assert_verified(res, lin, x, y, res.radius, norm)


def test_radius_with_scale_matches_closed_form():
    lin, x, y = linear_problem(seed=1)
    scale = torch.tensor([1.0, 0.0, 2.0, 0.5, 0.0, 1.0, 1.0, 3.0, 0.0, 1.0], dtype=torch.float64)
    exact = exact_linear_distance(lin, x, y, "2", scale=scale)
    res = attack_radius(lin, x, y, "2", FAST, scale=scale, eps_max=float(4 * exact.max()))
    assert bool(res.success.all())
    assert bool((res.distance >= exact * (1 - 1e-9)).all())
    assert float((res.radius / exact).max()) <= 1.05
    assert bool((res.x_adv[:, scale == 0] == x[:, scale == 0]).all())


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_pgd_success_is_verified_and_inside_ball_and_box(norm):
    lin, x, y = linear_problem(seed=2)
    exact = exact_linear_distance(lin, x, y, norm)
    eps = exact * 1.5  # per-sample radius
    clip = (x.min().item() - 0.1, x.max().item() + 0.1)
    res = pgd_attack(lin, x, y, eps, norm, FAST, clip=clip)
    assert isinstance(res, AttackResult)
    assert_verified(res, lin, x, y, eps, norm, clip=clip)
    assert res.success.dtype == torch.bool and res.x_adv.shape == x.shape
    assert bool((res.distance <= eps * (1 + 1e-9)).all())
    assert bool((res.margin[res.success] > 0).all())
    # below the exact distance nothing can be found
    res_small = pgd_attack(lin, x, y, exact * 0.9, norm, FAST)
    assert not bool(res_small.success.any())
    assert bool((res_small.margin < 0).all())


def test_targeted_attack_reaches_target():
    lin, x, y = linear_problem(seed=3, k=3)
    target = (y + 1) % 3
    res = pgd_attack(lin, x, y, 20.0, "2", FAST, target=target)
    assert bool(res.success.all())
    with torch.no_grad():
        assert bool((lin(res.x_adv).argmax(dim=1) == target).all())
    assert_verified(res, lin, x, y, 20.0, "2", target=target)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_scale_zero_keeps_features_fixed(norm):
    lin, x, y = linear_problem(seed=4)
    scale = torch.ones(10, dtype=torch.float64)
    scale[::2] = 0
    res = pgd_attack(lin, x, y, 50.0, norm, FAST, scale=scale)
    assert bool(res.success.all())
    assert bool((res.x_adv[:, ::2] == x[:, ::2]).all())
    assert not bool((res.x_adv[:, 1::2] == x[:, 1::2]).all())


# ------------------------------------------------------------------------------------------ MLP


def mlp_problem(b=16, seed=0):
    """A random 10-20-20-3 ReLU net whose decision regions cut through the box [0, 1]^10."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 3))
    net = net.double().eval()
    with torch.no_grad():
        h = torch.full((1, 10), 0.5, dtype=torch.float64)  # centre the pre-activations on the box centre
        for layer in net[::2]:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64)
                               * 2 / layer.in_features ** 0.5)
            layer.bias.copy_(-(h @ layer.weight.T)[0] + 0.1 * torch.randn(layer.out_features, generator=g,
                                                                          dtype=torch.float64))
            h = torch.relu(layer(h))
    x = torch.rand(b, 10, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    return net, x, y


@pytest.mark.parametrize("norm,eps", [("inf", 1.0), ("2", 3.2), ("1", 10.0)])
def test_mlp_clip_respected_and_large_eps_succeeds(norm, eps):
    net, x, y = mlp_problem()
    # classes present in the box: with these eps the whole box [0, 1]^10 is reachable
    with torch.no_grad():
        box_classes = net(torch.rand(4000, 10, generator=torch.Generator().manual_seed(1),
                                     dtype=torch.float64)).argmax(dim=1).unique()
    assert len(box_classes) >= 2
    res = pgd_attack(net, x, y, eps, norm, PGDConfig(steps=50, restarts=3), clip=(0.0, 1.0))
    assert_verified(res, net, x, y, eps, norm, clip=(0.0, 1.0))
    assert bool(res.success.all())


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_no_success_at_eps_zero(norm):
    net, x, y = mlp_problem(seed=1)
    res = pgd_attack(net, x, y, 0.0, norm, PGDConfig(steps=5, restarts=2), clip=(0.0, 1.0))
    assert not bool(res.success.any())
    assert bool((res.x_adv == x).all()) and bool((res.distance == 0).all())
    # a point labelled with another class is "adversarial" at radius 0
    r = attack_radius(net, x, (y + 1) % 3, norm, PGDConfig(steps=5, restarts=1), eps_max=0.5)
    assert bool((r.radius == 0).all()) and bool(r.success.all())


def test_mlp_radius_is_upper_bound_and_verified():
    net, x, y = mlp_problem(b=8, seed=2)
    res = attack_radius(net, x, y, "inf", PGDConfig(steps=30, restarts=2), clip=(0.0, 1.0), eps_max=1.0,
                        steps=8)
    found = res.success
    assert bool(found.any())
    assert_verified(res, net, x, y, torch.where(found, res.radius, torch.zeros_like(res.radius)), "inf",
                    clip=(0.0, 1.0))
    assert bool(torch.isinf(res.radius[~found]).all())
    assert bool((res.x_adv[~found] == x[~found]).all())
    assert bool((res.distance[found] <= res.radius[found]).all())
    # PGD cannot succeed below the exact radius; the attack radius is an upper bound on it, and here
    # clean points are correctly classified, so every radius is > 0
    assert bool((res.radius > 0).all())


# ------------------------------------------------------------------------------------------ dtypes


def test_float32_input_and_model_untouched():
    lin, x, y = linear_problem(seed=5, dtype=torch.float32)
    res = pgd_attack(lin, x, y, 5.0, "2", FAST, clip=(-3.0, 3.0))
    assert res.x_adv.dtype == torch.float32
    assert lin.weight.dtype == torch.float32
    assert bool(res.success.any())
    assert_verified(res, lin, x, y, 5.0, "2", clip=(-3.0, 3.0))
    r = attack_radius(lin, x, y, "1", FAST, eps_max=50.0, steps=6)
    assert r.x_adv.dtype == torch.float32
    assert bool(r.success.all())
    assert_verified(r, lin, x, y, r.radius, "1")


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_float32_rounding_is_scaled_back_into_the_ball(norm):
    """Far from 0, float32 rounding of x + delta can leave the ball; the returned point must not."""
    lin, x, y = linear_problem(seed=7, dtype=torch.float32)
    with torch.no_grad():
        lin.bias -= 300 * lin.weight.sum(dim=1)
    x = x + 300
    with torch.no_grad():
        y = lin(x).argmax(dim=1)
    eps = (1.5 * exact_linear_distance(lin, x, y, norm)).float()
    res = pgd_attack(lin, x, y, eps, norm, FAST)
    assert bool(res.success.all())
    assert_verified(res, lin, x, y, eps.double(), norm)
    assert lin.weight.grad is None  # the attack takes gradients w.r.t. the input only


def test_image_shaped_input_with_per_sample_eps_and_tensor_clip():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 3)).eval()
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    eps = torch.tensor([0.0, 0.1, 0.5, 1.0, 2.0])
    clip = (torch.zeros(1, 4, 4), 1.0)
    for norm in ("inf", "2", "1"):
        res = pgd_attack(net, x, y, eps, norm, PGDConfig(steps=10, restarts=2), clip=clip)
        assert res.x_adv.shape == x.shape and res.x_adv.dtype == torch.float32
        assert not bool(res.success[0])
        assert_verified(res, net, x, y, eps, norm, clip=(0.0, 1.0))
    empty = pgd_attack(net, x[:0], y[:0], 1.0, "inf")
    assert empty.x_adv.shape == (0, 1, 4, 4) and empty.success.shape == (0,)


def test_float64_input_with_float32_model():
    lin, x, y = linear_problem(seed=6, dtype=torch.float32)
    x64 = x.double()
    res = pgd_attack(lin, x64, y, 5.0, "inf", FAST)
    assert res.x_adv.dtype == torch.float64 and lin.weight.dtype == torch.float32
    assert bool(res.success.all())


def test_as_dtype_copies_only_when_needed():
    lin = nn.Linear(3, 2).double()
    assert as_dtype(lin, torch.float64) is lin
    f32 = as_dtype(lin, torch.float32)
    assert f32 is not lin and f32.weight.dtype == torch.float32 and lin.weight.dtype == torch.float64
    fn = lambda t: t  # noqa: E731
    assert as_dtype(fn, torch.float32) is fn


def test_plain_function_model():
    w = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    y = (x @ w.T).argmax(dim=1)
    res = pgd_attack(lambda t: t @ w.T, x, y, 10.0, "inf", FAST)
    assert bool(res.success.all())


# ------------------------------------------------------------------------------------------ projections


def l1_projection_reference(v, r):
    """Bisection on the soft threshold theta, one vector at a time."""
    v = np.asarray(v, dtype=np.float64)
    if np.abs(v).sum() <= r:
        return v
    lo, hi = 0.0, np.abs(v).max()
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(np.abs(v) - mid, 0).sum() > r:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.maximum(np.abs(v) - hi, 0)


def box_ball_reference(v, lo, hi, r, norm):
    """Bisection on the KKT multiplier of the ball constraint, one vector at a time."""
    lo, hi = np.maximum(lo, -r), np.minimum(hi, r)
    if norm == "1":
        f = lambda lam: np.clip(np.sign(v) * np.maximum(np.abs(v) - lam, 0), lo, hi)  # noqa: E731
        size, a, b, grow = lambda w: np.abs(w).sum(), 0.0, np.abs(v).max(), True
    else:
        f = lambda t: np.clip(t * v, lo, hi)  # noqa: E731
        size, a, b, grow = np.linalg.norm, 0.0, 1.0, False
    if size(f(0.0 if grow else 1.0)) <= r:
        return f(0.0 if grow else 1.0)
    for _ in range(200):
        mid = (a + b) / 2
        if (size(f(mid)) > r) == grow:
            a = mid
        else:
            b = mid
    return f(b if grow else a)


def test_l1_projection_matches_reference_and_keeps_inside_points():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(20, 9, generator=g, dtype=torch.float64) * 2
    r = torch.rand(20, generator=g, dtype=torch.float64) * 6
    w = project_l1_ball(v, r)
    assert bool((lp_norm(w, "1") <= r * (1 + 1e-12)).all())
    for i in range(20):
        np.testing.assert_allclose(w[i].numpy(), l1_projection_reference(v[i].numpy(), r[i].item()),
                                   atol=1e-10)
    inside = v / lp_norm(v, "1")[:, None] * 0.5
    assert torch.equal(project_l1_ball(inside, 1.0), inside)
    assert bool((project_l1_ball(v, 0.0) == 0).all())
    ties = torch.tensor([[1.0, 1.0, 1.0, -1.0]], dtype=torch.float64)
    assert torch.allclose(project_l1_ball(ties, 2.0), ties / 2)
    img = torch.randn(3, 2, 4, 4, generator=g)
    out = project_l1_ball(img, 1.0)
    assert out.shape == img.shape and out.dtype == torch.float32


@pytest.mark.parametrize("norm", ["1", "2", "inf"])
def test_box_ball_projection_matches_reference(norm):
    g = torch.Generator().manual_seed(1)
    v = torch.randn(30, 7, generator=g, dtype=torch.float64) * 2
    lo = -torch.rand(30, 7, generator=g, dtype=torch.float64) * 2
    hi = torch.rand(30, 7, generator=g, dtype=torch.float64) * 2
    lo[:, 0] = 0.0
    hi[:, 0] = 0.0  # a pinned coordinate
    r = torch.rand(30, generator=g, dtype=torch.float64) * 3
    w = project_box_ball(v, lo, hi, r, norm)
    assert bool((w >= torch.maximum(lo, -r[:, None])).all()) and bool((w <= hi).all())
    assert bool((lp_norm(w, norm) <= r * (1 + 1e-12)).all())
    for i in range(30):
        if norm == "inf":
            ref = np.clip(v[i].numpy(), np.maximum(lo[i].numpy(), -r[i].item()),
                          np.minimum(hi[i].numpy(), r[i].item()))
        else:
            ref = box_ball_reference(v[i].numpy(), lo[i].numpy(), hi[i].numpy(), r[i].item(), norm)
        np.testing.assert_allclose(w[i].numpy(), ref, atol=1e-10)


# ------------------------------------------------------------------------------------------ errors


def test_bad_inputs_raise_clear_errors():
    lin, x, y = linear_problem(b=4)
    with pytest.raises(DataError, match="shape"):
        pgd_attack(lin, x, y[:3], 1.0, "inf")
    with pytest.raises(DataError, match="nonnegative"):
        pgd_attack(lin, x, y, -1.0, "inf")
    with pytest.raises(DataError, match="nonnegative"):
        pgd_attack(lin, x, y, torch.tensor([1.0, -1.0, 1.0, 1.0]), "2")
    with pytest.raises(ConfigError, match="norm"):
        pgd_attack(lin, x, y, 1.0, "3")
    with pytest.raises(DataError, match="outside"):
        pgd_attack(lin, x, y + 4, 1.0, "inf")
    with pytest.raises(DataError, match="target"):
        pgd_attack(lin, x, y, 1.0, "inf", target=y)
    with pytest.raises(DataError, match="integer"):
        pgd_attack(lin, x, y.double(), 1.0, "inf")
    with pytest.raises(DataError, match="clip"):
        pgd_attack(lin, x, y, 1.0, "inf", clip=(0.0, 1.0))
    with pytest.raises(DataError, match="scale"):
        pgd_attack(lin, x, y, 1.0, "inf", scale=-torch.ones(10))
    with pytest.raises(DataError, match="broadcast"):
        pgd_attack(lin, x, y, 1.0, "inf", scale=torch.ones(3))
    with pytest.raises(ConfigError, match="eps_max"):
        attack_radius(lin, x, y, "inf", eps_max=-1.0)


def test_config_validation():
    assert PGDConfig().relative_step == pytest.approx(2.5 / 100)
    assert PGDConfig.from_mapping({"steps": 10, "loss": "ce"}).relative_step == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="unknown"):
        PGDConfig.from_mapping({"stepz": 10})
    with pytest.raises(ConfigError, match="loss"):
        PGDConfig(loss="hinge")
    with pytest.raises(ConfigError, match="steps"):
        PGDConfig(steps=0)
    with pytest.raises(ConfigError, match="l1_sparsity"):
        PGDConfig(l1_sparsity=0.0)


def test_ce_loss_and_determinism():
    net, x, y = mlp_problem(b=8, seed=1)
    cfg = PGDConfig(steps=20, restarts=2, loss="ce", seed=5)
    a = pgd_attack(net, x, y, 0.3, "inf", cfg, clip=(0.0, 1.0))
    b = pgd_attack(net, x, y, 0.3, "inf", cfg, clip=(0.0, 1.0))
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert_verified(a, net, x, y, 0.3, "inf", clip=(0.0, 1.0))
