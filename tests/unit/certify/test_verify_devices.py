"""VNN-LIB verification on every device present (tests/conftest.py `device`: cpu, the virtual device that
turns every cpu / device mix-up into an error, cuda with a GPU): each stage (attack, whole-box bounds, input
splitting, ReLU branch and bound, lp / milp) gives the verdict the cpu gives, counterexamples checked."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certnn.certify.verify import VerifyConfig, verify_property
from certnn.engine.milp import exact_bounds
from certnn.graph.from_torch import from_torch
from certnn.specs.lp import LpBall
from certnn.specs.vnnlib import parse_vnnlib, property_violated
from certnn.testing import random_relu_mlp

pytest.importorskip("highspy")


def _prop(n: int, lo, hi, rows: str):
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + "".join(
        f"(declare-const Y_{j} Real)\n" for j in range(2))
    box = "".join(f"(assert (>= X_{i} {float(a)!r}))\n(assert (<= X_{i} {float(b)!r}))\n"
                  for i, (a, b) in enumerate(zip(lo, hi)))
    return parse_vnnlib(head + box + rows)


def _cases(seed: int, d: int):
    """A net on d inputs and two properties around the exact minimum of Y_0 - Y_1: one holds, one not."""
    g = from_torch(random_relu_mlp(seed, d, 8), (d,))
    lo, hi = -np.ones(d) * 0.5, np.ones(d) * 0.5
    spec = LpBall.make(torch.zeros(1, d, dtype=torch.float64), 0.5, "inf")
    mn, mx = (float(v) for v in exact_bounds(g, spec, torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)))
    gap = 0.03 * (mx - mn) + 1e-4
    return g, [(_prop(d, lo, hi, f"(assert (<= (- Y_0 Y_1) {c!r}))"), truth)
               for c, truth in ((mn - gap, "holds"), (mn + gap, "violated"))]


STAGES = {
    "split": (2, VerifyConfig(timeout=20.0, exact="none", attack=False)),
    "bab": (40, VerifyConfig(timeout=20.0, exact="none", attack=False, split=False)),
    "milp": (3, VerifyConfig(timeout=20.0, exact="milp", attack=False, split=False, bab=False)),
    "attack": (3, VerifyConfig(timeout=20.0, exact="none", split=False, bab=False)),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_verdicts_on_device_equal_the_cpu_ones(device, stage):
    d, cfg = STAGES[stage]
    g, props = _cases(3, d)
    for prop, truth in props:
        ref = verify_property(g, prop, cfg, device="cpu")
        got = verify_property(g, prop, cfg, device=device)
        assert got.verdict == ref.verdict and got.decided_by == ref.decided_by, (stage, got, ref)
        assert got.verdict in (truth, "unknown")
        if got.verdict == "violated":
            assert property_violated(prop, got.x, got.y) and isinstance(got.x, np.ndarray)
