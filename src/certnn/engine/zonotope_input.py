"""The input set of the forward zonotope pass (engine/zonotope.py) and the graph rewrite that lets each frame
of a sequence carry only its own input symbols.

Input set: L∞ (ball ∩ clip box) is a box, represented exactly (one symbol per perturbed feature; frozen
features, scale 0, get none). L2 / L1: one jointly constrained symbol group over the perturbed features
(exact for the ball); per-frame balls: one group per frame. The clip box of an L2 / L1 ball is not
represented (a sound superset); the pass intersects every hull with IBP bounds instead. A normalisation
(elementwise affine maps) that alone reads the input keeps the set diagonal (`through_affine`): an ERAN-style
model's mean / std layers cost no dense block, and an L2 ball still reaches the first Linear whole.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..domains.symbols import SymbolTable
from ..domains.zonotope import Zonotope
from ..graph.ir import Graph, Node
from ..ops.shape import Slice
from .zonotope_run import ZonotopeRun, ZVal


@dataclass
class DiagonalInput:
    """The input set before any op: a zonotope whose symbols are one per perturbed feature (a diagonal
    generator matrix), kept as (center, radius, id per feature) so that slicing it (one frame of a sequence)
    only builds the generators of that slice's own symbols. idmap (*in_shape) int64 is -1 for frozen
    features (radius 0 in every batch row)."""

    center: Tensor
    radius: Tensor
    idmap: Tensor
    table: SymbolTable
    err: Tensor
    #: L2 balls (whole input or per frame): radius = eps (B,) * unit (*in_shape), for engine/zonotope_l2.py
    eps: Tensor | None = None
    unit: Tensor | None = None
    #: the node whose value this set is: the graph's input, or the last of a chain of elementwise affine
    #: maps (a normalisation) taken into it by `through_affine`
    node: str = "input"

    def through_affine(self, run: ZonotopeRun, node: Node) -> "DiagonalInput | None":
        """This set after `node` (an elementwise affine map y = x * s + h of it), still diagonal, or None
        where s varies over the batch. Each symbol's generator r * s becomes r * |s| (a sign flip of a
        symbol of a symmetric set: the caller makes sure no other node reads these symbols); the rounding
        of the centre and of the generators is charged to err as the engine's elementwise rule does."""
        s, h = node.op.scale, node.op.shift
        c = self.center
        if s is not None and s.dim() == c.dim() and s.shape[0] != 1:
            return None
        a = None if s is None else torch.broadcast_to(s.to(c.dtype), c.shape).abs()
        center = node.op.forward(c)
        mag = self.center.abs() + self.radius
        mag, err = (mag, self.err) if a is None else (mag * a, self.err * a)
        err = err + run.gamma(2) * (mag + (0 if h is None else h.abs()))
        radius = self.radius if a is None else self.radius * a
        unit = self.unit if (a is None or self.unit is None) else self.unit * a[0]
        return DiagonalInput(center, radius, self.idmap, self.table, torch.broadcast_to(err, c.shape).clone(),
                             self.eps, unit, node.name)

    def slice(self, index: tuple = ()) -> ZVal:
        key = (slice(None),) + tuple(index)
        c, r, m = self.center[key], self.radius[key], self.idmap[tuple(index)]
        B = c.shape[0]
        mf, rf = m.reshape(-1), r.reshape(B, -1)
        cols = (mf >= 0).nonzero().flatten()
        ids, order = torch.sort(mf[cols])
        cols = cols[order]
        k = cols.numel()
        G = rf.new_zeros((B, k, rf.shape[1]))
        G[:, torch.arange(k, device=G.device), cols] = rf[:, cols]
        z = Zonotope(c, G.reshape(B, k, *c.shape[1:]), ids, self.table)
        return ZVal(z, self.err[key])


def input_zonotope(run: ZonotopeRun) -> DiagonalInput:
    """The input set (see the module docstring for ball ∩ box): L∞ as the clipped box, L2 / L1 as one
    jointly constrained group over the features that are perturbed in some batch row (exact: a feature with
    radius 0 contributes nothing whatever its symbol's value)."""
    spec = run.ctx.spec
    c = spec.center
    if spec.is_box:
        box = spec.box()
        center = (box.lower + box.upper) / 2
        radius = torch.maximum(box.upper - center, center - box.lower)
        err = run.gamma(2) * (center.abs() + radius)
    else:
        eps = spec.eps.reshape((-1,) + (1,) * (c.dim() - 1))
        radius = torch.broadcast_to(eps * (1.0 if spec.scale is None else spec.scale), c.shape).clone()
        center = c
        err = run.gamma(2) * radius
    B = c.shape[0]
    live = (radius.reshape(B, -1) != 0).any(0)
    if spec.frame_norm is None:
        ids = run.table.fresh(int(live.sum()), norm=spec.norm, label="input", device=c.device)
    else:  # per-frame balls: one jointly constrained group per frame, the groups independent
        lv = live.reshape(spec.frames, -1)
        ids = torch.cat([run.table.fresh(int(lv[t].sum()), norm=spec.frame_norm, label="input", device=c.device)
                         for t in range(spec.frames)])
    idmap = torch.full((live.numel(),), -1, dtype=torch.int64, device=c.device)
    idmap[live] = ids
    l2, unit = (spec.frame_norm or spec.norm) == "2" and not spec.is_box, None
    if l2:
        ones = torch.ones(c.shape[1:], dtype=c.dtype, device=c.device)
        unit = ones if spec.scale is None else torch.broadcast_to(spec.scale.to(c.dtype), c.shape)[0]
    return DiagonalInput(center, radius, idmap.reshape(c.shape[1:]), run.table, err,
                         spec.eps.reshape(-1).to(c.dtype) if l2 else None, unit, run.ctx.graph.input_name)


def commute_slices(graph: Graph) -> Graph:
    """An equivalent graph in which a Linear over a sequence (T, d) -> (T, m) whose consumers are all
    Slices of leading dims (frames) is computed per slice instead: Slice(Linear(x), i) = Linear(Slice(x, i)).
    Exact (the same arithmetic per output element); it lets each frame's zonotope carry only its own input
    symbols instead of a dense (T, d) generator block for every symbol."""
    nodes: list[Node] = []
    drop: set[str] = set()
    replace: dict[str, list[Node]] = {}
    for name in graph.order[1:]:
        n = graph.nodes[name]
        if n.op.kind != "linear" or len(graph.nodes[n.inputs[0]].shape) < 2 or name == graph.output_name:
            continue
        cons = [graph.nodes[c] for c in graph.consumers(name)]
        if not cons or not all(c.op.kind == "slice" and c.inputs == (name,) and
                               len(c.op.index) < len(n.shape) and
                               all(isinstance(i, (int, slice)) for i in c.op.index) for c in cons):
            continue
        x = n.inputs[0]
        xs = graph.nodes[x].shape
        for c in cons:
            pre_shape = tuple(torch.zeros(xs)[tuple(c.op.index)].shape)
            pre = Node(f"{c.name}__frames", Slice(xs, c.op.index), (x,), pre_shape)
            replace[c.name] = [pre, Node(c.name, n.op, (pre.name,), c.shape)]
        drop.add(name)
    if not drop:
        return graph
    for name in graph.order:
        if name in drop:
            continue
        nodes.extend(replace.get(name, [graph.nodes[name]]))
    return Graph(nodes, graph.output_name)


__all__ = ["DiagonalInput", "input_zonotope", "commute_slices"]
