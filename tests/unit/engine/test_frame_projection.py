"""engine/frame_projection.py: per-frame L2 balls concretised at the single-frame slices of a recurrent
net's input projection give the bounds of the joint-projection path (engine/input_projection.py) to
~1e-12, contain sampled outputs, and are used only where every frame is read by one whole-frame slice."""
from __future__ import annotations

import pytest
import torch

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.engine import backward
from certnn.engine.context import RunContext
from certnn.engine.frame_projection import _whole_frame, frame_sink
from certnn.engine.input_projection import input_projection
from certnn.engine.methods import METHODS
from certnn.testing.nets import recurrent_classifier
from certnn.testing.soundness import check_bounds_contain, sample_ball


def _rnn(d=24, h=5, frames=4, seed=3):
    torch.manual_seed(seed)
    return certnn.from_torch(recurrent_classifier("RNN", d, h, 3).double().eval(), (frames, d))


def _spec(g, scaled=False, frame_norm="2"):
    x = torch.rand(4, 4, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    eps = torch.tensor([0.0, 0.05, 0.3, 1.0], dtype=torch.float64)
    scale = None
    if scaled:  # per-frame, per-feature scales, one frame frozen
        scale = torch.rand(4, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        scale[2] = 0.0
    return make_spec(g, x, eps, "inf" if frame_norm else "2", None, scale, frame_norm)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("method", ["popqorn", "crown"])
def test_frames_equal_the_joint_projection(monkeypatch, scaled, method):
    g = _rnn()
    spec = _spec(g, scaled)
    ctx = RunContext(g, spec, METHODS[method])
    assert frame_sink(ctx, input_projection(ctx)) is not None  # the per-frame path applies here
    lo, hi, _ = bounds_for_spec(g, spec, method, None)
    monkeypatch.setattr(backward, "frame_sink", lambda ctx, first: None)
    jlo, jhi, _ = bounds_for_spec(g, spec, method, None)
    assert ((lo - jlo).abs() <= 1e-12 * (1 + jlo.abs())).all()
    assert ((hi - jhi).abs() <= 1e-12 * (1 + jhi.abs())).all()
    assert not torch.equal(lo, hi)  # a test that compares something


def test_frames_contain_sampled_outputs():
    g = _rnn()
    spec = _spec(g)
    lo, hi, _ = bounds_for_spec(g, spec, "popqorn", None)
    pts = sample_ball(spec, 200, torch.Generator().manual_seed(2))
    assert check_bounds_contain(g.forward, pts, lo, hi) == 0.0


def test_not_used_where_it_does_not_apply():
    g = _rnn()
    ctx = RunContext(g, _spec(g, frame_norm=None), METHODS["popqorn"])  # one L2 ball over all frames
    assert input_projection(ctx) is not None and frame_sink(ctx, input_projection(ctx)) is None
    ctx = RunContext(g, _spec(g), METHODS["popqorn"])
    first = input_projection(ctx)
    ctx.capture.add(first)
    assert frame_sink(ctx, first) is None  # its coefficients are asked for
    assert frame_sink(ctx, None) is None
    assert _whole_frame((1,), 4) and _whole_frame((-1, slice(None)), 4)
    assert not _whole_frame((slice(0, 2),), 4) and not _whole_frame((1, slice(0, 3)), 4)
    assert not _whole_frame((4,), 4) and not _whole_frame((True,), 4)


@pytest.mark.parametrize("frame_norm", [None, "2"])
def test_the_joint_projection_is_bounded_as_an_affine_chain(monkeypatch, frame_norm):
    """The input projection (the refinement target of the first frame's slice) takes the batch-free exact
    bounds of an affine chain, not T x m backward identity rows per sample; the bounds stay the same."""
    g = _rnn()
    spec = _spec(g, frame_norm=frame_norm)
    first = input_projection(RunContext(g, spec, METHODS["popqorn"]))
    starts = []
    real = backward.backward_bounds

    def counted(ctx, target, *a, **k):
        starts.append(target)
        return real(ctx, target, *a, **k)

    monkeypatch.setattr(backward, "backward_bounds", counted)
    lo, hi, _ = bounds_for_spec(g, spec, "popqorn", None)
    assert first not in starts and starts
    monkeypatch.setattr(backward, "ball_chain", lambda ctx, name: False)  # the backward refinement again
    rlo, rhi, _ = bounds_for_spec(g, spec, "popqorn", None)
    assert first in starts
    assert ((lo - rlo).abs() <= 1e-12 * (1 + rlo.abs())).all()
    assert ((hi - rhi).abs() <= 1e-12 * (1 + rhi.abs())).all()


@pytest.mark.parametrize("frame_norm", [None, "2", "1"])
@pytest.mark.parametrize("scaled", [False, True])
def test_input_linear_duals_equal_the_pushed_rows(monkeypatch, frame_norm, scaled):
    from certnn.engine import interval

    g = _rnn()
    spec = _spec(g, scaled, frame_norm=frame_norm)
    ctx = RunContext(g, spec, METHODS["popqorn"])
    first = input_projection(ctx) if frame_norm != "1" else g.consumers(g.input_name)[0]
    iv = interval.interval_pass(RunContext(g, spec, METHODS["ibp"]))[first]
    assert interval._input_linear_duals(ctx, [first]) is not None
    a = interval.affine_chain_bounds(ctx, first, iv)
    monkeypatch.setattr(interval, "_input_linear_duals", lambda ctx, chain: None)
    b = interval.affine_chain_bounds(RunContext(g, spec, METHODS["popqorn"]), first, iv)
    assert torch.allclose(a.lower, b.lower, rtol=1e-13, atol=1e-13)
    assert torch.allclose(a.upper, b.upper, rtol=1e-13, atol=1e-13)
    assert not torch.equal(a.lower, a.upper)
