"""Import parity of recurrent models (nn.RNN/LSTM/GRU and cells, unrolled over time) and clear errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from certnn.errors import ModelImportError, UnsupportedOpError
from certnn.graph.from_torch import from_torch, run_module
from certnn.graph.recurrent import embed_tokens
from certnn.ops.product import SigmoidMul, SigmoidTanhMul

torch.set_num_threads(1)


def _parity(model, shape, time_major=False, embedded=False, seed=0):
    model = model.double().eval()
    g = from_torch(model, shape, time_major=time_major, embedded=embedded)
    gen = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn((6,) + shape, generator=gen, dtype=torch.float64)
    want = run_module(model, x, embedded=embedded, time_major=time_major)
    got = g.forward(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-10, rtol=1e-10), (got - want).abs().max()
    return g


class LastStep(nn.Module):
    def __init__(self, kind, d, H, C=3, pool="last", **kw):
        super().__init__()
        self.rnn = getattr(nn, kind)(d, H, **kw)
        D = 2 if kw.get("bidirectional") else 1
        self.fc = nn.Linear(D * H, C)
        self.pool = pool

    def forward(self, x):
        out, _ = self.rnn(x)
        if self.pool == "mean":
            return self.fc(out.mean(dim=1) if self.rnn.batch_first else out.mean(0))
        if self.pool == "sum":
            return self.fc(torch.sum(out, 1) / 3.0)
        return self.fc(out[:, -1] if self.rnn.batch_first else out[-1])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kw", [dict(batch_first=True), dict(batch_first=True, num_layers=2),
                                dict(batch_first=True, num_layers=3, bidirectional=True),
                                dict(batch_first=True, bias=False, bidirectional=True),
                                dict(batch_first=False, num_layers=2)])
def test_layer_parity(kind, kw):
    torch.manual_seed(1)
    _parity(LastStep(kind, 3, 5, **kw), (4, 3), time_major=not kw["batch_first"])


def test_relu_rnn_and_pools():
    torch.manual_seed(2)
    _parity(LastStep("RNN", 2, 4, nonlinearity="relu", batch_first=True, num_layers=2), (5, 2))
    _parity(LastStep("LSTM", 2, 4, pool="mean", batch_first=True), (5, 2))
    _parity(LastStep("GRU", 2, 4, pool="sum", batch_first=True, bidirectional=True), (3, 2))
    _parity(LastStep("RNN", 2, 4, pool="mean", batch_first=False), (3, 2), time_major=True)


def test_single_step_and_nodes_are_fused():
    torch.manual_seed(3)
    g = _parity(LastStep("LSTM", 3, 4, batch_first=True), (1, 3))
    kinds = [g.nodes[n].op.kind for n in g.order]
    assert "sigmoid_tanh_mul" in kinds and kinds.count("linear") == 2  # one input projection + the head
    g = _parity(LastStep("LSTM", 3, 4, batch_first=True), (6, 3))
    ops = [g.nodes[n].op for n in g.order]
    assert sum(isinstance(o, SigmoidMul) for o in ops) == 5  # f * c for t >= 1
    assert sum(isinstance(o, SigmoidTanhMul) for o in ops) == 12
    assert sum(o.kind == "linear" for o in ops) == 1 + 5 + 1  # x-projection, W_hh for t >= 1, head


class HiddenState(nn.Module):
    def __init__(self, kind, bidir=False, layers=2):
        super().__init__()
        self.kind = kind
        self.rnn = getattr(nn, kind)(3, 4, num_layers=layers, batch_first=True, bidirectional=bidir)
        self.bidir = bidir
        self.fc = nn.Linear(8 if bidir else 4, 2)

    def forward(self, x):
        if self.kind == "LSTM":
            out, (h, c) = self.rnn(x)
            z = h[-1] + c[-1]
        else:
            out, h = self.rnn(x)
            z = h[-1]
        if self.bidir:
            z = torch.cat([h[-2], h[-1]], dim=1)
        return self.fc(z)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidir", [False, True])
def test_hidden_state_outputs(kind, bidir):
    torch.manual_seed(4)
    _parity(HiddenState(kind, bidir), (4, 3))


class HSqueeze(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h0 = x.new_zeros(1, x.size(0), 4)
        _, h = self.rnn(x, h0)
        return self.fc(h.squeeze(0))


class HPermute(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=False, num_layers=2)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):  # batch-first input, permuted to time-major for the layer
        out, (h, c) = self.rnn(x.permute(1, 0, 2))
        z = h.transpose(0, 1).reshape(x.size(0), -1)
        return self.fc(z) + self.fc(torch.cat([out[-1], out[0]], dim=1))


def test_h0_zeros_squeeze_and_permutes():
    torch.manual_seed(5)
    _parity(HSqueeze(), (3, 3))
    _parity(HPermute(), (3, 3))


class CellLoop(nn.Module):
    def __init__(self, kind, T=3, zeros=True):
        super().__init__()
        self.cell = getattr(nn, kind + "Cell")(3, 4)
        self.cell2 = getattr(nn, kind + "Cell")(4, 4)
        self.kind, self.T, self.zeros = kind, T, zeros
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if self.zeros:
            h = x.new_zeros(x.shape[0], 4)
            s = (h, torch.zeros_like(h)) if self.kind == "LSTM" else h
            s2 = s
        for t in range(self.T):
            if t == 0 and not self.zeros:
                s = self.cell(x[:, t])
                s2 = self.cell2(s[0] if self.kind == "LSTM" else s)
                continue
            s = self.cell(x[:, t], s)
            s2 = self.cell2(s[0] if self.kind == "LSTM" else s, s2)
        return self.fc(s2[0] if self.kind == "LSTM" else s2)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("zeros", [True, False])
def test_cells_in_a_loop(kind, zeros):
    torch.manual_seed(6)
    _parity(CellLoop(kind, zeros=zeros), (3, 3))


class TextModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 5)
        self.rnn = nn.LSTM(5, 4, batch_first=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, tokens):
        out, _ = self.rnn(self.emb(tokens))
        return self.fc(out[:, -1])


def test_embedding_split_and_error():
    torch.manual_seed(7)
    m = TextModel().double()
    with pytest.raises(ModelImportError, match="embedded=True"):
        from_torch(m, (6, 5))
    g = _parity(m, (6, 5), embedded=True)
    tokens = torch.randint(0, 20, (4, 6))
    e = embed_tokens(m, tokens)
    assert e.shape == (4, 6, 5)
    with torch.no_grad():
        assert torch.allclose(g.forward(e), m(tokens), atol=1e-10)
    with pytest.raises(ModelImportError, match=r"\(T, 5\)"):
        from_torch(m, (6, 4), embedded=True)


class Bad(nn.Module):
    def __init__(self, what):
        super().__init__()
        self.what = what
        self.rnn = nn.LSTM(3, 4, batch_first=(what != "layout"), proj_size=2 if what == "proj" else 0)
        self.h0 = nn.Parameter(torch.ones(1, 1, 4))
        self.fc = nn.Linear(4 if what != "proj" else 2, 2)

    def forward(self, x):
        if self.what == "h0":
            out, _ = self.rnn(x, (self.h0.expand(1, x.size(0), 4), self.h0.expand(1, x.size(0), 4)))
        else:
            out, (h, c) = self.rnn(x)
        if self.what == "hn":
            return self.fc(h)
        if self.what == "max":
            return self.fc(out.max(1)[0])
        return self.fc(out[:, -1] if self.what != "layout" else out[-1])


@pytest.mark.parametrize("what,err,match", [
    ("layout", ModelImportError, "time_major=True"),
    ("proj", UnsupportedOpError, "proj_size"),
    ("hn", UnsupportedOpError, "h_n"),
    ("max", UnsupportedOpError, "max"),
])
def test_clear_errors(what, err, match):
    with pytest.raises(err, match=match):
        from_torch(Bad(what), (3, 3))


def test_nonzero_initial_state_rejected():
    with pytest.raises((UnsupportedOpError, ModelImportError)):
        from_torch(Bad("h0"), (3, 3))


def test_recurrent_layer_in_sequential_rejected_and_wrong_sizes():
    with pytest.raises(UnsupportedOpError, match="unpacks"):
        from_torch(nn.Sequential(nn.RNN(3, 4)), (3, 3))
    with pytest.raises(ModelImportError, match="input_size"):
        from_torch(LastStep("GRU", 3, 4, batch_first=True), (3, 2))
    with pytest.raises(ModelImportError, match="sequence"):
        from_torch(LastStep("GRU", 3, 4, batch_first=True), (3,))


class CellStack(nn.Module):
    """A user loop collecting the states with torch.stack, then mean-pooling over time."""

    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(3, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.cell(x[:, 0])
        hs = [h]
        for t in range(1, 4):
            h = self.cell(x[:, t], h)
            hs.append(h)
        return self.fc(torch.stack(hs, dim=1).mean(1))


def test_cell_loop_with_stack():
    torch.manual_seed(8)
    _parity(CellStack(), (4, 3))
