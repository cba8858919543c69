"""engine/input_projection.py: backward bounds over L2 balls concretised at the first Linear (QR of the
input projection) equal the generic path's (input coefficients formed, ball and box bounds) to ~1e-12;
the generic path is forced by a clip box far outside the ball (the same set)."""
from __future__ import annotations

import pytest
import torch

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.engine.context import RunContext
from certnn.engine.input_projection import input_projection
from certnn.engine.methods import METHODS
from certnn.testing.nets import recurrent_classifier



def _rnn(kind, d=24, h=5, seed=3):
    torch.manual_seed(seed)
    return certnn.from_torch(recurrent_classifier(kind, d, h, 4).double().eval(), (3, d))


FAR = (-1e6, 1e6)  # a clip box containing the ball: same set, generic concretisation


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("frame_norm", [None, "2"])
@pytest.mark.parametrize("scaled", [False, True])
def test_projection_equals_generic_path(kind, frame_norm, scaled):
    g = _rnn(kind)
    x = torch.rand(4, 3, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    eps = torch.tensor([0.0, 0.05, 0.3, 1.0], dtype=torch.float64)
    norm = "inf" if frame_norm else "2"
    scale = None
    if scaled:  # per-frame, per-feature scales, one frame frozen
        scale = torch.rand(3, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        scale[1] = 0.0
    spec = make_spec(g, x, eps, norm, None, scale, frame_norm)
    ctx = RunContext(g, spec, METHODS["popqorn"])
    assert input_projection(ctx) is not None  # the shortcut applies here
    assert input_projection(RunContext(g, make_spec(g, x, eps, norm, FAR, scale, frame_norm),
                                       METHODS["popqorn"])) is None
    for method in ("popqorn", "crown"):
        lo, hi, _ = bounds_for_spec(g, spec, method, None)
        glo, ghi, _ = bounds_for_spec(g, make_spec(g, x, eps, norm, FAR, scale, frame_norm), method, None)
        assert ((lo - glo).abs() <= 1e-12 * (1 + glo.abs())).all()
        assert ((hi - ghi).abs() <= 1e-12 * (1 + ghi.abs())).all()
        assert (lo <= hi).all()


def test_projection_on_an_mlp_l2_ball():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    g = certnn.from_torch(net, (20,))
    x = torch.randn(3, 20, dtype=torch.float64)
    eps = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    lo, hi, _ = bounds_for_spec(g, make_spec(g, x, eps, "2"), "crown", None)
    glo, ghi, _ = bounds_for_spec(g, make_spec(g, x, eps, "2", FAR), "crown", None)
    assert torch.allclose(lo, glo, rtol=1e-12, atol=1e-12) and torch.allclose(hi, ghi, rtol=1e-12, atol=1e-12)


def test_not_used_where_it_does_not_apply():
    g = _rnn("RNN", d=4, h=6)  # m >= d: nothing to save
    x = torch.rand(2, 3, 4, dtype=torch.float64)
    assert input_projection(RunContext(g, make_spec(g, x, 0.1, "2"), METHODS["crown"])) is None
    g = _rnn("RNN")
    x = torch.rand(2, 3, 24, dtype=torch.float64)
    for norm, fn in (("inf", None), ("1", None), ("inf", "1")):
        assert input_projection(RunContext(g, make_spec(g, x, 0.1, norm, None, None, fn), METHODS["crown"])) is None
