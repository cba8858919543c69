"""benchmarks/popqorn_minimal.py's hand-written POPQORN pass is the bound certnn's `popqorn` computes (its
timings are quoted as the cost of that method without certnn's machinery): on small random tanh RNNs the two
margin lower bounds agree to rounding, and both lie below the margins at sampled points of the ball."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import certnn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
popqorn_minimal = pytest.importorskip("popqorn_minimal")
from rnn_models import SeqClassifier  # noqa: E402


@pytest.mark.parametrize("seed", range(3))
def test_hand_written_pass_is_certnn_popqorn(seed):
    torch.manual_seed(seed)
    m = SeqClassifier("RNN", 1, 8, 7).double().eval()
    x = torch.rand(4, 7, 112, dtype=torch.float64)
    with torch.no_grad():
        y = m(x).argmax(1)
    target = (y + 1 + torch.randint(0, 9, (4,))) % 10
    eps = torch.tensor([0.0, 0.01, 0.05, 0.2], dtype=torch.float64)
    graph = certnn.from_torch(m, (7, 112))
    with torch.no_grad():
        ours = popqorn_minimal.MinimalPopqorn(m).margin_lower(x, y, target, eps)
        theirs = popqorn_minimal.certnn_margin(graph, x, y, target, eps)
        assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-9)
        d = torch.randn(4, 256, 7, 112, dtype=torch.float64)  # points on each frame's sphere
        pts = x[:, None] + eps[:, None, None, None] * d / d.norm(dim=3, keepdim=True)
        logits = m(pts.reshape(-1, 7, 112)).reshape(4, 256, 10)
        pick = lambda k: logits.gather(2, k[:, None, None].expand(4, 256, 1))[..., 0]  # noqa: E731
        assert (ours[:, None] <= pick(y) - pick(target) + 1e-12).all()
