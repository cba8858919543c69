"""Import parity (IR == module on concrete inputs) for Sequential, fx-traced modules, TorchScript and
factory files; clear errors for unsupported layers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.errors import ModelImportError, UnsupportedOpError
from certnn.graph.loading import load_model


class Normalised(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.1, 0.2, 0.3, 0.4]))
        self.register_buffer("std", torch.tensor([0.5, 0.5, 2.0, 1.0]))
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = (x - self.mean) / self.std
        h = torch.tanh(self.fc1(x))
        h = self.drop(h)
        h = torch.nn.functional.leaky_relu(h, 0.2) + 0.5 * h
        return self.fc2(torch.atan(h) * 2.0 - 1.0)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6)
        self.out = nn.Linear(12, 2)

    def forward(self, x):
        h = torch.relu(self.a(x)) + x
        z = torch.cat([h, torch.sigmoid(self.b(h))], dim=1)
        return self.out(z.flatten(1))


def _parity(m, shape):
    g = certnn.from_torch(m, shape)
    x = torch.randn((5,) + shape, dtype=torch.float64)
    m.eval()
    assert torch.allclose(g.forward(x), m.double()(x), atol=1e-10)
    return g


def test_sequential_nested():
    m = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(12, 7), nn.ReLU()), nn.Identity(), nn.Dropout(),
                      nn.Linear(7, 5), nn.Hardtanh(), nn.Linear(5, 2))
    g = _parity(m, (3, 4))
    assert [g.nodes[n].op.kind for n in g.order[1:]] == ["reshape", "linear", "relu", "linear", "hardtanh", "linear"]


def test_fx_module_with_constants_and_residual():
    _parity(Normalised(), (4,))
    _parity(Residual(), (6,))


def test_torchscript_roundtrip(tmp_path):
    m = nn.Sequential(nn.Linear(4, 6), nn.LeakyReLU(0.3), nn.Linear(6, 3))
    p = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(m), str(p))
    loaded = load_model(str(p))
    _parity(loaded, (4,))


def test_factory_and_weights(tmp_path):
    src = tmp_path / "net.py"
    src.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))\n")
    torch.manual_seed(1)
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    m = load_model(f"{src}:make", weights=str(tmp_path / "w.pt"))
    x = torch.randn(2, 3)
    assert torch.allclose(m(x), ref(x))
    with pytest.raises(ModelImportError, match="factory"):
        load_model(f"{src}:nope")
    torch.save({"bad": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ModelImportError, match="weights"):
        load_model(f"{src}:make", weights=str(tmp_path / "bad.pt"))


def test_pickled_module_needs_trust_flag(tmp_path):
    m = nn.Sequential(nn.Linear(2, 2))
    torch.save(m, tmp_path / "full.pt")
    with pytest.raises(ModelImportError, match="trust-pickle"):
        load_model(str(tmp_path / "full.pt"))
    got = load_model(str(tmp_path / "full.pt"), trust_pickle=True)
    assert isinstance(got, nn.Module)


def test_unsupported_layer_names_itself():
    m = nn.Sequential(nn.Linear(3, 3), nn.GELU(), nn.Linear(3, 2))
    with pytest.raises(UnsupportedOpError) as e:
        certnn.from_torch(m, (3,))
    assert "GELU" in str(e.value) and "nn.Linear" in str(e.value) and "at 1" in str(e.value)

    class Bad(nn.Module):
        def forward(self, x):
            return torch.exp(x)

    with pytest.raises(UnsupportedOpError, match="exp"):
        certnn.from_torch(Bad(), (3,))


def test_shape_mismatch_is_clear():
    m = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ModelImportError, match="shape"):
        certnn.from_torch(m, (4,))
