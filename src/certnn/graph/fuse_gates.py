"""Graph pass: products of a sigmoid gate fused into the two-input ops of ops/product.py.

    Mul(sigmoid(x), tanh(y))        ->  SigmoidTanhMul(x, y)
    Mul(1 - sigmoid(x), tanh(y))    ->  SigmoidTanhMul(-x, y)       (1 - sigma(x) = sigma(-x))
    Mul(sigmoid(x), v)              ->  SigmoidMul(x, v)
    Mul(1 - sigmoid(x), v)          ->  SigmoidMul(-x, v)

(either operand order). The result computes the same function (up to rounding of 1 - sigma(x) against
sigma(-x)). The zonotope methods use it: Cert-RNN's parallel planes bound a fused product on the box of the
gate's *pre-activation*, much tighter than a parallel pair for sigmoid followed by one for the product; the
importer's factored GRU update (graph/gru_update.py) becomes the fused one. Nodes left without consumers
(the sigmoid / tanh nodes) are dropped; every other node keeps its name.
"""
from __future__ import annotations

import torch

from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine
from ..ops.product import SigmoidMul, SigmoidTanhMul
from .ir import Graph, Node


def _is_one_minus(op) -> bool:
    """ElementwiseAffine with scale -1 and shift 1 (scalars): v -> 1 - v."""
    if not isinstance(op, ElementwiseAffine) or op.scale is None or op.shift is None:
        return False
    if op.scale.numel() != 1 or op.shift.numel() != 1:
        return False
    return float(op.scale) == -1.0 and float(op.shift) == 1.0


def _gate(g: Graph, name: str) -> tuple[str, bool] | None:
    """(pre-activation x, negated) when node `name` is sigmoid(x) (False) or 1 - sigmoid(x) (True)."""
    node = g.nodes[name]
    neg = _is_one_minus(node.op)
    if neg:
        node = g.nodes[node.inputs[0]]
    if isinstance(node.op, Activation) and node.op.kind == "sigmoid":
        return node.inputs[0], neg
    return None


def _fused(g: Graph, node: Node) -> list[Node] | None:
    """The nodes replacing the Mul `node` (the last one keeps its name), or None when it has no gate."""
    a, b = node.inputs
    gate = _gate(g, a)
    other = b
    if gate is None:
        gate, other = _gate(g, b), a
    if gate is None or g.nodes[a].shape != g.nodes[b].shape:
        return None
    x, neg = gate
    out: list[Node] = []
    if neg:
        dtype = g.dtype
        op = ElementwiseAffine(torch.tensor(-1.0, dtype=dtype), None)
        out.append(Node(f"{node.name}__neg_gate", op, (x,), g.nodes[x].shape))
        x = out[-1].name
    o = g.nodes[other]
    if isinstance(o.op, Activation) and o.op.kind == "tanh":
        out.append(Node(node.name, SigmoidTanhMul(), (x, o.inputs[0]), node.shape))
    else:
        out.append(Node(node.name, SigmoidMul(), (x, other), node.shape))
    return out


def fuse_gate_products(graph: Graph) -> Graph:
    """`graph` with every Mul of a sigmoid gate fused (see the module docstring); the same graph object
    when there is none."""
    nodes: list[Node] = []
    changed = False
    for name in graph.order:
        node = graph.nodes[name]
        new = _fused(graph, node) if node.op.kind == "mul" else None
        if new is None:
            nodes.append(node)
        else:
            nodes.extend(new)
            changed = True
    if not changed:
        return graph
    full = Graph(nodes, graph.output_name)
    live = set(full.ancestors(full.output_name))
    return Graph([n for n in nodes if n.name in live or n.name == full.input_name], full.output_name)


__all__ = ["fuse_gate_products"]
