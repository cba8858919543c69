"""certrnn / deepz on recurrent models as users write them (imported by graph/recurrent.py): nn.RNN
(tanh, relu), nn.LSTM, nn.GRU with 1-3 layers, bidirectional, pooled or last-step heads, cells in a user
loop, and an nn.Embedding in front (certified over the embedded sequence). Sampled points and PGD stay
inside the bounds for L∞/L2/L1 balls on all frames, one frame, a list of frames, and per-frame eps."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.certify.targets import margin_matrix
from certnn.graph.recurrent import embed_tokens
from certnn.testing import check_bounds_contain, pgd_against_bounds, sample_ball
from certnn.testing.nets import recurrent_classifier

torch.set_num_threads(1)
DT = torch.float64
TOL = 1e-9


def _head(kind, d, H, pool="last", num_layers=1, bidirectional=False, nonlinearity="tanh"):
    """nn.RNN / LSTM / GRU (batch first) and a linear head (3 classes) on the last frame or the frames' mean."""
    name = f"rnn_{nonlinearity}" if kind == "RNN" else kind
    return recurrent_classifier(name, d, H, 3, layers=num_layers, bidirectional=bidirectional, head=pool)


class CellLoop(nn.Module):
    def __init__(self, kind, d, H, T):
        super().__init__()
        self.cell = getattr(nn, kind + "Cell")(d, H)
        self.kind, self.T, self.H = kind, T, H
        self.fc = nn.Linear(H, 3)

    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.H)
        s = (h, torch.zeros_like(h)) if self.kind == "LSTM" else h
        for t in range(self.T):
            s = self.cell(x[:, t], s)
        return self.fc(s[0] if self.kind == "LSTM" else s)


class Text(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 4)
        self.rnn = nn.GRU(4, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, tokens):
        out, _ = self.rnn(self.emb(tokens))
        return self.fc(out[:, -1])


def _scaled(model, s=1.7):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(s)
    return model.double().eval()


CASES = [
    ("RNN", dict(num_layers=1)),
    ("RNN", dict(num_layers=2, nonlinearity="relu")),
    ("RNN", dict(num_layers=3)),
    ("LSTM", dict(num_layers=1)),
    ("LSTM", dict(num_layers=2)),
    ("LSTM", dict(num_layers=1, bidirectional=True)),
    ("GRU", dict(num_layers=1)),
    ("GRU", dict(num_layers=2, bidirectional=True)),
]


def _scale(T, d, mode):
    if mode == "all":
        return None
    s = torch.zeros(T, d, dtype=DT)
    if mode == "one":
        s[T // 2] = 1.0
    elif mode == "list":
        s[0] = s[T - 1] = 1.0
    else:
        s[:] = torch.linspace(0.5, 1.5, T, dtype=DT).unsqueeze(1)
    return s


def _check(graph, x, eps, norm, method, scale=None, pgd=True, seed=0):
    spec = make_spec(graph, x, eps, norm, None, scale)
    y = graph(x).argmax(1)
    for C in (None, margin_matrix(y, 3)):
        lo, hi, _ = bounds_for_spec(graph, spec, method, C)
        assert torch.isfinite(lo).all() and (lo <= hi).all()
        pts = sample_ball(spec, 150, torch.Generator().manual_seed(seed))
        v = check_bounds_contain(graph.forward, pts, lo, hi, C)
        assert v <= TOL, f"{method}/{norm}: sampled point outside by {v}"
        if pgd and C is not None:
            v = pgd_against_bounds(graph.forward, spec, lo, hi, C, steps=12, restarts=1, seed=seed)
            assert v <= TOL, f"{method}/{norm}: PGD point outside by {v}"


@pytest.mark.parametrize("method,norm", [("certrnn", "inf"), ("certrnn", "2"), ("certrnn", "1"), ("deepz", "inf"),
                                         ("deepz", "2")])
@pytest.mark.parametrize("kind,kw", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_imported_recurrent_sound(method, norm, kind, kw):
    torch.manual_seed(len(kind) + kw.get("num_layers", 1))
    g = torch.Generator().manual_seed(hash((kind, str(kw))) % 1000)
    T, d, H = int(torch.randint(2, 5, (1,), generator=g)), 3, int(torch.randint(3, 7, (1,), generator=g))
    model = _scaled(_head(kind, d, H, pool="mean" if kw.get("bidirectional") else "last", **kw))
    graph = certnn.from_torch(model, (T, d))
    x = torch.randn(2, T, d, generator=g, dtype=DT)
    for i, frames in enumerate(["all", "one", "list", "weights"]):
        _check(graph, x, [0.1, 0.4, 0.2, 0.05][i], norm, method, _scale(T, d, frames), pgd=i % 2 == 0, seed=i)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_cells_in_user_loop(kind):
    torch.manual_seed(3)
    model = _scaled(CellLoop(kind, 3, 4, 3))
    graph = certnn.from_torch(model, (3, 3))
    x = torch.randn(2, 3, 3, dtype=DT)
    for norm in ("inf", "2"):
        _check(graph, x, 0.2, norm, "certrnn")


def test_embedded_tokens():
    torch.manual_seed(4)
    model = _scaled(Text())
    graph = certnn.from_torch(model, (6, 4), embedded=True)
    e = embed_tokens(model, torch.randint(0, 20, (2, 6)))
    for norm, frames in (("inf", "one"), ("2", "all"), ("1", "list")):
        _check(graph, e, 0.3, norm, "certrnn", _scale(6, 4, frames))


def test_certrnn_radius_on_imported_lstm_and_not_looser_than_ibp():
    torch.manual_seed(5)
    model = _head("LSTM", 3, 6, num_layers=1).double().eval()
    graph = certnn.from_torch(model, (5, 3))
    x = torch.randn(4, 5, 3, dtype=DT)
    y = graph(x).argmax(1)
    r_z = certnn.certified_radius(graph, x, y, norm="inf", method="certrnn").certified_radius
    r_i = certnn.certified_radius(graph, x, y, norm="inf", method="ibp").certified_radius
    assert (r_z > 0).all()
    # both searches bisect to a relative precision of ~2^-14 in log space
    assert (r_z >= r_i * (1 - 1e-3)).all() and (r_z > r_i * 1.05).any()


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("seed", [0, 2])
def test_certrnn_bounds_do_not_depend_on_the_batch(cell, seed):
    """A sample's bounds are the same in a batch of 6 and alone: rounding noise between batch sizes must not
    flip the choice between (nearly) tied Cert-RNN tilts (it did, moving bounds by ~1e-5)."""
    torch.manual_seed(seed)
    g = certnn.from_torch(_head(cell, 6, 8).eval(), (5, 6))
    x = torch.randn(6, 5, 6, dtype=torch.float64)
    lo6, _, _ = bounds_for_spec(g, make_spec(g, x, 0.05, "inf", None, None), "certrnn", None, upper=False)
    lo1 = torch.cat([bounds_for_spec(g, make_spec(g, x[i:i + 1], 0.05, "inf", None, None), "certrnn", None,
                                     upper=False)[0] for i in range(6)])
    assert (lo6 - lo1).abs().max() <= 1e-12
