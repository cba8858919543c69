"""engine/zonotope_affine.py's add rule: a + sign * b over the union of both symbol sets. Whichever buffer
path it takes (b's symbols inside a's, disjoint symbol sets copied without a zero fill, overlapping ones
accumulated), every symbol's generator equals a's plus sign times b's, and the centre a's plus sign b's."""
from __future__ import annotations

import types

import pytest
import torch

from certnn.domains.symbols import SymbolTable
from certnn.domains.zonotope import Zonotope
from certnn.engine.zonotope_affine import _add
from certnn.engine.zonotope_run import ZonotopeRun, ZVal
from certnn.graph.ir import Node
from certnn.ops.shape import Add


def _run():
    run = types.SimpleNamespace(unit=float(torch.finfo(torch.float64).eps))
    run.gamma = lambda n: ZonotopeRun.gamma(run, n)
    return run


def _dense(z: Zonotope, ids: torch.Tensor) -> torch.Tensor:
    out = z.generators.new_zeros((z.batch, ids.numel(), *z.shape))
    out[:, torch.searchsorted(ids, z.ids)] = z.generators
    return out


@pytest.mark.parametrize("sign", [1.0, -1.0, 0.5])
@pytest.mark.parametrize("layout", ["disjoint", "interleaved", "overlap", "b_inside_a"])
def test_every_symbol_gets_a_plus_sign_b(sign, layout):
    g = torch.Generator().manual_seed(0)
    table = SymbolTable()

    def box():
        t = torch.rand(2, 3, 5, generator=g, dtype=torch.float64)
        return Zonotope.from_box(t.min(0).values, t.max(0).values, table)

    z1, z2, z3 = box(), box(), box()
    if layout == "disjoint":  # a's symbols before b's
        za, zb = z1, z2
    elif layout == "interleaved":  # a = z1 + z3, b = z2: b's ids fall between a's two runs
        za, zb = z1 + z3, z2
    elif layout == "overlap":
        za, zb = z1 + z2, z2 + z3
    else:
        za, zb = z1 + z2, z2
    a, b = ZVal(za, torch.zeros(3, 5, dtype=torch.float64)), ZVal(zb, torch.zeros(3, 5, dtype=torch.float64))
    out = _add(_run(), Node("s", Add(sign), ("a", "b"), (5,)), (a, b)).z
    ids = out.ids
    assert torch.equal(ids, torch.unique(torch.cat([za.ids, zb.ids])))
    expect = _dense(za, ids) + sign * _dense(zb, ids)
    assert torch.equal(out.generators, expect)
    assert torch.equal(out.center, za.center + sign * zb.center)
