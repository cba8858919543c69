"""certnn.testing.nets' recurrent classifiers: the same parameters (same draws, same order) as the modules the
tests used to build by hand, forward = head on the last frame / on the mean of the frames, importable by
from_torch (its parity check runs on import), and clear errors for unknown kinds."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.testing.nets import LastFrameHead, MeanFrameHead, recurrent_classifier, recurrent_layer

CASES = [("rnn", 1, False), ("rnn_tanh", 2, True), ("rnn_relu", 1, False), ("lstm", 2, False), ("gru", 1, True),
         ("LSTM", 1, True), ("GRU", 2, False)]


def _by_hand(kind: str, d: int, h: int, k: int, layers: int, bi: bool, scale: float, vocab: int | None):
    """What the test modules did before: [embedding], the cell, scaled, then the head, in this order."""
    emb = nn.Embedding(vocab, d) if vocab else None
    name = kind.lower()
    if name.startswith("rnn"):
        rnn = nn.RNN(d, h, layers, nonlinearity=name[4:] or "tanh", batch_first=True, bidirectional=bi)
    else:
        rnn = getattr(nn, name.upper())(d, h, layers, batch_first=True, bidirectional=bi)
    with torch.no_grad():
        for p in rnn.parameters():
            p.mul_(scale)
    return emb, rnn, nn.Linear(h * (2 if bi else 1), k)


@pytest.mark.parametrize("kind,layers,bi", CASES)
@pytest.mark.parametrize("scale,vocab", [(1.0, None), (2.0, None), (1.5, 7)])
def test_same_draws_as_by_hand(kind, layers, bi, scale, vocab):
    torch.manual_seed(11)
    emb, rnn, head = _by_hand(kind, 3, 4, 5, layers, bi, scale, vocab)
    torch.manual_seed(11)
    m = recurrent_classifier(kind, 3, 4, 5, layers=layers, bidirectional=bi, scale=scale, vocab=vocab)
    want = ([] if emb is None else list(emb.parameters())) + list(rnn.parameters()) + list(head.parameters())
    got = list(m.parameters())
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and torch.equal(a, b)
    assert isinstance(m.rnn, type(rnn)) and getattr(m.rnn, "nonlinearity", None) == getattr(rnn, "nonlinearity", None)
    assert m.rnn.num_layers == layers and m.rnn.bidirectional == bi and m.rnn.batch_first
    assert torch.equal(m.rnn.weight_ih_l0, rnn.weight_ih_l0)


def test_forward_last_and_mean_frame():
    torch.manual_seed(0)
    last = recurrent_classifier("gru", 3, 4, 2, bidirectional=True).double()
    torch.manual_seed(0)
    mean = recurrent_classifier("gru", 3, 4, 2, bidirectional=True, head="mean").double()
    assert type(last) is LastFrameHead and type(mean) is MeanFrameHead
    x = torch.randn(5, 6, 3, dtype=torch.float64)
    out = last.rnn(x)[0]
    assert torch.equal(last(x), last.head(out[:, -1]))
    assert torch.equal(mean(x), mean.head(out.mean(1)))
    assert not torch.allclose(last(x), mean(x))


@pytest.mark.parametrize("head", ["last", "mean"])
def test_import_parity(head):
    torch.manual_seed(1)
    m = recurrent_classifier("lstm", 3, 4, 3, layers=2, head=head, scale=2.0).double().eval()
    g = certnn.from_torch(m, (4, 3))  # raises unless the graph reproduces the module
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    assert torch.allclose(g.forward(x), m(x), atol=1e-10)


def test_embedding_in_front():
    torch.manual_seed(2)
    m = recurrent_classifier("rnn", 3, 4, 2, vocab=9).double().eval()
    tokens = torch.tensor([[1, 2, 3], [8, 0, 4]])
    assert torch.equal(m(tokens), m.head(m.rnn(m.embedding(tokens))[0][:, -1]))
    g = certnn.from_torch(m, (3, 3), embedded=True)  # the IR input is the embedded sequence
    assert torch.allclose(g.forward(m.embedding(tokens)), m(tokens), atol=1e-10)


def test_unknown_kind_and_head():
    with pytest.raises(ValueError, match="unknown recurrent kind 'transformer'"):
        recurrent_layer("transformer", 3, 4)
    with pytest.raises(ValueError, match="head must be 'last' or 'mean'"):
        recurrent_classifier("lstm", 3, 4, 2, head="first")
