"""Tests of the minimum-norm attack (certnn.attacks.fmn), the default of ``attack_radius``.

Soundness: every success is a real adversarial example (float64 forward pass, inside the clip box) whose
float64 distance is at most the reported radius; on linear classifiers the radius can never fall below the
closed-form minimal distance, and FMN should reach it closely.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from certnn.attacks import FMNConfig, PGDConfig, RadiusAttackResult, attack_radius, fmn_attack, lp_norm
from certnn.errors import ConfigError

from test_pgd import assert_verified, exact_linear_distance, linear_problem, mlp_problem


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_default_is_fmn_and_matches_closed_form_on_linear_model(norm):
    lin, x, y = linear_problem()
    exact = exact_linear_distance(lin, x, y, norm)
    res = attack_radius(lin, x, y, norm)  # no config: FMN
    assert isinstance(res, RadiusAttackResult)
    assert bool(res.success.all())
    assert bool((res.distance >= exact * (1 - 1e-9)).all())  # a real example cannot beat the optimum
    assert bool((res.radius >= res.distance).all())
    assert float((res.radius / exact).max()) <= 1.01
    assert_verified(res, lin, x, y, res.radius, norm)


def test_scale_pins_features_and_matches_closed_form():
    lin, x, y = linear_problem(seed=1)
    scale = torch.tensor([1.0, 0.0, 2.0, 0.5, 0.0, 1.0, 1.0, 3.0, 0.0, 1.0], dtype=torch.float64)
    exact = exact_linear_distance(lin, x, y, "2", scale=scale)
    res = fmn_attack(lin, x, y, "2", scale=scale)
    assert bool(res.success.all())
    assert bool((res.distance >= exact * (1 - 1e-9)).all())
    assert float((res.radius / exact).max()) <= 1.01
    assert bool((res.x_adv[:, scale == 0] == x[:, scale == 0]).all())


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_mlp_with_clip_is_verified_and_close_to_pgd_bisection(norm):
    net, x, y = mlp_problem(b=12, seed=2)
    clip = (0.0, 1.0)
    fm = attack_radius(net, x, y, norm, FMNConfig(steps=60), clip=clip)
    found = fm.success
    assert bool(found.any())
    assert_verified(fm, net, x, y, torch.where(found, fm.radius, torch.zeros_like(fm.radius)), norm, clip=clip)
    # the radius is the checked point's own distance, rounded up
    dist = lp_norm(fm.x_adv.double() - x.double(), norm)
    assert torch.allclose(dist[found], fm.distance[found], rtol=1e-12, atol=0)
    assert bool(torch.isinf(fm.radius[~found]).all()) and bool((fm.x_adv[~found] == x[~found]).all())
    pg = attack_radius(net, x, y, norm, PGDConfig(steps=40, restarts=2, seed=0), clip=clip, eps_max=2.0, steps=8)
    both = torch.isfinite(fm.radius) & torch.isfinite(pg.radius)
    assert float(fm.radius[both].mean()) <= 1.10 * float(pg.radius[both].mean())


def test_float32_model_and_input():
    lin, x, y = linear_problem(seed=5, dtype=torch.float32)
    res = fmn_attack(lin, x, y, "inf", clip=(-3.0, 3.0))
    assert res.x_adv.dtype == torch.float32 and lin.weight.dtype == torch.float32
    found = res.success
    assert_verified(res, lin, x, y, torch.where(found, res.radius, torch.zeros_like(res.radius)), "inf",
                    clip=(-3.0, 3.0))


def test_eps_max_caps_the_search():
    lin, x, y = linear_problem(seed=3)
    exact = exact_linear_distance(lin, x, y, "2")
    cap = float(exact.median())
    res = fmn_attack(lin, x, y, "2", eps_max=cap)
    assert bool((res.radius[res.success] <= cap * (1 + 1e-9)).all())
    assert bool(torch.isinf(res.radius[exact > cap * 1.001]).all())
    assert res.eps_max == cap


def test_targeted_and_misclassified_at_x():
    net, x, y = mlp_problem(b=8, seed=4)
    res = fmn_attack(net, x, (y + 1) % 3, "inf")  # x is "adversarial" for a wrong label: radius 0
    assert bool((res.radius == 0).all()) and bool(res.success.all())
    t = (y + 1) % 3
    tr = fmn_attack(net, x, y, "2", target=t, clip=(0.0, 1.0))
    with torch.no_grad():
        pred = net(tr.x_adv.double()).argmax(1)
    assert bool((pred[tr.success] == t[tr.success]).all())


def test_progress_reports_every_step():
    lin, x, y = linear_problem()
    seen = []
    fmn_attack(lin, x, y, "inf", FMNConfig(steps=7, restarts=1), progress=seen.append)
    assert [s["step"] for s in seen] == list(range(8)) and seen[-1]["steps"] == 7


@pytest.mark.parametrize("bad", [{"steps": 0}, {"restarts": 0}, {"gamma_init": 1.5}, {"l1_sparsity": 0.0},
                                 {"alpha_init": -1.0}, {"dtype": "float16"}])
def test_config_validation(bad):
    with pytest.raises(ConfigError):
        FMNConfig(**bad)


def test_bad_eps_max_and_config_type():
    lin, x, y = linear_problem()
    with pytest.raises(ConfigError):
        fmn_attack(lin, x, y, "inf", eps_max=0.0)
    with pytest.raises(ConfigError):
        fmn_attack(lin, x, y, "inf", PGDConfig())
    with pytest.raises(ConfigError):
        attack_radius(lin, x, y, "inf", object())


def test_a_float32_candidate_that_fails_in_float64_is_not_reported():
    """A model whose float64 pass disagrees with the float32 steps: nothing is claimed without a float64 check."""

    class Liar(nn.Module):  # float32: class 1 wins everywhere; float64: the honest linear model
        def __init__(self, lin):
            super().__init__()
            self.lin = lin

        def forward(self, z):
            out = self.lin(z)
            if z.dtype == torch.float32:
                return out + torch.tensor([0.0, 1e6, 0.0, 0.0], dtype=out.dtype)
            return out

    lin, x, y = linear_problem(seed=6)
    keep = y != 1
    x, y = x[keep], y[keep]
    res = fmn_attack(Liar(lin.float()), x, y, "inf", FMNConfig(steps=5, restarts=1), eps_max=1e-6)
    assert not bool(res.success.any()) and bool(torch.isinf(res.radius).all())
    assert math.isclose(res.eps_max, 1e-6)
