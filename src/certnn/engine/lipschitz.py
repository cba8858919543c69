"""Global-Lipschitz baseline: a certified radius from products of operator norms.

For a chain x -> W_1 -> act -> ... -> W_L, the margin g = c^T f satisfies

    |g(x) - g(x')| <= ||W_L^T c||_q * prod_{k<L} Lip(act_k) * ||W_k||_{p->p} * ||x - x'||_p,

with q the dual exponent of p. Operator norms: p = inf -> max row abs-sum; p = 1 -> max column abs-sum;
p = 2 -> largest singular value (computed by SVD and inflated by 1e-9 relative for rounding).
This is sound but loose: the baseline the other methods are compared against.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import dual_exponent
from ..errors import UnsupportedOpError
from ..graph.ir import Graph
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.shape import Reshape

SUPPORTED = ("linear (last op)", "linear", "elementwise_affine", "reshape", "relu", "leaky_relu", "sigmoid",
             "tanh", "arctan", "hardtanh")


def operator_norm(W: Tensor, norm: str) -> Tensor:
    if norm == "inf":
        return W.abs().sum(1).max()
    if norm == "1":
        return W.abs().sum(0).max()
    return torch.linalg.matrix_norm(W, ord=2) * (1 + 1e-9)


def lipschitz_constants(graph: Graph, C: Tensor, norm: str, scale: Tensor | None = None) -> Tensor:
    """Upper bounds (B, S) on the Lp->R Lipschitz constants of x -> C[b, s] · f(x)."""
    chain = graph.order[1:]
    for prev, name in zip(graph.order, chain):
        if graph.nodes[name].inputs != (prev,):
            raise UnsupportedOpError(f"graph node {name!r} (the lipschitz method needs a plain chain)", SUPPORTED)
    last = graph.nodes[graph.output_name]
    if not isinstance(last.op, Linear) or len(graph.nodes[last.inputs[0]].shape) != 1:
        raise UnsupportedOpError(f"last op {last.op.describe()} for lipschitz (it must be a Linear layer)", SUPPORTED)
    L = torch.ones((), dtype=C.dtype, device=C.device)
    for name in chain[:-1]:
        op = graph.nodes[name].op
        if isinstance(op, Linear):
            L = L * operator_norm(op.weight, norm)
        elif isinstance(op, ElementwiseAffine):
            if op.scale is not None:
                L = L * op.scale.abs().max()
        elif isinstance(op, Reshape):
            pass
        elif isinstance(op, Activation):
            L = L * op.lipschitz()
        else:
            raise UnsupportedOpError(f"op {op.describe()} for lipschitz", SUPPORTED)
    if scale is not None:
        L = L * scale.abs().max()
    row = C.reshape(C.shape[0], C.shape[1], -1) @ last.op.weight  # (B, S, in)
    q = dual_exponent(norm)
    return torch.linalg.vector_norm(row, ord=q, dim=-1) * L
