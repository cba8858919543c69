"""Conv + BatchNorm pushed back in one step by the backward engine.

An eval-mode BatchNorm after a conv is a per-channel affine map, s * conv(x; W, b) + t = conv(x; W s, b s + t)
(`certnn.graph.passes.folded_conv`). The graph keeps both nodes (their names are what intermediate bounds,
optimisers and branching refer to), but a backward pass that reaches the BatchNorm pushes its coefficients
straight through the folded conv to the conv's input: one transposed conv instead of a transposed conv and
an elementwise product (with, on patch windows, two gathers of the per-channel scale and shift) per pass.

Taken when the conv's only consumer is the BatchNorm (nothing else can hand the conv coefficients), nobody
captures the conv's coefficients, and the pass is not float32-sound (its rounding bounds are per step).
Exactness: the same linear function; the bounds differ only by the rounding of W s and of the sums, which
are ~1 ulp of the products (tests: tests/unit/engine/test_fold.py, to 1e-12 relative).

The folded ops are built once per run context (a few tiny tensor products) and kept in `ctx.memo`.
"""
from __future__ import annotations

from ..graph.ir import Node
from ..graph.passes import folded_conv, foldable
from .context import RunContext

_KEY = "folded_bn"


def backward_node(ctx: RunContext, name: str) -> Node:
    """The node a backward pass pushes the coefficients of `name` through: for a BatchNorm right after a
    conv, the folded conv with the conv's inputs (the conv itself then receives no coefficients);
    otherwise the graph's node."""
    folded = ctx.memo.get(_KEY)
    if folded is None:
        folded = ctx.memo[_KEY] = _folded_nodes(ctx)
    node = folded.get(name)
    if node is None or ctx.rounding is not None or ctx.graph.nodes[name].inputs[0] in ctx.capture:
        return ctx.graph.nodes[name]
    return node


def _folded_nodes(ctx: RunContext) -> dict[str, Node]:
    """BatchNorm node -> its folded conv as a node (named after the BatchNorm, with the conv's inputs)."""
    g = ctx.graph
    out = {}
    for name in g.order:
        if foldable(g, name):
            conv = g.nodes[g.nodes[name].inputs[0]]
            out[name] = Node(name, folded_conv(conv.op, g.nodes[name].op), conv.inputs, conv.shape)
    return out
