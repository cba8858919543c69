"""Per-row stop thresholds of the optimiser (optimized_bounds(stop=...), used by branch and bound to stop
a sub-domain once every row it needs is proved): same behaviour as AlphaConfig.stop_at for one value,
rows at -inf never block, results stay sound, only lower bounds take them."""
from __future__ import annotations

import math

import pytest
import torch

import certnn
from certnn.certify.bounds import make_spec
from certnn.certify.targets import margin_matrix
from certnn.engine.context import RunContext
from certnn.engine.methods import get_method
from certnn.optimize import AlphaConfig, optimized_bounds
from certnn.testing import check_bounds_contain, random_relu_mlp, sample_ball

CFG = AlphaConfig(iterations=10)


def _setup():
    model = random_relu_mlp(11, d=6, h=24, depth=3, out=4)
    graph = certnn.from_torch(model, (6,))
    x = torch.rand(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    C = margin_matrix(model(x).argmax(1), 4)
    spec = make_spec(graph, x, torch.linspace(0.005, 0.2, 8, dtype=torch.float64), "inf")
    return model, graph, spec, C


def _bounds(graph, spec, C, cfg=CFG, **kw):
    return optimized_bounds(RunContext(graph, spec, get_method("alpha-crown")), C, lower=True, upper=False,
                            config=cfg, **kw)


def test_zero_thresholds_equal_stop_at_zero():
    model, graph, spec, C = _setup()
    a = _bounds(graph, spec, C, CFG.replace(stop_at=0.0))
    b = _bounds(graph, spec, C, stop=torch.zeros(C.shape[:2], dtype=C.dtype))
    full = _bounds(graph, spec, C)
    proved = (full.lower > 0).all(1)
    assert 0 < int(proved.sum()) < 8  # some samples stop early, some run on
    assert torch.equal(a.lower, b.lower)
    assert a.iterations == b.iterations


def test_minus_inf_rows_never_block_and_bounds_stay_sound():
    model, graph, spec, C = _setup()
    full = _bounds(graph, spec, C)
    stop = torch.full(C.shape[:2], -math.inf, dtype=C.dtype)
    stop[:, 0] = 0.0  # only row 0 matters
    part = _bounds(graph, spec, C, stop=stop)
    assert ((part.lower[:, 0] > 0) == (full.lower[:, 0] > 0)).all()  # row 0 proved where the full run proved it
    pts = sample_ball(spec, 300, torch.Generator().manual_seed(2))
    assert check_bounds_contain(model, pts, part.lower, torch.full_like(part.lower, math.inf), C) <= 1e-9
    everything = _bounds(graph, spec, C, stop=torch.full(C.shape[:2], -math.inf, dtype=C.dtype))
    assert everything.iterations == 1  # every sample is done at once: CROWN's bound (the first iterate)


def test_thresholds_need_lower_bounds_only_and_the_right_shape():
    model, graph, spec, C = _setup()
    ctx = RunContext(graph, spec, get_method("alpha-crown"))
    with pytest.raises(ValueError):
        optimized_bounds(ctx, C, lower=True, upper=True, config=CFG, stop=torch.zeros(C.shape[:2]))
    with pytest.raises(ValueError):
        optimized_bounds(ctx, C, lower=True, upper=False, config=CFG, stop=torch.zeros(C.shape[0], 1))
