"""Bounds and radii on every device present (`device` fixture: cpu, and cuda with a GPU; `make test-gpu`
runs these on cuda only): the same numbers as on the cpu, results on the asked device, no hidden
transfer errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.device import resolve_device
from certnn.errors import ConfigError
from certnn.testing.nets import random_cnn, recurrent_classifier


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))


@pytest.mark.parametrize("method", ["ibp", "crown", "fastlin", "crown-ibp", "alpha-crown"])
@pytest.mark.parametrize("dtype", [torch.float64, "float32-sound"])
def test_bounds_on_device_match_cpu(device, method, dtype):
    _same_bounds(device, method, dtype)


@pytest.mark.parametrize("method", ["deepz", "certrnn", "lipschitz"])
def test_zonotope_and_lipschitz_bounds_on_device(device, method):
    _same_bounds(device, method, torch.float64)


def _same_bounds(device, method, dtype):
    model = _mlp()
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(1))
    ref = certnn.compute_bounds(model, x, eps=0.05, method=method, dtype=dtype, device="cpu")
    got = certnn.compute_bounds(model, x, eps=0.05, method=method, dtype=dtype, device=device)
    assert got.lower.device.type == torch.device(device).type
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert torch.allclose(got.lower.cpu().double(), ref.lower.double(), atol=tol, rtol=tol)
    assert torch.allclose(got.upper.cpu().double(), ref.upper.double(), atol=tol, rtol=tol)


def test_cnn_bounds_on_device(device):
    model, shape = random_cnn(1, "relu")
    x = torch.rand((2,) + tuple(shape), generator=torch.Generator().manual_seed(0))
    ref = certnn.compute_bounds(model.eval(), x, eps=0.01, method="crown", device="cpu")
    got = certnn.compute_bounds(model, x, eps=0.01, method="crown", device=device)
    assert torch.allclose(got.lower.cpu(), ref.lower, atol=1e-8)


@pytest.mark.parametrize("method", ["crown", "alpha-crown", "lipschitz"])
def test_radius_on_device(device, method):
    model = _mlp()
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    cfg = certnn.CertifyConfig(method=method)
    search = certnn.RadiusConfig(bisection_steps=6)
    ref = certnn.Certifier(model, cfg, (6,)).radius(x, y, search).certified_radius
    got = certnn.Certifier(model, cfg, (6,), device=device).radius(x, y, search).certified_radius
    assert torch.allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("method", ["popqorn", "certrnn", "crown"])
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_recurrent_per_frame_balls_on_device(device, method, kind):
    torch.manual_seed(0)
    model = recurrent_classifier(kind, 3, 5, 3).double().eval()
    x = torch.rand(2, 4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    kw = dict(eps=0.05, norm="inf", frame_norm="2", method=method)
    ref = certnn.compute_bounds(model, x, device="cpu", **kw)
    got = certnn.compute_bounds(model, x, device=device, **kw)
    assert torch.allclose(got.lower.cpu(), ref.lower, atol=1e-9)


def test_device_names():
    assert resolve_device(None).type == "cpu" and resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")


def test_complete_certification_on_device(device):
    """Samples CROWN leaves open go to branch and bound (certify/complete.py) on the device: the same verdicts
    as on the cpu (the tiny net is decided well inside the time limit)."""
    from certnn.certify.complete import CompleteConfig

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    x = torch.rand(6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = model(x).argmax(1)
    cfg = certnn.CertifyConfig(method="crown", complete=CompleteConfig(timeout=20.0))
    eps = 1.2 * certnn.certified_radius(model, x, y, method="crown").certified_radius  # beyond CROWN's reach
    ref = certnn.Certifier(model, cfg, (6,)).certify(x, y, eps)
    got = certnn.Certifier(model, cfg, (6,), device=device).certify(x, y, eps)
    assert "unknown" not in ref.status and got.status == ref.status
