"""`device=` of the attacks, CLEVER and the API entry points (attacks/placement.py): on every device present
(`device` fixture: cpu, and cuda with a GPU) the same results as on the cpu, returned on the caller's device;
the caller's model is never moved; `--device cuda` without a GPU is refused (exit 2) before any model loads."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.attacks import PGDConfig, attack_radius, pgd_attack
from certnn.attacks.placement import model_on, result_on, target_device, tensor_on
from certnn.certify.bounds import to_graph
from certnn.cli.main import main
from certnn.estimate import CleverConfig, clever_scores


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3)).double()


def _data(net):
    x = torch.rand(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    return x, net(x).argmax(1)


def test_pgd_on_device_matches_cpu(device):
    net = _net()
    x, y = _data(net)
    cfg = PGDConfig(steps=20, restarts=2, seed=1)
    ref = pgd_attack(net, x, y, 0.3, "inf", cfg, clip=(0.0, 1.0))
    got = pgd_attack(net, x, y, 0.3, "inf", cfg, clip=(0.0, 1.0), device=device)
    assert got.x_adv.device == x.device and got.success.device == x.device
    assert torch.equal(got.success, ref.success)
    assert torch.allclose(got.margin, ref.margin, atol=1e-9)
    assert all(p.device.type == "cpu" for p in net.parameters())  # the caller's model stays where it was


def test_attack_radius_on_device_matches_cpu(device):
    net = _net()
    x, y = _data(net)
    graph = to_graph(net, (5,))
    cfg = PGDConfig(steps=15, restarts=1, seed=0)
    ref = attack_radius(graph, x, y, "2", cfg, eps_max=4.0, steps=6)
    got = attack_radius(graph, x, y, "2", cfg, eps_max=4.0, steps=6, device=device)
    assert got.radius.device == x.device
    assert torch.allclose(got.radius, ref.radius, rtol=1e-9)


def test_clever_on_device_matches_cpu(device):
    net = _net()
    x, y = _data(net)
    cfg = CleverConfig(n_batches=8, n_samples=16, seed=0)
    ref = clever_scores(net, x, y, "2", cfg)
    got = clever_scores(net, x, y, "2", cfg, device=device)
    assert got.device.startswith(torch.device(device).type)
    assert got.clever_estimate.device.type == "cpu"
    assert torch.allclose(got.clever_estimate, ref.clever_estimate, rtol=1e-6, equal_nan=True)


def test_api_entry_points_take_dtype_and_device(device):
    net = _net()
    x, y = _data(net)
    search = certnn.RadiusConfig(bisection_steps=5)
    ref = certnn.certified_radius(net, x, y, norm="inf", search=search)
    got = certnn.certified_radius(net, x, y, norm="inf", search=search, device=device)
    assert torch.allclose(got.certified_radius, ref.certified_radius, rtol=1e-9)
    sound = certnn.certified_radius(net, x, y, norm="inf", search=search, dtype="float32-sound", device=device)
    assert (sound.certified_radius <= ref.certified_radius * (1 + 1e-6)).all()  # float32-sound is never looser
    r = certnn.certify(net, x, y, 1e-4, device=device)
    assert r.certified.device.type == "cpu"


def test_placement_helpers():
    net = _net()
    x = torch.zeros(2, 5, dtype=torch.float64)
    assert target_device(x, None) is None and target_device(x, "cpu") is None
    assert model_on(net, torch.device("cpu")) is net  # already there: no copy
    assert tensor_on((x, 1.0), torch.device("cpu"))[1] == 1.0
    res = pgd_attack(net, x, torch.zeros(2, dtype=torch.long), 0.1, "inf", PGDConfig(steps=2, restarts=1))
    assert result_on(res, torch.device("cpu")).x_adv.device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
@pytest.mark.parametrize("cmd", ["attack", "clever", "radius", "certify", "report", "compare", "train", "demo", "words"])
def test_cli_cuda_without_gpu_refused_before_loading(cmd, capsys):
    # the model file does not exist: the device error must come first (no model was loaded)
    argv = {"attack": ["attack", "--model", "missing.py:f", "--data", "missing.npz"],
            "clever": ["clever", "--model", "missing.py:f", "--data", "missing.npz"],
            "radius": ["radius", "--model", "missing.py:f", "--data", "missing.npz"],
            "certify": ["certify", "--model", "missing.py:f", "--data", "missing.npz", "--eps", "0.1"],
            "report": ["report", "--model", "missing.py:f", "--data", "missing.npz", "--out", "nowhere"],
            "compare": ["compare", "--models", "missing.pt", "--task", "digits", "--samples", "2"],
            "train": ["train", "--task", "digits", "--out", "nowhere.pt"],
            "demo": ["demo", "--out", "nowhere"],
            "words": ["words", "--model", "missing.pt", "--text", "a b"]}[cmd]
    assert main(argv + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "CUDA" in err and "missing" not in err
