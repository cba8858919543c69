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

from ..ops.affine import ElementwiseAffine
from ..ops.conv import Conv, DenseAffine, SpatialAffineOp
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
            conv = src.op
            C = conv.weight.shape[0]
            s = (n.op.scale.reshape(-1) if n.op.scale is not None else torch.ones(1, dtype=conv.weight.dtype)).expand(C)
            t = (n.op.shift.reshape(-1) if n.op.shift is not None else torch.zeros(1, dtype=conv.weight.dtype)).expand(C)
            w = conv.weight * s.reshape((C,) + (1,) * (conv.weight.ndim - 1))
            b = (conv.bias if conv.bias is not None else torch.zeros(C, dtype=w.dtype)) * s + t
            nodes[src.name] = Node(src.name, Conv(w, b, conv.stride, conv.padding, conv.dilation, conv.groups),
                                   src.inputs, src.shape)
            rename[name] = src.name
            continue
        nodes[name] = n
    out = rename.get(graph.output_name, graph.output_name)
    return Graph(list(nodes.values()), out)


def _per_channel(op: ElementwiseAffine, shape: tuple[int, ...]) -> bool:
    for t in (op.scale, op.shift):
        if t is None or t.ndim == 0:
            continue
        if t.ndim > len(shape) or any(d != 1 for d in t.shape[1:]) or t.shape[0] not in (1, shape[0]) \
                or t.ndim != len(shape):
            return False
    return True
