"""Nonlinear rules of the forward zonotope pass (engine/zonotope.py): an activation f gets two parallel lines
a x + c_lo <= f(x) <= a x + c_hi on its input's hull and returns a z + (c_lo + c_hi)/2 plus one fresh symbol
per neuron of radius (c_hi - c_lo)/2; a product F(x, y) (sigmoid_tanh_mul, sigmoid_mul, mul) gets two
parallel planes on the box of its inputs' hulls and returns A zx + B zy + (C1 + C2)/2 plus one fresh symbol
per neuron, the inputs' symbols aligned by id (shared symbols keep their correlation).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.symbols import union_ids
from ..domains.zonotope import Zonotope, _split, apply_planes
from ..graph.ir import Node
from .zonotope_run import ZonotopeRun, ZVal, hull, zonotope_rule


def _combine_fresh(run: ZonotopeRun, parts: list[tuple[Zonotope, Tensor]], c_lo: Tensor, c_hi: Tensor,
                   label: str) -> Zonotope:
    """sum_i a_i * z_i + [c_lo, c_hi] elementwise (a_i, c_lo, c_hi of shape (B, *shape)) as one zonotope:
    symbols of the parts aligned by id, plus one fresh symbol per neuron of radius (c_hi - c_lo)/2 (none
    for neurons where c_lo == c_hi in every batch row), written into one output buffer (no concatenation
    copies). The same arithmetic as Zonotope.apply_relaxation / apply_planes with parallel planes."""
    mid, rad = _split(c_lo, c_hi)
    z0 = parts[0][0]
    B, shape = z0.batch, tuple(z0.shape)
    ids = union_ids(*(z.ids for z, _ in parts)) if len(parts) > 1 else z0.ids
    Ku = ids.shape[0]
    rf = rad.reshape(B, -1)
    cols = (rf != 0).any(0).nonzero().flatten()
    nf = cols.numel()
    fresh = run.table.fresh(nf, label=label, device=ids.device)
    center = mid.clone()
    first = next((i for i, (z, _) in enumerate(parts) if z.ids.shape == ids.shape and torch.equal(z.ids, ids)), None)
    if first is None:
        G = z0.generators.new_zeros((B, Ku + nf, *shape))
    else:
        G = z0.generators.new_empty((B, Ku + nf, *shape))
        G[:, Ku:].zero_()
    order = list(range(len(parts))) if first is None else [first] + [i for i in range(len(parts)) if i != first]
    for i in order:  # the part written with out= goes first (the buffer is uninitialised there)
        z, a = parts[i]
        center = center + a * z.center
        ag = a.unsqueeze(1)
        if i == first:
            if torch.is_grad_enabled() and (z.generators.requires_grad or ag.requires_grad):
                G[:, :Ku] = z.generators * ag  # out= is not differentiable (training, train/robust.py)
            else:
                torch.mul(z.generators, ag, out=G[:, :Ku])
        elif z.ids.shape == ids.shape and torch.equal(z.ids, ids):
            G[:, :Ku].addcmul_(z.generators, ag)
        else:
            G.index_add_(1, torch.searchsorted(ids, z.ids), z.generators * ag)
    if nf:
        Gf = G.view(B, Ku + nf, -1)
        Gf[:, Ku + torch.arange(nf, device=G.device), cols] = rf[:, cols]
    return Zonotope(center, G, torch.cat([ids, fresh]), z0.table)


@zonotope_rule("relu", "leaky_relu", "sigmoid", "tanh", "arctan", "hardtanh")
def _activation(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins
    l, u = hull(run, node.inputs[0], v)
    with run.ctx.timer("relax:lines"):
        rel = run.ctx.method.relax(node.op, l, u)
    a = rel.lower_slope
    if not torch.equal(a, rel.upper_slope):
        raise ValueError(f"the zonotope table of {run.ctx.method.name!r} must give parallel lines for {node.op.kind!r}")
    z = _combine_fresh(run, [(v.z, a)], rel.lower_bias, rel.upper_bias, node.name)
    err = a.abs() * v.err + run.gamma(3) * (a.abs() * v.mag + rel.lower_bias.abs() + rel.upper_bias.abs())
    return ZVal(z, err)


@zonotope_rule("sigmoid_tanh_mul", "sigmoid_mul", "mul")
def _product(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    vx, vy = ins
    lx, ux = hull(run, node.inputs[0], vx)
    ly, uy = hull(run, node.inputs[1], vy)
    with run.ctx.timer("relax:planes"):
        planes = run.ctx.method.relax_planes(node.op, lx, ux, ly, uy)
    if torch.equal(planes.lower_a, planes.upper_a) and torch.equal(planes.lower_b, planes.upper_b):
        z = _combine_fresh(run, [(vx.z, planes.lower_a), (vy.z, planes.lower_b)], planes.lower_c, planes.upper_c,
                           node.name)
    else:
        z = apply_planes(vx.z, vy.z, planes, label=node.name)
    A = torch.maximum(planes.lower_a.abs(), planes.upper_a.abs())
    Bc = torch.maximum(planes.lower_b.abs(), planes.upper_b.abs())
    if not (torch.equal(planes.lower_a, planes.upper_a) and torch.equal(planes.lower_b, planes.upper_b)):
        # apply_planes' mid plane is chosen on the unwidened hull; bound the extra gap over the widened one
        da = (planes.upper_a - planes.lower_a).abs() / 2
        db = (planes.upper_b - planes.lower_b).abs() / 2
        extra = da * vx.err + db * vy.err
    else:
        extra = 0.0
    err = (A * vx.err + Bc * vy.err + extra
           + run.gamma(4) * (A * vx.mag + Bc * vy.mag + planes.lower_c.abs() + planes.upper_c.abs()))
    return ZVal(z, err)


PRUNE_AFTER = ("relu", "leaky_relu", "hardtanh")  # zero slopes (stable inactive / saturated neurons)
NONLINEAR = ("relu", "leaky_relu", "sigmoid", "tanh", "arctan", "hardtanh", "sigmoid_tanh_mul", "sigmoid_mul", "mul")

__all__ = ["PRUNE_AFTER", "NONLINEAR"]
