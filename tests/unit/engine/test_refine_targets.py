"""Which nodes the backward engine refines (engine.targets.refine_targets): a needed slice moves its
refinement to the joint node only where every row of the joint node is needed. A GRU's U_n h + b_n slice
(the y of r * (U_n h + b_n)) is refined on its own: the joint node's U_z h and U_r h rows feed sums that are
refined themselves, and refining them too cost a third more rows for the same bounds."""
from __future__ import annotations

import pytest
import torch

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.engine import targets as backward
from certnn.engine.backward import nodes_needing_bounds
from certnn.engine.targets import refine_targets
from certnn.engine.context import RunContext
from certnn.engine.methods import get_method
from certnn.testing.nets import recurrent_classifier


def _graph(cell: str):
    torch.manual_seed(5011)
    model = recurrent_classifier(cell, 2, 5, 3, scale=2.0)
    return certnn.from_torch(model.double().eval(), (3, 2))


def _targets(g) -> set[str]:
    x = torch.zeros(1, 3, 2, dtype=torch.float64)
    ctx = RunContext(g, make_spec(g, x, torch.tensor([0.1], dtype=torch.float64), "inf"), get_method("crown"))
    return refine_targets(ctx, set(nodes_needing_bounds(ctx)))


def test_gru_refines_the_sliced_rows_not_the_joint_node():
    g = _graph("gru")
    kinds = {n: g.nodes[n].op.kind for n in _targets(g)}
    assert "linear" not in kinds.values()  # before: the hidden Linear (3 gates' rows) of each later frame
    assert any(k == "slice" for k in kinds.values())


def test_lstm_still_refines_the_joint_node():
    """Every gate slice of an LSTM's joint pre-activation is needed: one pass over the joint node."""
    g = _graph("lstm")
    kinds = [g.nodes[n].op.kind for n in _targets(g)]
    assert "slice" not in kinds


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_same_crown_bounds_as_refining_the_joint_node(cell, norm, monkeypatch):
    """The rows left out only fed sums whose own refinement is at least as tight (the sum's backward bound
    is the slice's plus an exact affine term of the input): the bounds are those of the old rule."""
    g = _graph(cell)
    x = torch.rand(4, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) - 0.5
    eps = torch.tensor([1e-3, 0.05, 0.5, 3.0], dtype=torch.float64) * (1.0 if norm == "inf" else 2.0)
    spec = make_spec(g, x, eps, norm)
    lo, hi, _ = bounds_for_spec(g, spec, "crown", None)
    monkeypatch.setattr(backward, "_all_rows_needed", lambda ctx, name, need: True)  # the old rule
    lo0, hi0, _ = bounds_for_spec(g, spec, "crown", None)
    assert torch.isfinite(lo).all() and (hi - lo).abs().max() > 0
    assert ((lo - lo0).abs() / (1 + lo0.abs())).max() <= 1e-12
    assert ((hi - hi0).abs() / (1 + hi0.abs())).max() <= 1e-12
