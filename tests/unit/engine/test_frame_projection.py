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
def test_the_joint_projection_is_not_refined_under_l2(monkeypatch, frame_norm):
    """The first frame's slice is bounded exactly as an affine chain of the input; its T x m-row input
    projection is no refinement target (engine/backward.refine_targets) and the bounds stay the same."""
    g = _rnn()
    spec = _spec(g, frame_norm=frame_norm)
    ctx = RunContext(g, spec, METHODS["popqorn"])
    first = input_projection(ctx)
    need = set(backward.nodes_needing_bounds(ctx))
    assert first not in backward.refine_targets(ctx, need)
    lo, hi, _ = bounds_for_spec(g, spec, "popqorn", None)
    monkeypatch.setattr(backward, "ball_chain", lambda ctx, name: False)  # the refinement moves up again
    assert first in backward.refine_targets(ctx, need)
    rlo, rhi, _ = bounds_for_spec(g, spec, "popqorn", None)
    assert ((lo - rlo).abs() <= 1e-12 * (1 + rlo.abs())).all()
    assert ((hi - rhi).abs() <= 1e-12 * (1 + rhi.abs())).all()
