"""dtype="float32-sound" (engine/rounding.py, certify/precision.py): float32 bounds widened by a priori
rounding-error bounds contain the float64 bounds and every sampled output, on MLPs (ReLU, tanh, sigmoid),
CNNs and RNNs over many seeds; on a network built to cancel catastrophically, plain float32 CROWN is
demonstrably unsound (a lower bound above the exact minimum) and the sound mode is not."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.errors import ConfigError
from certnn.testing.nets import random_cnn, random_mlp, recurrent_classifier
from certnn.testing.soundness import sample_ball
from certnn.specs.lp import LpBall


def _f32(model: nn.Module) -> nn.Module:
    """float32 weights (float32-sound certifies the network whose weights are float32 numbers)."""
    return model.float()


def _check(model: nn.Module, x: torch.Tensor, eps: float, norm: str, method: str, seed: int) -> None:
    b64 = certnn.compute_bounds(model, x, eps=eps, norm=norm, method=method, dtype=torch.float64)
    b32 = certnn.compute_bounds(model, x, eps=eps, norm=norm, method=method, dtype="float32-sound")
    assert b32.lower.dtype == torch.float32
    lo, hi = b32.lower.double(), b32.upper.double()
    # max pooling's lines are chosen from its inputs' intervals (not monotone in them): the widened
    # intervals may pick other, equally sound lines, so containment of float64's bounds is not implied
    if not any(isinstance(m, nn.MaxPool2d) for m in model.modules()):
        assert (lo <= b64.lower).all(), f"seed {seed}: float32-sound lower above float64's"
        assert (hi >= b64.upper).all(), f"seed {seed}: float32-sound upper below float64's"
    # sampled points of the (float64) set
    spec = LpBall.make(x.double(), eps, norm)
    g = torch.Generator().manual_seed(seed)
    pts = sample_ball(spec, 64, g)  # (B, n, *in)
    B, n = pts.shape[:2]
    m64 = model.double()
    with torch.no_grad():
        out = m64(pts.reshape((B * n,) + pts.shape[2:])).reshape(B, n, -1)
    model.float()
    ok = (out >= lo.unsqueeze(1) - 1e-12) & (out <= hi.unsqueeze(1) + 1e-12)
    assert ok.all(), f"seed {seed}: a sampled output escapes"
    # the widening is small under L-inf: at most 1e-3 of the bounds' scale (under L2 / L1 the sound mode
    # has no exact affine-chain bounds of the first layers yet, so IBP-style intermediates are looser)
    if norm == "inf":
        scale = 1 + b64.upper.abs().amax() + b64.lower.abs().amax()
        assert ((b64.lower - lo).amax() / scale) < 1e-3


@pytest.mark.parametrize("seed", range(12))
def test_mlps_contain_float64_bounds(seed):
    act = ["relu", "tanh", "sigmoid", None][seed % 4]
    model, d = random_mlp(seed, act)
    model = _f32(model)
    x = torch.rand(3, d, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    method = ["crown", "fastlin", "crown-ibp", "ibp"][seed % 4]
    _check(model, x, 0.05 + 0.05 * (seed % 3), ["inf", "2", "1"][seed % 3], method, seed)


def _cnn_seeds(count: int) -> list[int]:
    """Seeds of random CNNs without BatchNorm (folded BN has float64 parameters: the sound mode refuses)."""
    out = []
    for s in range(200):
        m, _ = random_cnn(s, "relu" if s % 2 == 0 else None)
        if not any(isinstance(x, nn.BatchNorm2d) for x in m.modules()):
            out.append(s)
        if len(out) == count:
            break
    return out


@pytest.mark.parametrize("seed", _cnn_seeds(6))
def test_cnns_contain_float64_bounds(seed):
    model, shape = random_cnn(seed, "relu" if seed % 2 == 0 else None)
    model = _f32(model.eval())
    x = torch.rand((2,) + tuple(shape), generator=torch.Generator().manual_seed(seed))
    _check(model, x, 0.02, "inf", "crown", seed)


@pytest.mark.parametrize("seed,kind", [(0, "rnn"), (1, "rnn"), (2, "lstm"), (3, "lstm")])
def test_rnns_contain_float64_bounds(seed, kind):
    torch.manual_seed(seed)
    model = recurrent_classifier(kind, 3, 8, 3).eval()
    x = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(seed))
    _check(model, x, 0.05, "inf", "crown", seed)


def _cancelling_net(width: int = 64, seed: int = 0) -> nn.Sequential:
    """A linear network whose output is a small difference of large float32 numbers: weights of scale 2^12
    in the middle layer with a head that cancels them up to a small random part."""
    g = torch.Generator().manual_seed(seed)
    l1 = nn.Linear(8, width)
    l2 = nn.Linear(width, width)
    l3 = nn.Linear(width, 16)
    with torch.no_grad():
        l1.weight.copy_(torch.randn(width, 8, generator=g))
        l1.bias.copy_(torch.randn(width, generator=g))
        big = torch.randn(width, width, generator=g) * 4096
        l2.weight.copy_(big)
        l2.bias.copy_(torch.randn(width, generator=g) * 4096)
        l3.weight.copy_(torch.randn(16, width, generator=g))
        l3.bias.copy_(torch.randn(16, generator=g) * 4096 * 8)
    return nn.Sequential(l1, l2, l3).float()


def test_plain_float32_is_unsound_where_sound_mode_is_not():
    """A linear network: CROWN's float64 bounds are the exact extremes over the box (up to float64
    rounding), so a float32 lower bound above them is an unsound bound."""
    model = _cancelling_net()
    x = torch.rand(16, 8, generator=torch.Generator().manual_seed(1))
    b64 = certnn.compute_bounds(model, x, eps=0.01, method="crown", dtype=torch.float64)
    f32 = certnn.compute_bounds(model, x, eps=0.01, method="crown", dtype=torch.float32)
    s32 = certnn.compute_bounds(model, x, eps=0.01, method="crown", dtype="float32-sound")
    slack = 1e-9 * (1 + b64.lower.abs())
    assert (f32.lower.double() > b64.lower + slack).any(), "plain float32 happened to be sound here"
    assert (f32.upper.double() < b64.upper - slack).any()
    assert (s32.lower.double() <= b64.lower).all() and (s32.upper.double() >= b64.upper).all()
    # the exact minimum is attained at a vertex: the sound mode's lower bound stays below it
    A = model[2].weight.double() @ model[1].weight.double() @ model[0].weight.double()
    c = model[2].weight.double() @ (model[1].weight.double() @ model[0].bias.double() + model[1].bias.double()) \
        + model[2].bias.double()
    exact_min = x.double() @ A.T + c - 0.01 * A.abs().sum(1)
    assert (s32.lower.double() <= exact_min).all()
    assert (f32.lower.double() > exact_min + slack).any()


def test_sound_mode_contains_the_float64_input_set():
    """Centres that are not float32 numbers: the float32 ball is widened to contain the float64 one."""
    from certnn.certify.precision import sound_inputs

    x = torch.rand(4, 10, dtype=torch.float64)
    x32, eps32, clip32 = sound_inputs(x, 0.1, "2", (0.0, 1.0), None, None)
    d = torch.linalg.vector_norm(x - x32.double(), dim=1)
    assert (eps32.double() >= 0.1 + d).all()
    assert clip32[0].item() <= 0.0 and clip32[1].item() >= 1.0
    _, eps_inf, _ = sound_inputs(x, 1 / 3, "inf", None, None, None)
    assert (eps_inf.double() >= 1 / 3 + (x - x.float().double()).abs().amax(1)).all()


def test_sound_mode_refuses_what_it_does_not_cover():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    with torch.no_grad():
        model[0].weight.add_(1e-12)  # float64 weights: not float32 numbers
    d = 4
    x = torch.rand(2, d)
    with pytest.raises(ConfigError, match="float32 numbers"):
        certnn.compute_bounds(model, x, eps=0.1, dtype="float32-sound")
    model = model.float()
    with pytest.raises(ConfigError, match="float32-sound covers"):
        certnn.compute_bounds(model, x, eps=0.1, method="deepz", dtype="float32-sound")
    with pytest.raises(ConfigError, match="unknown dtype"):
        certnn.compute_bounds(model, x, eps=0.1, dtype="float16")


def test_certifier_radius_in_sound_mode_is_below_float64s():
    model, d = random_mlp(3, "relu")
    model = model.float()
    x = torch.rand(6, d, generator=torch.Generator().manual_seed(0)).double()
    y = model.double()(x).argmax(1)
    model.float()
    cfg = certnn.CertifyConfig(method="crown")
    r64 = certnn.Certifier(model, cfg, (d,)).radius(x, y, certnn.RadiusConfig(bisection_steps=8)).certified_radius
    r32 = certnn.Certifier(model, cfg, (d,), dtype="float32-sound").radius(
        x, y, certnn.RadiusConfig(bisection_steps=8)).certified_radius
    assert (r32 <= r64 * (1 + 1e-3) + 1e-12).all()
    assert (r32 > 0).sum() == (r64 > 0).sum()
