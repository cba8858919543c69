"""An L2 input group compressed at the first Linear of the forward zonotope pass (engine/zonotope.py).

Under an L2 ball x = c + eps_b (s * u), ||u||_2 <= 1 (or one such ball per frame), the zonotope of a
Linear y = W x + b over the input (or over one frame of it) carries one symbol per live input feature: k of
them, each with a generator over the m outputs. When m < k (a recurrent cell's input projection, an MLP's
first layer) the same set needs only m symbols: with M = diag(s) W^T (k x m) = Q R (thin QR, Q^T Q = I),

    { M^T u : ||u||_2 <= 1 } = { R^T v : ||v||_2 <= 1 }      (v = Q^T u covers the whole unit ball of R^m),

so the output's generators become eps_b R, a fresh jointly constrained L2 group of m symbols. Every later
node then carries m input symbols per frame instead of k (POPQORN's 7-frame MNIST RNN: 112 -> 64 per frame;
an MNIST MLP's 784 -> its first width), and every later product over the generators shrinks with it. The
QR is shared by the batch (the scale s has no batch dimension; eps_b multiplies R).

Soundness. The new symbols are functions of the old ones (v = Q^T u), so the joint set of every node is
over-approximated even where the old symbols appear in another node too (the argument of
zonotope_run.consolidate). In floating point Q~, R~ are computed from M~ = fl(M): for ||u|| <= 1,
M^T u = R~^T (Q~^T u) + (M - Q~ R~)^T u, where ||Q~^T u|| <= ||Q~||_2 <= sigma = sqrt(1 + ||Q~^T Q~ - I||_F)
(widened for the rounding of that product), so R~^T Q~^T u = (sigma R~)^T v with ||v|| <= 1; and each
output j of the remainder is at most rho_j = ||(M - Q~ R~)_{:,j}||_2, bounded by the computed difference's
column norm plus the rounding of M~ and of the product (gamma bounds, widened for the norms' own
rounding). eps_b rho goes into the node's error bound err (a per-neuron box, sound through every later rule),
with the usual linear-map terms for the centre and a gamma_3 term for the scaling eps_b sigma R~.

Only L2 (the dual norm is invariant under Q; an L1 group is not), only when m < k, and only when the
input's live symbols are one whole L2 group that no other node reads (a frame's own ball, or the ball of
an input with this Linear as its only consumer, after any normalisation the input set was carried through:
zonotope_input.DiagonalInput.through_affine): compressing a part of a ball, or symbols another node
shares, would still be sound but would drop the rest of the ball's constraint or the correlation.
"""
from __future__ import annotations

import math
import weakref

import torch
from torch import Tensor

from ..domains.zonotope import Zonotope
from ..graph.ir import Graph, Node
from .zonotope_affine import linear_err
from .zonotope_input import DiagonalInput
from .zonotope_run import ZonotopeRun, ZVal


def compressed_linear(run: ZonotopeRun, g: Graph, node: Node, diag: DiagonalInput | None) -> ZVal | None:
    """The zonotope of Linear `node` with its input's L2 group compressed (module docstring), read from the
    input set itself, or None where that does not apply (then the ordinary rule runs)."""
    plan = _plan(run, g, node, diag)
    if plan is None:
        return None
    key, cols = plan
    W, b = node.op.weight, node.op.bias
    B = diag.center.shape[0]
    flat = lambda t: t[key].reshape(B, -1)  # noqa: E731  (a flattening reshape keeps the same order)
    c = flat(diag.center)
    R, sigma, rho = _factor_cached(run, W, cols, diag.unit[key[1:]].reshape(-1)[cols])
    eps = diag.eps.to(c.dtype)
    G = (eps * sigma).reshape(-1, 1, 1) * R.unsqueeze(0)  # (B, m symbols, m outputs)
    new_ids = run.table.fresh(W.shape[0], norm="2", label="input", device=c.device)
    center = c @ W.T if b is None else c @ W.T + b
    err = (linear_err(run, flat(diag.err), c.abs() + flat(diag.radius), W, b) + eps.unsqueeze(1) * rho
           + run.gamma(3) * torch.linalg.vector_norm(G, 1, dim=1))
    return ZVal(Zonotope(center, G, new_ids, run.table), err)


def read_by_compressed(run: ZonotopeRun, g: Graph, node: Node, diag: DiagonalInput | None) -> bool:
    """Whether `node` (a slice or flattening of the input) has one consumer, a Linear that compressed_linear
    computes from the input set itself: then `node`'s own zonotope is never read and need not be built."""
    cons = g.consumers(node.name)
    return len(cons) == 1 and _plan(run, g, g.nodes[cons[0]], diag) is not None


def _plan(run: ZonotopeRun, g: Graph, node: Node, diag: DiagonalInput | None) -> tuple[tuple, Tensor] | None:
    """(the input set's index key, the live columns) where Linear `node` is compressed, else None."""
    if diag is None or diag.eps is None or node.op.kind != "linear":
        return None
    index = _input_index(g, node, diag.node)
    if index is None:
        return None
    ids = diag.idmap[tuple(index)]
    W = node.op.weight
    if len(g.nodes[node.inputs[0]].shape) != 1 or W.shape[1] != ids.numel():
        return None  # a Linear over a sequence's last dim: not one vector per sample
    ids = ids.reshape(-1)
    cols = (ids >= 0).nonzero().flatten()
    if int(cols.numel()) <= W.shape[0] or not _sole_user(run, g, node, diag, ids[cols]):
        return None
    return (slice(None),) + tuple(index), cols


def _input_index(g: Graph, node: Node, root: str) -> tuple | None:
    """The index of the input set (node `root`) this Linear reads: () for the set itself or its flattening
    (a reshape of a whole sample to one dim, row-major like the reshape), a Slice's index for a slice."""
    (inp,) = node.inputs
    if inp == root:
        return ()
    src = g.nodes[inp]
    if src.inputs != (root,):
        return None
    if src.op.kind == "slice":
        return tuple(src.op.index)
    if src.op.kind == "reshape" and len(src.shape) == 1:
        return ()
    return None


def _sole_user(run: ZonotopeRun, g: Graph, node: Node, diag: DiagonalInput, ids: Tensor) -> bool:
    """Whether `ids` are one whole L2 group and `node` is the only node that reads any of them (otherwise the
    fresh group would lose a constraint the pass keeps: the rest of a ball split over frames, or the
    correlation with another reader; still sound, but looser)."""
    lo, hi = int(ids.min()), int(ids.max())
    group = [gr for gr in run.table.norm_groups() if gr.norm == "2" and gr.start <= lo and hi < gr.stop]
    if not group or ids.numel() != len(group[0]):
        return False
    (inp,) = node.inputs
    if inp != diag.node:
        if len(g.consumers(inp)) != 1:
            return False
        for other in g.consumers(diag.node):  # other readers of the input: slices of other groups only
            if other == inp:
                continue
            o = g.nodes[other]
            if o.op.kind != "slice":
                return False
            oid = diag.idmap[tuple(o.op.index)]
            if bool(((oid >= group[0].start) & (oid < group[0].stop)).any()):
                return False
        return True
    return len(g.consumers(inp)) == 1


#: the factorisations of the last few (W, live columns, scale) triples: a radius search evaluates the same
#: model at many eps, and the factorisation does not depend on eps (keyed by the weight tensor's identity,
#: held weakly, its version counter, and the columns and scales compared by value)
_CACHE: dict[int, tuple] = {}
_CACHE_SIZE = 32


def _factor_cached(run: ZonotopeRun, W: Tensor, cols: Tensor, unit: Tensor) -> tuple[Tensor, float, Tensor]:
    hit = _CACHE.get(id(W))
    if hit is not None:
        ref, version, u, c, s, out = hit
        if ref() is W and version == W._version and run.unit == u and torch.equal(c, cols) and torch.equal(s, unit):
            return out
    out = _factor(run, unit.unsqueeze(1) * W[:, cols].T)  # M = diag(s) W^T over the live columns (k, m)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[id(W)] = (weakref.ref(W), W._version, run.unit, cols.clone(), unit.clone(), out)
    return out


def _factor(run: ZonotopeRun, M: Tensor) -> tuple[Tensor, float, Tensor]:
    """(R~, sigma, rho) of the module docstring for M~ (k, m): R~ (m, m), sigma >= ||Q~||_2, rho (m,) >=
    the column norms of M - Q~ R~ (M the exact product M~ was rounded from)."""
    Q, R = torch.linalg.qr(M, mode="reduced")
    k, m = M.shape
    u = run.unit
    Qa = Q.abs()
    dev = torch.linalg.matrix_norm(Q.T @ Q - torch.eye(m, dtype=M.dtype, device=M.device)).item()
    dev += (run.gamma(k + 2) * torch.linalg.matrix_norm(Qa.T @ Qa)).item()
    sigma = math.sqrt(1.0 + 2.0 * dev) * (1.0 + 8.0 * u)
    P = Q @ R
    D = M - P
    slack = 2.0 * u * M.abs() + run.gamma(m + 2) * (Qa @ R.abs()) + u * D.abs()
    rho = (torch.linalg.vector_norm(D, dim=0) + torch.linalg.vector_norm(slack, dim=0)) * (1.0 + run.gamma(k + 2))
    return R, sigma, rho


__all__ = ["compressed_linear", "read_by_compressed"]
