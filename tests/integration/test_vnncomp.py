"""VNN-COMP 2022 instances (../shared/data/vnncomp2022): certnn never says `holds` where the competition's
majority verdict is a counterexample (sat), never `violated` without a counterexample that onnxruntime
confirms, and decides a few fast instances of every family."""
from __future__ import annotations

import csv
import random

import pytest
import torch

from certnn.certify.verify import VerifyConfig, verify_property
from certnn.graph.from_onnx import onnx_to_model
from certnn.specs.vnnlib import load_vnnlib, property_violated

pytestmark = pytest.mark.shared_data
pytest.importorskip("onnxruntime")

# (family, onnx, vnnlib, expected verdict) decided in about a second each on one idle core (10 s timeout for loaded machines)
DECIDED = [
    ("acasxu", "ACASXU_run2a_5_3_batch_2000.onnx", "prop_4.vnnlib", "holds"),
    ("acasxu", "ACASXU_run2a_4_3_batch_2000.onnx", "prop_3.vnnlib", "holds"),
    ("acasxu", "ACASXU_run2a_1_8_batch_2000.onnx", "prop_3.vnnlib", "violated"),
    ("mnist_fc", "mnist-net_256x2.onnx", "prop_13_0.03.vnnlib", "holds"),
    ("mnist_fc", "mnist-net_256x2.onnx", "prop_12_0.05.vnnlib", "violated"),
    ("rl_benchmarks", "cartpole.onnx", "cartpole_case_safe_95.vnnlib", "holds"),
    ("rl_benchmarks", "lunarlander.onnx", "lunarlander_case_unsafe_93.vnnlib", "violated"),
    ("reach_prob_density", "gcas.onnx", "gcas_3.vnnlib", "holds"),
]
CONV_FAMILIES = ("collins_rul_cnn", "oval21")


def _paths(shared, family, onnx_name, vnnlib_name):
    root = shared / "vnncomp2022" / family
    return root / "onnx" / (onnx_name + ".gz"), root / "vnnlib" / (vnnlib_name + ".gz")


def _majority(shared, family):
    with open(shared / "vnncomp2022" / family / "results_vnncomp2022_consensus.csv") as fh:
        return {(r["onnx"], r["vnnlib"]): r["majority"] for r in csv.DictReader(fh)}


def _check(shared, family, onnx_name, vnnlib_name, timeout):
    torch.set_num_threads(1)
    mp, vp = _paths(shared, family, onnx_name, vnnlib_name)
    om = onnx_to_model(mp)
    prop = load_vnnlib(vp)
    res = verify_property(om.graph, prop, VerifyConfig(timeout=timeout), reference=om.run_onnxruntime)
    truth = _majority(shared, family)[(onnx_name, vnnlib_name)]
    assert not (res.verdict == "holds" and truth == "sat"), (onnx_name, vnnlib_name, res)
    if res.verdict == "violated":
        assert res.x is not None
        y = om.run_onnxruntime(res.x.reshape((1,) + om.graph.input_shape))[0]
        assert property_violated(prop, res.x, y), "counterexample not confirmed by onnxruntime"
        assert property_violated(prop, res.x, res.y)
    return res, truth


@pytest.mark.parametrize("family,onnx_name,vnnlib_name,expected", DECIDED,
                         ids=[f"{f}-{o.split('.')[0]}-{v.split('.')[0]}" for f, o, v, _ in DECIDED])
def test_decides_fast_instances(shared_data, family, onnx_name, vnnlib_name, expected):
    res, truth = _check(shared_data, family, onnx_name, vnnlib_name, timeout=10.0)
    assert res.verdict == expected
    assert truth == {"holds": "unsat", "violated": "sat"}[expected]


@pytest.mark.parametrize("family", ["acasxu", "mnist_fc", "rl_benchmarks", "reach_prob_density", *CONV_FAMILIES])
def test_never_contradicts_the_majority(shared_data, family):
    """A seeded sample of each family's instances (sat ones first, where a wrong `holds` would show) with
    a short timeout."""
    if family in CONV_FAMILIES:
        pytest.importorskip("certnn.ops.conv")
    maj = _majority(shared_data, family)
    keys = sorted(maj)
    random.Random(1).shuffle(keys)
    sat = [k for k in keys if maj[k] == "sat"][:3]
    unsat = [k for k in keys if maj[k] == "unsat"][:2]
    for onnx_name, vnnlib_name in sat + unsat:
        _check(shared_data, family, onnx_name, vnnlib_name, timeout=1.0)
