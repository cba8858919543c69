"""Tests of CLEVER (Weng et al., ICLR 2018): samplers, reverse Weibull fit, and the estimates."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from certnn.errors import ConfigError, DataError
from certnn.estimate import (
    CleverConfig,
    CleverResult,
    clever_scores,
    fit_reverse_weibull,
    gradient_norm_maxima,
    sample_lp_ball,
    select_targets,
)

torch.set_num_threads(1)

NORMS = ("inf", "2", "1")
DUAL = {"inf": 1.0, "2": 2.0, "1": math.inf}
FAST_FIT = dict(fit_shape_inits=(1.0, 5.0, 20.0))


# ---------------------------------------------------------------------------------------------------------
# samplers


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dim", [1, 5])
def test_sampler_points_lie_in_ball_and_are_uniform_in_volume(norm, dim):
    gen = torch.Generator().manual_seed(1)
    center = torch.randn(dim, dtype=torch.float64, generator=gen)
    radius, n = 0.7, 4000
    pts = sample_lp_ball(center, radius, norm, n, generator=gen)
    assert pts.shape == (n, dim) and pts.dtype == torch.float64
    r = torch.linalg.vector_norm(pts - center, ord=math.inf if norm == "inf" else float(norm), dim=1)
    assert float(r.max()) <= radius * (1 + 1e-12)
    # uniform in volume: P(||delta||_p <= t R) = t^d for every norm, so (r / R)^d ~ U(0, 1)
    u = (r / radius).pow(dim).numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # the ball is symmetric about its center
    assert float((pts - center).mean(0).abs().max()) < 0.05


def test_l2_sampler_median_radius():
    dim, radius = 8, 2.0
    gen = torch.Generator().manual_seed(3)
    pts = sample_lp_ball(torch.zeros(2, 4, dtype=torch.float64), radius, "2", 4000, generator=gen)
    assert pts.shape == (4000, 2, 4)
    r = torch.linalg.vector_norm(pts.reshape(4000, -1), dim=1)
    assert float(r.median()) == pytest.approx(radius * 0.5 ** (1 / dim), rel=0.02)


@pytest.mark.parametrize("norm", NORMS)
def test_sampler_clip_keeps_points_in_box_and_ball(norm):
    gen = torch.Generator().manual_seed(2)
    center = torch.tensor([0.05, 0.5, 0.97], dtype=torch.float32)
    pts = sample_lp_ball(center, 0.3, norm, 2000, generator=gen, clip=(0.0, 1.0))
    assert pts.dtype == torch.float32
    assert float(pts.min()) >= 0.0 and float(pts.max()) <= 1.0
    r = torch.linalg.vector_norm(pts - center, ord=math.inf if norm == "inf" else float(norm), dim=1)
    assert float(r.max()) <= 0.3 * (1 + 1e-6)


def test_sampler_is_reproducible_and_rejects_bad_radius():
    c = torch.zeros(3, dtype=torch.float64)
    a = sample_lp_ball(c, 1.0, "1", 10, generator=torch.Generator().manual_seed(7))
    b = sample_lp_ball(c, 1.0, "1", 10, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    with pytest.raises(ConfigError):
        sample_lp_ball(c, 0.0, "2", 10)
    with pytest.raises(ConfigError):
        sample_lp_ball(c, 1.0, "3", 10)
    with pytest.raises(DataError):
        sample_lp_ball(c, 1.0, "2", 10, clip=(1.0, 0.0))


# ---------------------------------------------------------------------------------------------------------
# reverse Weibull fit


@pytest.mark.parametrize("shape", [0.8, 1.5, 2.5, 4.0])
@pytest.mark.parametrize("scale", [0.2, 0.5])
def test_weibull_fit_recovers_location(shape, scale):
    loc = 3.0
    s = stats.weibull_max.rvs(shape, loc=loc, scale=scale, size=300, random_state=np.random.default_rng(0))
    fit = fit_reverse_weibull(s)
    assert fit.ok and fit.reason == ""
    assert fit.location >= s.max()
    # the location MLE is regular for shape < 2 and slower beyond; both beat the plain sample maximum here
    assert abs(fit.location - loc) <= (0.06 if shape <= 2.5 else 0.15) * scale
    assert abs(fit.location - loc) <= abs(s.max() - loc) + 1e-3 * scale
    assert fit.shape == pytest.approx(shape, rel=0.5)
    assert fit.scale == pytest.approx(scale, rel=0.5)
    assert 0 <= fit.pvalue <= 1


def test_weibull_fit_with_shape_penalty():
    s = stats.weibull_max.rvs(2.0, loc=3.0, scale=0.3, size=200, random_state=np.random.default_rng(1))
    fit = fit_reverse_weibull(s, shape_inits=(1.0, 5.0), shape_reg=0.01)
    assert fit.ok and abs(fit.location - 3.0) < 0.05


def test_weibull_fallbacks():
    # constant maxima (an affine model): nothing to fit, the maximum is exact
    fit = fit_reverse_weibull(np.full(50, 2.5))
    assert not fit.ok and fit.location == 2.5 and "equal" in fit.reason
    # a fit that can never pass the KS threshold falls back to the largest maximum
    s = stats.weibull_max.rvs(2.0, loc=3.0, scale=0.3, size=100, random_state=np.random.default_rng(2))
    fit = fit_reverse_weibull(s, min_pvalue=1.0 + 0.0)
    assert not fit.ok and fit.location == s.max() and "p-value" in fit.reason
    # two clusters: not a reverse Weibull law
    rng = np.random.default_rng(3)
    s = np.concatenate([1.0 + 1e-3 * rng.random(100), 2.0 + 1e-3 * rng.random(100)])
    fit = fit_reverse_weibull(s)
    assert not fit.ok and fit.location == s.max()
    # non-finite values are ignored; all non-finite gives nan
    fit = fit_reverse_weibull(np.array([np.nan, np.inf]))
    assert not fit.ok and math.isnan(fit.location)


def test_weibull_fallback_when_solver_fails_or_location_below_max(monkeypatch):
    s = stats.weibull_max.rvs(2.0, loc=3.0, scale=0.3, size=100, random_state=np.random.default_rng(4))

    def broken(*args, **kwargs):
        raise RuntimeError("solver diverged")

    monkeypatch.setattr(stats.weibull_max, "fit", broken)
    fit = fit_reverse_weibull(s)
    assert not fit.ok and fit.location == s.max() and "failed" in fit.reason

    # a location below the largest maximum (rescaled data lie in [-1, 0], so loc = -0.5 is inside them)
    monkeypatch.setattr(stats.weibull_max, "fit", lambda z, c0, **kw: (2.0, -0.5, 1.0))
    fit = fit_reverse_weibull(s, min_pvalue=0.0)
    assert not fit.ok and fit.location == s.max() and "below" in fit.reason


# ---------------------------------------------------------------------------------------------------------
# CLEVER on models with known answers


def _linear(d=6, k=4, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=gen, dtype=dtype))
        lin.bias.copy_(torch.randn(k, generator=gen, dtype=dtype))
    x = torch.randn(5, d, generator=gen, dtype=dtype)
    return lin, x


def _worst_direction(w: torch.Tensor, norm: str) -> torch.Tensor:
    """A unit-Lp-norm direction along which w^T x decreases at rate ||w||_q."""
    if norm == "inf":
        return -torch.sign(w)
    if norm == "2":
        return -w / torch.linalg.vector_norm(w)
    e = torch.zeros_like(w)
    k = int(w.abs().argmax())
    e[k] = -torch.sign(w[k])
    return e


@pytest.mark.parametrize("norm", NORMS)
def test_linear_model_gives_exact_minimal_distance(norm):
    lin, x = _linear()
    with torch.no_grad():
        logits = lin(x)
    y = logits.argmax(1)
    cfg = CleverConfig(n_batches=8, n_samples=4, radius=1e3)
    res = clever_scores(lin, x, y, norm, cfg)
    assert isinstance(res, CleverResult) and not bool(res.misclassified.any())
    q = DUAL[norm]
    W = lin.weight.detach()
    for i in range(x.shape[0]):
        c = int(y[i])
        for j in range(W.shape[0]):
            if j == c:
                assert math.isnan(res.per_class[i, j]) and math.isnan(res.margin[i, j])
                continue
            w = W[c] - W[j]
            lip = float(torch.linalg.vector_norm(w, ord=q))
            g = float(logits[i, c] - logits[i, j])
            assert float(res.lipschitz_estimate[i, j]) == pytest.approx(lip, rel=1e-9)
            assert float(res.margin[i, j]) == pytest.approx(g, rel=1e-12)
            assert float(res.per_class[i, j]) == pytest.approx(g / lip, rel=1e-6)
            assert not bool(res.fit_ok[i, j])  # constant gradient: the fallback (exact maximum) is used
        # the score is attained: moving res.clever_estimate along the worst direction of the closest class
        # reaches the decision boundary
        j = int(torch.nan_to_num(res.per_class[i], nan=math.inf).argmin())
        w = W[c] - W[j]
        x_adv = x[i] + float(res.clever_estimate[i]) * (1 + 1e-9) * _worst_direction(w, norm)
        with torch.no_grad():
            out = lin(x_adv)
        assert float(out[c] - out[j]) <= 1e-9
        # and it is minimal: the distance to every boundary {g_j <= 0} is at least the score
        dist = [float((logits[i, c] - logits[i, jj]) / torch.linalg.vector_norm(W[c] - W[jj], ord=q))
                for jj in range(W.shape[0]) if jj != c]
        assert float(res.clever_estimate[i]) == pytest.approx(min(dist), rel=1e-6)


def test_linear_model_score_capped_by_radius():
    lin, x = _linear()
    res = clever_scores(lin, x, None, "2", CleverConfig(n_batches=4, n_samples=4, radius=1e-3))
    assert torch.all(res.clever_estimate <= 1e-3)
    assert torch.allclose(res.clever_estimate, torch.full((5,), 1e-3, dtype=torch.float64))


def test_estimate_close_to_true_lipschitz_constant_of_smooth_model():
    """g(x) = tanh(w^T x): ||grad g||_2 = (1 - tanh^2(w^T x)) ||w||_2 peaks at ||w||_2 = 1 on w^T x = 0,
    which the ball around x0 (w^T x0 = 0.5, R = 2) contains."""
    w = torch.tensor([0.6, 0.8], dtype=torch.float64)

    def model(x):
        return torch.stack([torch.tanh(x @ w), torch.zeros(x.shape[0], dtype=x.dtype)], dim=1)

    x0 = torch.tensor([[0.3, 0.4]], dtype=torch.float64)
    cfg = CleverConfig(n_batches=50, n_samples=64, radius=2.0, **FAST_FIT)
    res = clever_scores(model, x0, torch.tensor([0]), "2", cfg)
    assert abs(float(res.lipschitz_estimate[0, 1]) - 1.0) < 5e-3
    assert float(res.clever_estimate) == pytest.approx(math.tanh(0.5) / float(res.lipschitz_estimate[0, 1]))


def _mlp(d=5, k=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, k))


@pytest.fixture(scope="module")
def mlp_run():
    net = _mlp()
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    cfg = CleverConfig(n_batches=30, n_samples=32, radius=0.5, seed=11, **FAST_FIT)
    res = clever_scores(net, x, None, "2", cfg)
    return net, x, cfg, res


def test_mlp_estimate_positive_and_below_radius(mlp_run):
    net, x, cfg, res = mlp_run
    assert res.clever_estimate.shape == (3,) and res.per_class.shape == (3, 4)
    assert torch.all(res.clever_estimate > 0) and torch.all(res.clever_estimate <= cfg.radius)
    assert res.radius == cfg.radius and res.norm == "2" and res.seed == 11 and res.method == "clever"
    lab = res.label
    assert torch.all(torch.isnan(res.per_class[torch.arange(3), lab]))
    assert res.fit_ok.sum() > 0
    # the user's float32 module was converted in a copy, not in place
    assert all(p.dtype == torch.float32 for p in net.parameters())
    d = res.to_dict()
    assert d["config"]["n_batches"] == 30 and len(d["clever_estimate"]) == 3


def test_mlp_targeted_not_below_untargeted(mlp_run):
    net, x, cfg, res = mlp_run
    for j in range(4):
        keep = res.label != j
        if not bool(keep.any()):
            continue
        tgt = torch.where(keep, torch.full_like(res.label, j), (res.label + 1) % 4)
        tres = clever_scores(net, x, None, "2", cfg, target=tgt)
        assert torch.all(tres.clever_estimate >= res.clever_estimate - 1e-12)
        # same seed, same points: the targeted score is the untargeted per-class score
        rows = torch.arange(3)
        assert torch.allclose(tres.clever_estimate, res.per_class[rows, tgt], rtol=1e-6)


def test_mlp_reproducible_and_chunking_invariant(mlp_run):
    net, x, cfg, res = mlp_run
    again = clever_scores(net, x, None, "2", cfg)
    assert torch.equal(again.clever_estimate, res.clever_estimate)
    assert torch.equal(again.lipschitz_estimate.nan_to_num(-1), res.lipschitz_estimate.nan_to_num(-1))
    chunked = clever_scores(net, x, None, "2", cfg.replace(max_points_per_call=7))
    assert torch.allclose(chunked.clever_estimate, res.clever_estimate, rtol=1e-6)
    other = clever_scores(net, x, None, "2", cfg.replace(seed=12))
    assert not torch.equal(other.lipschitz_estimate.nan_to_num(-1), res.lipschitz_estimate.nan_to_num(-1))


@pytest.mark.parametrize("how", ["least_likely", "random", "top2"])
def test_target_selection(how):
    logits = torch.tensor([[3.0, 1.0, -2.0, 2.0], [0.0, 5.0, 1.0, -1.0]])
    label = torch.tensor([0, 1])
    t = select_targets(logits, label, how, seed=3)
    assert t.shape == (2,) and torch.all(t != label) and torch.all((t >= 0) & (t < 4))
    if how == "top2":
        assert t.tolist() == [3, 2]
    if how == "least_likely":
        assert t.tolist() == [2, 3]
    net = _mlp()
    x = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    cfg = CleverConfig(n_batches=6, n_samples=8, radius=0.5, estimator="max")
    res = clever_scores(net, x, None, "inf", cfg, target=how)
    assert res.target is not None and torch.all(res.target != res.label)
    assert torch.all(torch.isfinite(res.clever_estimate))


def test_gradient_norm_maxima_match_pointwise_autograd():
    net = _mlp().double()
    x0 = torch.zeros(5, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    m = gradient_norm_maxima(net, x0, 0, [1, 2], "1", 0.2, 4, 16, generator=gen)
    assert m.shape == (2, 4) and torch.all(torch.isfinite(m)) and torch.all(m > 0)
    # recompute batch 0 of class 1 point by point
    pts = sample_lp_ball(x0, 0.2, "1", 16, generator=torch.Generator().manual_seed(0))
    norms = []
    for p in pts:
        p = p.clone().requires_grad_(True)
        out = net(p.unsqueeze(0))[0]
        (g,) = torch.autograd.grad(out[0] - out[1], p)
        norms.append(float(g.abs().max()))
    assert float(m[0, 0]) == pytest.approx(max(norms), rel=1e-12)


def test_estimator_max_uses_largest_observed_norm():
    net = _mlp()
    x = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    cfg = CleverConfig(n_batches=10, n_samples=16, radius=0.3, estimator="max")
    res = clever_scores(net, x, None, "inf", cfg)
    assert not bool(res.fit_ok.any())
    assert torch.all(torch.isnan(res.ks_pvalue))
    assert torch.all(res.clever_estimate > 0)


# ---------------------------------------------------------------------------------------------------------
# dtypes, misclassification, errors


def test_float32_input():
    lin64, x64 = _linear()
    lin32 = nn.Linear(6, 4)
    with torch.no_grad():
        lin32.weight.copy_(lin64.weight.float())
        lin32.bias.copy_(lin64.bias.float())
    cfg = CleverConfig(n_batches=6, n_samples=8, radius=1e3)
    r32 = clever_scores(lin32, x64.float(), None, "2", cfg)
    r64 = clever_scores(lin64, x64, None, "2", cfg)
    assert r32.dtype == "float32" and r64.dtype == "float64"
    assert r32.clever_estimate.dtype == torch.float64
    assert torch.allclose(r32.clever_estimate, r64.clever_estimate, rtol=1e-4)
    # a float64 module with float32 inputs runs on a float32 copy
    r = clever_scores(_mlp().double(), x64.float()[:2, :5], None, "inf",
                      CleverConfig(n_batches=10, n_samples=8, radius=0.1, **FAST_FIT))
    assert r.dtype == "float32" and torch.all(r.clever_estimate > 0)


def test_misclassified_inputs_score_zero():
    lin, x = _linear()
    with torch.no_grad():
        pred = lin(x).argmax(1)
    y = pred.clone()
    y[1] = (pred[1] + 1) % 4
    res = clever_scores(lin, x, y, "2", CleverConfig(n_batches=4, n_samples=4, radius=10.0))
    assert res.misclassified.tolist() == [False, True, False, False, False]
    assert float(res.clever_estimate[1]) == 0.0
    assert torch.all(torch.isnan(res.per_class[1])) and not bool(res.fit_ok[1].any())
    assert torch.all(res.clever_estimate[[0, 2, 3, 4]] > 0)


def test_config_validation():
    assert CleverConfig().n_batches == 100 and CleverConfig().n_samples == 256
    assert CleverConfig().radius_for("linf") == 0.1 and CleverConfig().radius_for(2) == 2.0
    assert CleverConfig(radius=3).radius_for("1") == 3.0
    cfg = CleverConfig.from_mapping({"n_batches": 5, "fit_shape_inits": [1, 2]})
    assert cfg.fit_shape_inits == (1.0, 2.0)
    for bad in [dict(radius=0.0), dict(radius=-1), dict(radius=float("inf")), dict(n_batches=0),
                dict(n_samples=1.5), dict(pool="mean"), dict(estimator="gumbel"), dict(fit_shape_inits=()),
                dict(fit_min_pvalue=2.0), dict(seed=-1), dict(max_points_per_call=0)]:
        with pytest.raises(ConfigError):
            CleverConfig(**bad)
    with pytest.raises(ConfigError):
        CleverConfig.from_mapping({"batches": 5})


def test_input_errors():
    lin, x = _linear()
    cfg = CleverConfig(n_batches=2, n_samples=2)
    y = lin(x).argmax(1)
    with pytest.raises(ConfigError):
        clever_scores(lin, x, y, "3", cfg)
    with pytest.raises(DataError):
        clever_scores(lin, x, y[:3], "2", cfg)
    with pytest.raises(DataError):
        clever_scores(lin, x, y + 10, "2", cfg)
    with pytest.raises(DataError):
        clever_scores(lin, x[0], y[:1], "2", cfg)
    with pytest.raises(DataError):
        clever_scores(lin, x, y, "2", cfg, target=y)
    with pytest.raises(DataError):
        clever_scores(lin, x, y, "2", cfg, target=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ConfigError):
        clever_scores(lin, x, y, "2", cfg, target="second_best")
    with pytest.raises(DataError):
        clever_scores(lambda t: t.sum(1), x, y, "2", cfg)
    with pytest.raises(DataError):
        clever_scores(lin, x, y, "2", cfg, clip=(0.0, 1.0))  # randn inputs lie outside [0, 1]
    with pytest.raises(ConfigError):
        clever_scores(lin, x, y, "2", config={"n_batches": 2})


def test_fit_rejects_far_extrapolation():
    """Tied maxima (ReLU nets have piecewise-constant gradient norms) can make the ML fit put the location
    far beyond every observation; such fits fall back to the sample maximum."""
    from certnn.estimate.weibull import fit_reverse_weibull

    rng = np.random.default_rng(0)
    s = np.concatenate([np.full(40, 30.0), rng.uniform(20.0, 29.0, 10)])
    guarded = fit_reverse_weibull(s)
    assert guarded.location <= 30.0 + 1.0 * (30.0 - s.min()) + 1e-9
    loose = fit_reverse_weibull(s, max_extrapolation=float("inf"))
    assert loose.location >= guarded.location - 1e-9
