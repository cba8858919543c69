"""Which nodes the backward engine refines (engine/backward.compute_intermediate_bounds): a needed node
made by an exact-image op moves its refinement to its input when every row of that input is needed, and
which nodes' interval images are already exact."""
from __future__ import annotations

from ..ops.affine import ElementwiseAffine
from ..ops.shape import Permute, Reshape, Slice
from .context import RunContext


def _exact_image(op) -> bool:
    """Single-input ops whose interval image is exact per neuron (selections and per-neuron affine maps):
    refining their input and taking the image gives the same bounds as refining them."""
    return isinstance(op, (Slice, Reshape, Permute, ElementwiseAffine))


def refine_targets(ctx: RunContext, need: set[str]) -> set[str]:
    """The nodes the backward engine refines so that every node in `need` gets its tightest bounds.

    A needed node made by an exact-image op (e.g. an LSTM gate sliced out of the joint pre-activation,
    or -z for a GRU) moves the refinement to its input: one backward pass with all rows of the joint node
    replaces one pass per slice, with the same bounds, since the backward bound of a sliced neuron is the
    backward bound of that neuron of the input. Only where every row of the input is needed (or the
    input is an affine chain of the network's input): a GRU's U_n h + b_n slice (the y of r * (U_n h +
    b_n)) is refined on its own, not with the U_z h, U_r h rows of its joint node, which only feed sums
    that are refined themselves (a third of the rows; tests/unit/engine/test_refine_targets.py)."""
    g = ctx.graph
    out = set()
    for name in need:
        cur = name
        while True:
            node = g.nodes[cur]
            if not _exact_image(node.op) or node.inputs[0] == g.input_name or not _refines_all_rows(ctx, cur):
                break
            if not (_all_rows_needed(ctx, node.inputs[0], need) or _affine_from_input(ctx, node.inputs[0])):
                break  # (an affine chain of the input is cheap to refine, and exact on every row)
            cur = node.inputs[0]
        out.add(cur)
    return out


def _all_rows_needed(ctx: RunContext, name: str, need: set[str]) -> bool:
    """True when `name` is needed, or all its consumers are exact-image ops whose rows are all needed."""
    g = ctx.graph
    return name in need or all(_exact_image(g.nodes[c].op) and _all_rows_needed(ctx, c, need)
                               for c in g.consumers(name))


def _refines_all_rows(ctx: RunContext, name: str) -> bool:
    """True when no consumer of `name` can mark neurons as exact (smooth activations, products), so
    refining it would use every row anyway (ReLU consumers keep their per-neuron row selection)."""
    for c in ctx.graph.consumers(name):
        op = ctx.graph.nodes[c].op
        if op.kind in ("sigmoid", "tanh", "arctan", "sigmoid_tanh_mul", "sigmoid_mul", "mul"):
            continue
        if _exact_image(op) and _refines_all_rows(ctx, c):
            continue
        return False
    return True


def _affine_from_input(ctx: RunContext, name: str) -> bool:
    g = ctx.graph
    return all(g.nodes[a].op.affine for a in g.ancestors(name)[1:])


def interval_is_exact(ctx: RunContext, name: str) -> bool:
    """True when `name` is an affine chain of an L-inf box: its interval image is exact per neuron."""
    return ctx.spec.is_box and _affine_from_input(ctx, name) and all(
        len(ctx.graph.nodes[a].inputs) <= 1 for a in ctx.graph.ancestors(name)[1:])


__all__ = ["refine_targets", "interval_is_exact"]
