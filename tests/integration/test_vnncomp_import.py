"""Every VNN-COMP 2022 model of the shared data imports, with parity against onnxruntime (checked on import
and here on points of the properties' boxes). The 2021 families are not in the shared data."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from certnn.graph.from_onnx import onnx_to_model
from certnn.specs.vnnlib import load_vnnlib

pytestmark = pytest.mark.shared_data
pytest.importorskip("onnxruntime")
torch.set_num_threads(1)


def _models(shared):
    return sorted((shared / "vnncomp2022").glob("*/onnx/*.onnx*"))


def _parity_on_a_property(path, om):
    """Points of the first property of the model's family (centre and corners of its first box)."""
    fam = path.parents[1]
    specs = sorted((fam / "vnnlib").glob("*.vnnlib.gz"))
    prop = None
    for s in specs:
        p = load_vnnlib(s)
        if p.n_inputs == int(np.prod(om.graph.input_shape)):
            prop = p
            break
    if prop is None:
        return
    lo, hi = prop.regions[0].input_box
    rng = np.random.default_rng(0)
    x = np.stack([(lo + hi) / 2, lo, hi] + [lo + (hi - lo) * rng.uniform(size=lo.shape) for _ in range(3)])
    x = x.astype(np.float32).astype(np.float64).reshape((-1,) + om.graph.input_shape)
    want = om.run_onnxruntime(x)
    got = om.graph.forward(torch.as_tensor(x)).reshape(len(x), -1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * (1 + np.abs(want).max()))


def test_one_model_per_family(shared_data):
    seen = {}
    for p in _models(shared_data):
        seen.setdefault(p.parts[-3], p)
    assert len(seen) >= 6
    for p in seen.values():
        om = onnx_to_model(p)
        _parity_on_a_property(p, om)


def test_every_model_imports_with_parity(shared_data):
    """All 60 models (about 6 s)."""
    paths = _models(shared_data)
    assert len(paths) >= 60
    for p in paths:
        om = onnx_to_model(p)  # raises on any import error or parity failure
        _parity_on_a_property(p, om)
