"""alpha-CROWN: every iterate is sound (sampled points and PGD stay inside every iterate's bounds) on
random nets of every architecture (ReLU / leaky / tanh / sigmoid / arctan / mixed MLPs, CNNs with residual
blocks, batch norm and pooling, RNN / LSTM / GRU), never looser than CROWN, strictly tighter where CROWN
is loose, batch independent, and inside the exact MILP range on tiny ReLU nets."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.engine.context import RunContext
from certnn.engine.methods import get_method
from certnn.optimize import AlphaConfig, optimized_bounds
from certnn.testing import check_bounds_contain, pgd_against_bounds, random_cnn, random_mlp, random_relu_mlp, sample_ball
from certnn.testing.nets import LastFrameHead

TOL = 1e-9
FAST = AlphaConfig(iterations=8, patience=8)



def random_recurrent(kind: str, seed: int, T: int = 3, d: int = 3, hidden: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](d, hidden, 1, batch_first=True)
    with torch.no_grad():
        for p in rnn.parameters():
            p.mul_(2.0)
    return LastFrameHead(rnn, nn.Linear(hidden, 3)).double().eval()


def _net(arch: str, seed: int):
    if arch.startswith("mlp-"):
        act = arch[4:]
        model, d = random_mlp(seed, None if act == "mixed" else act, d_in=4)
        return model, (d,)
    if arch.startswith("cnn-"):
        act = arch[4:]
        model, shape = random_cnn(seed, None if act == "mixed" else act)
        return model, shape
    model = random_recurrent(arch, seed)
    return model, (3, 3)


def _problem(arch: str, seed: int, norm: str = "inf", eps: float = 0.3):
    model, shape = _net(arch, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((2,) + shape, generator=g, dtype=torch.float64) - 0.5
    graph = certnn.from_torch(model, shape)
    spec = make_spec(graph, x, eps, norm)
    y = model(x).argmax(1)
    return model, graph, spec, margin_matrix(y, 3)


ARCHS = ["mlp-relu", "mlp-leaky", "mlp-tanh", "mlp-sigmoid", "mlp-arctan", "mlp-mixed", "cnn-relu", "cnn-mixed",
         "rnn", "lstm", "gru"]


@pytest.mark.parametrize("arch", ARCHS)
def test_every_iterate_sound_and_never_looser_than_crown(arch):
    for seed, norm in [(0, "inf"), (1, "2")]:
        model, graph, spec, C = _problem(arch, seed, norm)
        pts = sample_ball(spec, 120, torch.Generator().manual_seed(seed))
        iterates = []

        def record(it, lo, hi):
            iterates.append((lo.clone(), hi.clone()))
            assert check_bounds_contain(model, pts, lo, hi, C) <= TOL, f"iterate {it} unsound"

        ctx = RunContext(graph, spec, get_method("alpha-crown"))
        res = optimized_bounds(ctx, C, config=FAST, on_iterate=record)
        assert len(iterates) == res.iterations >= 1
        assert pgd_against_bounds(model, spec, res.lower, res.upper, C, steps=15) <= TOL
        crown_lo, crown_hi, _ = bounds_for_spec(graph, spec, "crown", C)
        assert (res.lower >= crown_lo - 1e-9 * (1 + crown_lo.abs())).all()
        assert (res.upper <= crown_hi + 1e-9 * (1 + crown_hi.abs())).all()
        if arch in ("mlp-relu", "mlp-leaky", "cnn-relu", "mlp-tanh", "mlp-sigmoid", "mlp-arctan"):  # warm start: CROWN
            assert torch.allclose(iterates[0][0], crown_lo, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_tighter_than_crown_on_deep_relu_nets(norm):
    gains = []
    for seed in range(3):
        model = random_relu_mlp(seed, d=6, h=24, depth=4, out=4)
        graph = certnn.from_torch(model, (6,))
        x = torch.rand(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        spec = make_spec(graph, x, {"inf": 0.15, "2": 0.3, "1": 0.6}[norm], norm)
        lo_c, _, _ = bounds_for_spec(graph, spec, "crown", None, upper=False)
        lo_a, _, _ = bounds_for_spec(graph, spec, "alpha-crown", None, upper=False)
        assert (lo_a >= lo_c - 1e-9).all()
        gains.append((lo_a - lo_c).mean().item())
    assert min(gains) > 0, gains


def test_intermediate_optimisation_helps():
    model = random_relu_mlp(5, d=6, h=24, depth=4, out=4)
    graph = certnn.from_torch(model, (6,))
    x = torch.rand(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    spec = make_spec(graph, x, 0.15, "inf")
    full, _, _ = bounds_for_spec(graph, spec, "alpha-crown", None, upper=False)
    last, _, _ = bounds_for_spec(graph, spec, "alpha-crown", None, upper=False,
                                 alpha=AlphaConfig(intermediate=False))
    assert full.mean() > last.mean()


@pytest.mark.parametrize("arch", ["mlp-relu", "mlp-tanh", "cnn-mixed", "lstm"])
def test_deterministic_and_nearly_batch_independent(arch):
    """Each sample is optimised on its own (per-sample loss terms, elementwise Adam, per-sample early stop),
    so a batch changes a sample's bounds only through floating-point rounding of batched products, which
    the optimiser's nonsmooth steps can amplify (measured up to ~1e-6 relative). Runs are deterministic."""
    model, shape = _net(arch, 7)
    graph = certnn.from_torch(model, shape)
    x = torch.rand((5,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) - 0.5
    eps = torch.tensor([0.0, 0.05, 0.2, 0.4, 1.0], dtype=torch.float64)
    C = margin_matrix(model(x).argmax(1), 3)
    spec = make_spec(graph, x, eps, "inf")
    lo5, _, _ = bounds_for_spec(graph, spec, "alpha-crown", C, upper=False, alpha=FAST)
    again, _, _ = bounds_for_spec(graph, spec, "alpha-crown", C, upper=False, alpha=FAST)
    assert torch.equal(lo5, again)
    lo1 = torch.cat([bounds_for_spec(graph, make_spec(graph, x[i:i + 1], eps[i:i + 1], "inf"), "alpha-crown",
                                     C[i:i + 1], upper=False, alpha=FAST)[0] for i in range(5)])
    assert ((lo5 - lo1).abs() / (1 + lo1.abs())).max() <= 1e-3


def test_shared_parameters_and_stop_at_stay_sound():
    model, graph, spec, C = _problem("mlp-relu", 3)
    pts = sample_ball(spec, 200, torch.Generator().manual_seed(3))
    for cfg in (AlphaConfig(iterations=6, max_params=1), AlphaConfig(iterations=6, stop_at=-1e9),
                AlphaConfig(iterations=6, intermediate=False)):
        lo, hi, _ = bounds_for_spec(graph, spec, "alpha-crown", C, alpha=cfg)
        assert check_bounds_contain(model, pts, lo, hi, C) <= TOL


def test_zero_width_ball_is_exact():
    model, graph, spec, C = _problem("mlp-mixed", 4, eps=0.0)
    lo, hi, _ = bounds_for_spec(graph, spec, "alpha-crown", C, alpha=FAST)
    val = torch.einsum("bsk,bk->bs", C, model(spec.center))
    assert torch.allclose(lo, val, atol=1e-9) and torch.allclose(hi, val, atol=1e-9)


@pytest.mark.solvers
def test_inside_exact_milp_range_on_tiny_relu_nets():
    for seed in range(6):
        model = random_relu_mlp(seed, d=3, h=6, depth=2, out=3)
        graph = certnn.from_torch(model, (3,))
        x = torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        spec = make_spec(graph, x, 0.4, "inf")
        lo_m, hi_m, _ = bounds_for_spec(graph, spec, "milp", None)
        lo_a, hi_a, _ = bounds_for_spec(graph, spec, "alpha-crown", None)
        lo_c, hi_c, _ = bounds_for_spec(graph, spec, "crown", None)
        assert (lo_a <= lo_m + 1e-7).all() and (hi_a >= hi_m - 1e-7).all()
        assert (lo_a >= lo_c - 1e-9).all() and (hi_a <= hi_c + 1e-9).all()


def test_samples_leave_the_batch_when_proved_and_results_stay_sound():
    """stop_at=0: proved samples stop and leave the batch (compaction); every sample's bound is still
    sound, proved samples stay proved, and the others match an uncompacted run closely."""
    model = random_relu_mlp(11, d=6, h=24, depth=3, out=4)
    graph = certnn.from_torch(model, (6,))
    x = torch.rand(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    y = model(x).argmax(1)
    C = margin_matrix(y, 4)
    eps = torch.linspace(0.005, 0.2, 8, dtype=torch.float64)
    spec = make_spec(graph, x, eps, "inf")
    cfg = AlphaConfig(iterations=10)
    lo_all, _, _ = bounds_for_spec(graph, spec, "alpha-crown", C, upper=False, alpha=cfg)
    lo_stop, _, _ = bounds_for_spec(graph, spec, "alpha-crown", C, upper=False, alpha=cfg.replace(stop_at=0.0))
    proved = (lo_stop > 0).all(1)
    assert 0 < int(proved.sum()) < 8  # some samples leave early, some stay
    assert torch.equal(proved, (lo_all > 0).all(1))
    pts = sample_ball(spec, 200, torch.Generator().manual_seed(1))
    assert check_bounds_contain(model, pts, lo_stop, torch.full_like(lo_stop, float("inf")), C) <= TOL
    rest = ~proved
    assert ((lo_stop[rest] - lo_all[rest]).abs() / (1 + lo_all[rest].abs())).max() <= 1e-6


def test_radius_search_warm_starts_and_attack_never_beats_it():
    from certnn.attacks import attack_radius
    from certnn.certify.radius import CertifyConfig, Certifier, RadiusConfig

    model = random_relu_mlp(1, d=8, h=30, depth=3, out=4)
    x = torch.rand(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    search = RadiusConfig(bisection_steps=8)
    r_c = Certifier(model, CertifyConfig(method="crown"), (8,)).radius(x, y, search).certified_radius
    r_a = Certifier(model, CertifyConfig(method="alpha-crown", alpha=AlphaConfig(iterations=10)), (8,)).radius(
        x, y, search).certified_radius
    assert (r_a >= r_c * (1 - 1e-9)).all() and (r_a > r_c).any()
    att = attack_radius(model, x, y, "inf").radius
    assert (att >= r_a).all()
