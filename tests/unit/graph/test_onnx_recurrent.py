"""ONNX RNN / LSTM / GRU: torch.onnx.export (both exporters) and hand-built MATLAB-style graphs import into
the unrolled IR with parity against onnxruntime, and the torch exports get the graph and the certified radii
of the nn.LSTM / nn.GRU they came from."""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import certnn  # noqa: E402
from certnn.errors import ModelImportError, UnsupportedOpError  # noqa: E402
from certnn.graph.from_onnx import SymbolicShapeError, onnx_to_model  # noqa: E402
from onnx_rnn_models import make_rnn_model  # noqa: E402

torch.set_num_threads(1)


class SeqHead(nn.Module):
    def __init__(self, kind="lstm", layers=1, bidir=False, batch_first=True, head="last", nonlinearity="tanh",
                 d=3, H=5, K=3):
        super().__init__()
        kw = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = cls(d, H, layers, batch_first=batch_first, bidirectional=bidir, **kw)
        self.fc = nn.Linear(H * (2 if bidir else 1), K)
        self.batch_first, self.head = batch_first, head

    def forward(self, x):  # x: (B, T, d)
        if not self.batch_first:
            x = x.transpose(0, 1)
        out, _ = self.rnn(x)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return self.fc(out[:, -1] if self.head == "last" else out.mean(1))


def export(model, path, T=6, d=3, dynamo=False):
    kw = {} if dynamo else {"dynamic_axes": {"x": {0: "N"}}}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, T, d),), str(path), dynamo=dynamo, input_names=["x"],
                          output_names=["y"], **kw)
    return path


def _ort_parity(om, x):
    want = om.run_onnxruntime(x)
    got = om.graph.forward(torch.as_tensor(x, dtype=torch.float64)).reshape(len(x), -1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * (1 + np.abs(want).max()))


TORCH_CASES = [
    ("rnn", dict(nonlinearity="tanh")), ("rnn", dict(nonlinearity="relu")), ("lstm", {}), ("gru", {}),
    ("lstm", dict(bidir=True)), ("gru", dict(bidir=True, layers=2)), ("lstm", dict(layers=2)),
    ("rnn", dict(batch_first=False, layers=2, bidir=True)), ("lstm", dict(batch_first=False, head="mean")),
    ("gru", dict(batch_first=False)),
]


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("kind,kw", TORCH_CASES, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}"
                                                      for k, kw in TORCH_CASES])
def test_torch_export_parity(tmp_path, kind, kw, dynamo):
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    m = SeqHead(kind, **kw).eval()
    om = onnx_to_model(export(m, tmp_path / "m.onnx", dynamo=dynamo))  # parity with onnxruntime on import
    x = np.random.default_rng(1).uniform(-2, 2, size=(4, 6, 3)).astype(np.float32)
    _ort_parity(om, x)
    xt = torch.as_tensor(x, dtype=torch.float64)
    assert torch.allclose(om.graph.forward(xt), m.double()(xt), atol=1e-6)


HAND_CASES = [
    dict(kind="LSTM"), dict(kind="LSTM", layout=1), dict(kind="LSTM", direction="reverse"),
    dict(kind="LSTM", direction="bidirectional"), dict(kind="LSTM", clip=0.5, T=20, sym_T=False),
    dict(kind="LSTM", peep=True, c0="rand", h0="rand", batch=1), dict(kind="LSTM", input_forget=1, c0="rand", batch=1),
    dict(kind="LSTM", acts=["HardSigmoid", "Tanh", "Relu"]),
    dict(kind="LSTM", acts=["Sigmoid", "ScaledTanh", "Affine"], alpha=[0.8, 1.3], beta=[1.1, 0.2]),
    dict(kind="LSTM", h0="computed", c0="computed"), dict(kind="LSTM", seq=3, use="Y_last", batch=1),
    dict(kind="LSTM", seq=3, direction="bidirectional", use="Y_mean", sym_T=False, batch=1),
    dict(kind="LSTM", use="Y_c"), dict(kind="LSTM", h0="const", c0="zeros", layout=1, batch=1),
    dict(kind="LSTM", use="Y_mean", sym_T=False, direction="bidirectional", layout=1, clip=0.8),
    dict(kind="GRU"), dict(kind="GRU", lbr=1), dict(kind="GRU", lbr=0, h0="rand", batch=1),
    dict(kind="GRU", lbr=1, h0="rand", batch=1), dict(kind="GRU", clip=0.7, direction="bidirectional"),
    dict(kind="GRU", acts=["HardSigmoid", "LeakyRelu"], alpha=[0.3, 0.1], beta=[0.4]),
    dict(kind="GRU", h0="computed", lbr=0), dict(kind="GRU", h0="computed", lbr=1, layout=1),
    dict(kind="RNN"), dict(kind="RNN", acts=["Relu"]), dict(kind="RNN", acts=["Sigmoid", "Tanh"], direction="bidirectional"),
    dict(kind="RNN", acts=["LeakyRelu"], alpha=[0.2], clip=0.9), dict(kind="RNN", h0="rand", batch=1),
    dict(kind="RNN", seq=2, direction="reverse", use="Y_last", batch=1), dict(kind="RNN", batch=1, sym_T=False),
    dict(kind="LSTM", opset=7), dict(kind="GRU", opset=7, lbr=1),
]


@pytest.mark.parametrize("case", HAND_CASES, ids=["-".join(f"{k}={v}" for k, v in c.items()) for c in HAND_CASES])
def test_handbuilt_parity(case):
    T = case.get("T", 5)
    m = make_rnn_model(**case)
    om = onnx_to_model(m, input_shape=(T, 3))  # parity with onnxruntime on import
    x = np.random.default_rng(2).uniform(-2, 2, size=(3, T, 3)).astype(np.float32)
    _ort_parity(om, x)
    assert om.batch_axis == (1 if case.get("layout", 0) == 0 else 0)


def test_time_major_symbolic_length_needs_the_shape():
    m = make_rnn_model(kind="LSTM")  # x: [T, N, 3], T symbolic (MATLAB's layout)
    with pytest.raises(SymbolicShapeError, match="symbolic per-sample dimension.*--input-shape T,3") as e:
        onnx_to_model(m)
    assert e.value.complete(21) == (7, 3) and e.value.complete(20) is None
    for T in (2, 9):  # any length: the unrolling follows the given shape
        om = onnx_to_model(m, input_shape=(T, 3))
        assert om.graph.input_shape == (T, 3) and om.onnx_input_shape[0] == T
        x = np.random.default_rng(T).uniform(-1, 1, size=(2, T, 3))
        assert om.onnx_input(x).shape == (T, 2, 3)  # fed time-major to onnxruntime
    with pytest.raises(ModelImportError, match="differs from its fixed dimensions"):
        onnx_to_model(m, input_shape=(5, 4))
    with pytest.raises(ModelImportError, match="does not fit"):
        onnx_to_model(m, input_shape=(5, 3, 1))


def test_clear_errors_for_what_has_no_relaxation():
    with pytest.raises(UnsupportedOpError, match="activation 'Elu'.*HardSigmoid"):
        onnx_to_model(make_rnn_model(kind="RNN", acts=["Elu"]), input_shape=(5, 3))
    with pytest.raises(UnsupportedOpError, match="activation 'Softplus'"):
        onnx_to_model(make_rnn_model(kind="GRU", acts=["Sigmoid", "Softplus"]), input_shape=(5, 3))
    with pytest.raises(ModelImportError, match="sequence_lens 9 outside 1..5"):
        onnx_to_model(make_rnn_model(kind="LSTM", seq=9, batch=1), input_shape=(5, 3), check=False)
    with pytest.raises(ModelImportError, match="activations"):
        onnx_to_model(make_rnn_model(kind="RNN", acts=["Tanh"], direction="bidirectional"), input_shape=(5, 3))


def test_cli_errors_exit_2(tmp_path, capsys):
    from certnn.cli.main import main

    p = tmp_path / "elu.onnx"
    p.write_bytes(make_rnn_model(kind="RNN", acts=["Elu"], sym_T=False).SerializeToString())
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 5, 3), dtype=np.float32), y=np.zeros(2, dtype=np.int64))
    assert main(["radius", "--model", str(p), "--data", str(tmp_path / "d.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "activation 'Elu'" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("layers,bidir", [(1, False), pytest.param(2, True, marks=pytest.mark.slow)])
def test_same_graph_and_radii_as_the_torch_module(tmp_path, kind, dynamo, layers, bidir):
    """The ONNX export certifies with exactly the radii of the module (same nodes, same bias bits)."""
    if dynamo:
        pytest.importorskip("onnxscript")
    from certnn.certify.radius import RadiusConfig

    torch.manual_seed(3)
    T, d = 4, 3
    m = SeqHead(kind, layers=layers, bidir=bidir, d=d, H=4).eval()
    g_torch = certnn.from_torch(m, (T, d))
    g_onnx = onnx_to_model(export(m, tmp_path / "m.onnx", T=T, d=d, dynamo=dynamo)).graph
    assert len(g_onnx.order) <= len(g_torch.order)  # no extra nodes (the module's graph keeps a few dead ones)
    x = torch.rand(2, T, d, dtype=torch.float64) * 2 - 1
    y = g_torch.forward(x).argmax(1)
    search = RadiusConfig(bisection_steps=4 if layers == 1 else 8)
    for method, norm in (("popqorn", "2"), ("ibp", "2"), ("certrnn", "inf")):
        r1 = certnn.certified_radius(g_torch, x, y, norm=norm, method=method, search=search).certified_radius
        r2 = certnn.certified_radius(g_onnx, x, y, norm=norm, method=method, search=search).certified_radius
        assert torch.equal(r1, r2), (method, r1, r2)
        assert (r1 > 0).all()


def test_radius_cli_on_a_time_major_onnx_lstm(tmp_path, capsys):
    """MATLAB-style: time-major input with a symbolic sequence length; the data gives T."""
    import json

    from certnn.cli.main import main

    m = make_rnn_model(kind="LSTM", use="Y_h", K=3, seed=5)
    p = tmp_path / "matlab_lstm.onnx"
    p.write_bytes(m.SerializeToString())
    x = np.random.default_rng(0).uniform(0, 1, size=(4, 7, 3)).astype(np.float32)
    om = onnx_to_model(str(p), input_shape=(7, 3))
    y = om.run_onnxruntime(x).argmax(1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "r.json"
    assert main(["radius", "--model", str(p), "--data", str(tmp_path / "d.npz"), "--method", "popqorn,ibp",
                 "--norm", "2", "--bisection-steps", "3", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["samples"] == 4
    assert all(s["certified_radius"] > 0 for s in doc["samples"])


@pytest.mark.parametrize("opset", [7, 11, 13, 18, 21])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_opset_range(kind, opset):
    """certnn-vnnlib reports opsets 7..21: the recurrent ops (and the ops around them) import at both ends."""
    m = make_rnn_model(kind=kind, opset=opset, use="Y_last", batch=1)
    om = onnx_to_model(m, input_shape=(4, 3))
    _ort_parity(om, np.random.default_rng(opset).uniform(-1, 1, size=(2, 4, 3)).astype(np.float32))
