"""Graph passes: rewrites of the IR that keep the function it computes.

`unroll_convs` replaces every convolutional affine op (Conv, ZeroPad, AvgPool, GlobalAvgPool) by its
*dense form*, a `DenseAffine` whose weight is the op's Jacobian (n_out x n_in). The same engines then run
on both forms, which is how the conv form is checked (bounds equal to 1e-9) and how its speed and memory
are compared (benchmarks/cnn_mnist.py). The dense form needs n_out * n_in numbers per layer: use it on
small inputs only.

`fold_batchnorm` folds a per-channel ElementwiseAffine (eval-mode BatchNorm) into the Conv right before
it when the conv's output feeds nothing else: W' = W * s (per output channel), b' = b * s + t.
"""
from __future__ import annotations

import torch

from ..ops.affine import ElementwiseAffine, Linear
from ..ops.conv import Conv, DenseAffine, SpatialAffineOp
from ..ops.shape import Concat, Permute, Reshape, Slice
from .ir import Graph, Node


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def dense_form(op: SpatialAffineOp, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
               dtype: torch.dtype = torch.float64) -> DenseAffine:
    """The DenseAffine equal to `op` on inputs of shape in_shape: weight = Jacobian, bias = op(0)."""
    n_out, n_in = _numel(out_shape), _numel(in_shape)
    eye = torch.eye(n_out, dtype=dtype).reshape((1, n_out) + tuple(out_shape))
    W = op.transpose(eye, tuple(in_shape)).reshape(n_out, n_in)
    b = op.forward(torch.zeros((1,) + tuple(in_shape), dtype=dtype)).reshape(n_out)
    return DenseAffine(W.contiguous(), b if bool((b != 0).any()) else None, in_shape, out_shape)


def unroll_convs(graph: Graph) -> Graph:
    """A copy of graph with every SpatialAffineOp replaced by its dense form (same node names)."""
    nodes = []
    for name in graph.order:
        n = graph.nodes[name]
        if isinstance(n.op, SpatialAffineOp):
            in_shape = graph.nodes[n.inputs[0]].shape
            dtype = getattr(n.op, "weight", torch.zeros((), dtype=torch.float64)).dtype
            n = Node(n.name, dense_form(n.op, in_shape, n.shape, dtype), n.inputs, n.shape)
        nodes.append(n)
    return Graph(nodes, graph.output_name)


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold per-channel ElementwiseAffine nodes into a preceding Conv whose only consumer they are."""
    nodes: dict[str, Node] = {}
    rename: dict[str, str] = {}
    for name in graph.order:
        n = graph.nodes[name]
        inputs = tuple(rename.get(i, i) for i in n.inputs)
        n = Node(n.name, n.op, inputs, n.shape)
        src = nodes.get(inputs[0]) if inputs else None
        if (isinstance(n.op, ElementwiseAffine) and src is not None and isinstance(src.op, Conv)
                and graph.consumers(src.name) == [name] and src.name != graph.output_name
                and _per_channel(n.op, n.shape)):
            nodes[src.name] = Node(src.name, folded_conv(src.op, n.op), src.inputs, src.shape)
            rename[name] = src.name
            continue
        nodes[name] = n
    out = rename.get(graph.output_name, graph.output_name)
    return Graph(list(nodes.values()), out)


def folded_conv(conv: Conv, bn: ElementwiseAffine) -> Conv:
    """The Conv computing bn(conv(x)) for a per-channel bn (`foldable`): W' = W * s per output channel,
    b' = b * s + t (the same function; rounding aside)."""
    C = conv.weight.shape[0]
    like = conv.weight
    s = (bn.scale.reshape(-1) if bn.scale is not None else like.new_ones(1)).expand(C)
    t = (bn.shift.reshape(-1) if bn.shift is not None else like.new_zeros(1)).expand(C)
    w = conv.weight * s.reshape((C,) + (1,) * (conv.weight.ndim - 1))
    b = (conv.bias if conv.bias is not None else like.new_zeros(C)) * s + t
    return Conv(w, b, conv.stride, conv.padding, conv.dilation, conv.groups)


def foldable(graph: Graph, name: str) -> bool:
    """True when node `name` is a per-channel ElementwiseAffine (eval-mode BatchNorm) right after a Conv
    whose only consumer it is (and which is not the output): bn(conv(x)) is then one conv."""
    n = graph.nodes[name]
    if not isinstance(n.op, ElementwiseAffine) or len(n.inputs) != 1:
        return False
    src = graph.nodes[n.inputs[0]]
    return (isinstance(src.op, Conv) and graph.consumers(src.name) == [name] and src.name != graph.output_name
            and _per_channel(n.op, n.shape))


def _per_channel(op: ElementwiseAffine, shape: tuple[int, ...]) -> bool:
    for t in (op.scale, op.shift):
        if t is None or t.ndim == 0:
            continue
        if t.ndim > len(shape) or any(d != 1 for d in t.shape[1:]) or t.shape[0] not in (1, shape[0]) \
                or t.ndim != len(shape):
            return False
    return True


# ---------------------------------------------------------------- selections


_MOVES = ("reshape", "slice", "permute", "concat")


def _is_move(op) -> bool:
    """Ops that only move values around (every output element is one input element)."""
    return isinstance(op, (Reshape, Slice, Permute, Concat))


def simplify_selections(graph: Graph) -> Graph:
    """The same function with data-movement chains that merely re-select an existing node replaced by it.

    Importers of ONNX recurrent models build the output sequence Y by concatenating the step nodes and
    then transposing, reshaping and slicing it (``Y[-1]``, ``Y_h``); the next layer's input projection is a
    ``Linear`` over that sequence followed by one ``Slice`` per step. This pass

    * traces, for every chain of Reshape / Slice / Permute / Concat nodes, which element of which node each
      output element is (int64 "origin" tensors pushed through the ops' own forward); a node whose origin
      is exactly another node's elements in order is that node (reshaped if the shapes differ);
    * rewrites ``Slice(Linear(X))`` that keeps the last dimension as ``Linear(Slice(X))`` when that slice of X
      is an existing node (the per-step ``Linear`` PyTorch's unrolling emits for deeper layers);

    and drops nodes nothing uses any more. Exact: every replacement computes the same values (selections
    and a Linear applied row by row). The result is the graph ``from_torch`` builds for the module an ONNX
    recurrent model was exported from.
    """
    sel = _Selections(graph)
    for name in graph.order:
        node = graph.nodes[name]
        if _is_move(node.op) and sel.move(name, node):
            continue
        if sel.sliced_linear(name, node):
            continue
        ins = tuple(sel.rename.get(i, i) for i in node.inputs)
        sel.nodes.append(Node(name, node.op, ins, node.shape))
    out = sel.rename.get(graph.output_name, graph.output_name)
    g = Graph(_sink(sel.nodes, sel.deferred), out)
    keep = set(g.ancestors(g.output_name))
    return Graph([g.nodes[n] for n in g.order if n in keep], g.output_name)


class _Selections:
    """The state of simplify_selections: the origin of every data-movement node (which element of which
    node each of its elements is: node id * BIG + flat index), the nodes kept so far, renamed nodes and the
    per-step Linear nodes to move just before their first consumer."""

    BIG = 1 << 40

    def __init__(self, graph: Graph):
        self.graph = graph
        self.ids = {name: k + 1 for k, name in enumerate(graph.order)}
        self.origin: dict[str, torch.Tensor] = {}
        self.by_origin: dict[bytes, str] = {}  # kept data-movement nodes, by the elements they hold
        self.nodes: list[Node] = []
        self.rename: dict[str, str] = {}  # old node -> node that replaces it
        self.deferred: set[str] = set()  # per-step Linear nodes, moved to just before their first consumer

    def own(self, name: str) -> torch.Tensor:
        shape = self.graph.nodes[name].shape
        return (self.ids[name] * self.BIG + torch.arange(_numel(shape), dtype=torch.int64)).reshape((1,) + tuple(shape))

    def origin_of(self, name: str) -> torch.Tensor:
        return self.origin[name] if name in self.origin else self.own(name)

    def alias_of(self, o: torch.Tensor) -> str | None:
        """The node whose elements o is, in order (or a kept data-movement node holding them); None if none."""
        flat = o.reshape(-1)
        if flat.numel() == 0:
            return None
        src = int(flat[0]) // self.BIG
        name = self.graph.order[src - 1]
        want = self.own(name).reshape(-1)
        if flat.shape == want.shape and torch.equal(flat, want):
            return name
        return self.by_origin.get(flat.numpy().tobytes())

    def move(self, name: str, node: Node) -> bool:
        """Record a data-movement node's origin; True when it re-selects an existing node and was replaced
        by it (reshaped if the shapes differ)."""
        o = node.op.forward(*[self.origin_of(i) for i in node.inputs])
        self.origin[name] = o
        src = self.alias_of(o)
        if src is not None and src != name:
            target = self.rename.get(src, src)
            tshape = self.graph.nodes[src].shape
            if tshape == node.shape:
                self.rename[name] = target
                return True
            self.nodes.append(Node(name, Reshape(tshape, node.shape), (target,), node.shape))
            return True
        self.by_origin.setdefault(o.reshape(-1).numpy().tobytes(), name)
        return False

    def sliced_linear(self, name: str, node: Node) -> bool:
        """Slice(Linear(X)) keeping the last dimension, rewritten as Linear(Slice(X)) when that slice of X is
        an existing node; True when rewritten."""
        if not (isinstance(node.op, Slice) and len(node.inputs) == 1):
            return False
        lin = self.graph.nodes[node.inputs[0]]
        keeps_last = len(node.op.index) < len(lin.shape) or node.op.index[len(lin.shape) - 1:] in ((), (slice(None),))
        if not (isinstance(lin.op, Linear) and keeps_last and len(lin.inputs) == 1):
            return False
        x = lin.inputs[0]
        ox = self.origin_of(x)
        src = self.alias_of(node.op.forward(ox)) if x != self.graph.input_name else None
        if src is None:
            return False
        target = self.rename.get(src, src)
        tshape = self.graph.nodes[src].shape
        want_in = node.shape[:-1] + (lin.op.weight.shape[1],)
        if tshape != want_in:
            rname = f"{name}__in"
            self.nodes.append(Node(rname, Reshape(tshape, want_in), (target,), want_in))
            self.deferred.add(rname)
            target = rname
        self.nodes.append(Node(name, Linear(lin.op.weight, lin.op.bias), (target,), node.shape))
        self.deferred.add(name)
        return True


def _sink(nodes: list[Node], deferred: set[str]) -> list[Node]:
    """The node list with each deferred node moved to just before its first consumer (a per-step input
    projection right before its step, in the order PyTorch's unrolling emits them)."""
    if not deferred:
        return nodes
    pending = {n.name: n for n in nodes if n.name in deferred}
    out: list[Node] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        node = pending.pop(name)
        for i in node.inputs:
            if i in pending:
                place(i)
        out.append(node)
        placed.add(name)

    for n in nodes:
        if n.name in deferred:
            continue
        for i in n.inputs:
            if i in pending:
                place(i)
        out.append(n)
    for name in list(pending):  # consumed by nothing: keep them (pruned later)
        if name in pending:
            place(name)
    return out
