"""engine/stacked_sides.py: intermediate bounds from one lower pass over rows [A; -A] are bit-identical to
the separate lower and upper passes (sign-symmetric rounding), and the stacking stays off where it does
not apply."""
from __future__ import annotations

import pytest
import torch

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.engine import backward
from certnn.engine.context import RunContext
from certnn.engine.methods import METHODS
from certnn.engine.stacked_sides import SMALL, stackable
from certnn.testing.nets import random_mlp, recurrent_classifier


def _graphs():
    torch.manual_seed(0)
    mlp, d = random_mlp(3, "relu", out=4)
    g_mlp = certnn.from_torch(mlp.double().eval(), (d,))
    x_mlp = torch.rand(3, d, dtype=torch.float64)
    torch.manual_seed(1)
    rnn = certnn.from_torch(recurrent_classifier("RNN", 12, 6, 3).double().eval(), (4, 12))
    x_rnn = torch.rand(3, 4, 12, dtype=torch.float64)
    return [(g_mlp, x_mlp, "inf", None, "crown"), (g_mlp, x_mlp, "2", None, "crown"),
            (rnn, x_rnn, "inf", "2", "popqorn"), (rnn, x_rnn, "inf", None, "popqorn")]


@pytest.mark.parametrize("case", range(4))
def test_stacked_passes_equal_two_passes_bit_for_bit(monkeypatch, case):
    g, x, norm, frame_norm, method = _graphs()[case]
    eps = torch.tensor([0.01, 0.05, 0.2], dtype=torch.float64)
    spec = make_spec(g, x, eps, norm, None, None, frame_norm)
    calls = []
    real = backward.both_sides

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(backward, "both_sides", counted)
    lo, hi, _ = bounds_for_spec(g, spec, method, None)
    assert calls  # the stacked pass ran
    monkeypatch.setattr(backward, "stackable", lambda *a: False)
    lo2, hi2, _ = bounds_for_spec(g, spec, method, None)
    assert torch.equal(lo, lo2) and torch.equal(hi, hi2)
    assert not torch.equal(lo, hi)


def test_not_stacked_where_it_does_not_apply():
    g, x, *_ = _graphs()[0]
    ctx = RunContext(g, make_spec(g, x, 0.1, "inf"), METHODS["crown"])
    A = torch.zeros(3, 8, 5, dtype=torch.float64)
    assert stackable(ctx, A, 16)
    assert not stackable(ctx, A, 15)  # 2 x 8 rows over the pass's row budget
    assert not stackable(ctx, torch.zeros(SMALL // 2 + 1, dtype=torch.float64).reshape(1, 1, -1), 16)
    ctx.line_params["x"] = lambda *a: None  # optimised lines belong to rows
    assert not stackable(ctx, A, 16)
