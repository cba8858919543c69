"""Indexing, pooling and layout changes on recurrent layers' outputs (graph/recurrent.py's virtual
values): ``out[:, t]``, ``h_n[-1]``, ``x.shape[0]``, ``out.mean(1)`` / ``sum`` over one dim, and
permutes / transposes that swap batch and time."""
from __future__ import annotations

import torch

from ..errors import UnsupportedOpError
from ..ops.affine import Linear
from ..ops.shape import Permute, Reshape, Slice
from .ir import GraphBuilder
from .recurrent_values import BATCH, NOT_HANDLED, RECURRENT_SUPPORTED, Seq, ShapeOf, Stacked, TimeMajor


def _norm_index(idx) -> tuple:
    return idx if isinstance(idx, tuple) else (idx,)


def _apply_rest(b: GraphBuilder, name: str, rest: tuple) -> str:
    if all(r == slice(None) for r in rest) or not rest:
        return name
    return b.add(Slice(b.shape(name), rest), [name])


def getitem(b: GraphBuilder, obj, idx, where: str):
    if isinstance(obj, (tuple, list)):
        return obj[idx]
    if isinstance(obj, ShapeOf):
        if idx == 0:
            return BATCH
        if isinstance(idx, int):
            return b.shape(obj.name)[idx - 1 if idx > 0 else idx]
        raise UnsupportedOpError(f"x.shape[{idx!r}]", RECURRENT_SUPPORTED, where=where)
    if isinstance(obj, Stacked):
        idx = _norm_index(idx)
        first, rest = idx[0], idx[1:]
        if rest and rest[0] != slice(None):
            raise UnsupportedOpError("indexing h_n along the batch dimension", RECURRENT_SUPPORTED, where=where)
        rest = rest[1:]
        if isinstance(first, int):
            return _apply_rest(b, obj.items[first], rest)
        if isinstance(first, slice) and not rest:
            return Stacked(obj.items[first])
        raise UnsupportedOpError(f"indexing h_n with {idx!r}", RECURRENT_SUPPORTED, where=where)
    if isinstance(obj, Seq):
        idx = _norm_index(idx)
        if obj.time_major:
            t, rest = idx[0], idx[1:]
            if rest and rest[0] != slice(None):
                raise UnsupportedOpError("indexing a time-major output along the batch", RECURRENT_SUPPORTED,
                                         where=where)
            rest = rest[1:]
        else:
            if idx[0] != slice(None):
                raise UnsupportedOpError("indexing along the batch dimension", RECURRENT_SUPPORTED, where=where)
            t, rest = (idx[1] if len(idx) > 1 else slice(None)), idx[2:]
        if isinstance(t, int):
            return _apply_rest(b, obj.steps[t], rest)
        if isinstance(t, slice):
            return Seq([_apply_rest(b, s, rest) for s in obj.steps[t]], obj.time_major)
        raise UnsupportedOpError(f"indexing a recurrent output with {idx!r}", RECURRENT_SUPPORTED, where=where)
    if isinstance(obj, TimeMajor):
        idx = _norm_index(idx)
        t, rest = idx[0], idx[1:]
        if rest and rest[0] != slice(None):
            raise UnsupportedOpError("indexing a time-major tensor along the batch", RECURRENT_SUPPORTED,
                                     where=where)
        rest = rest[1:]
        if not isinstance(t, (int, slice)) or not all(isinstance(r, (int, slice)) for r in rest):
            raise UnsupportedOpError(f"indexing with {idx!r}", ["basic slices and integers"], where=where)
        out = b.add(Slice(b.shape(obj.name), (t,) + rest), [obj.name])
        return out if isinstance(t, int) else TimeMajor(out)
    return NOT_HANDLED


def reduce_dim(b: GraphBuilder, x, dim, keepdim: bool, mean: bool, where: str):
    """sum / mean over one torch dim of x (a node, Seq or TimeMajor), as Permute + Linear + Reshape."""
    if isinstance(dim, (tuple, list)):
        if len(dim) != 1:
            raise UnsupportedOpError("reduction over several dims", ["sum/mean over one dim"], where=where)
        dim = dim[0]
    if dim is None:
        raise UnsupportedOpError("reduction over all dims (incl. the batch)", ["sum/mean over one dim"], where=where)
    wrap = False
    if isinstance(x, Seq):
        x = x.node(b) if not x.time_major else TimeMajor(x.node(b))
    if isinstance(x, TimeMajor):
        nd = len(b.shape(x.name)) + 1
        dim = dim % nd
        if dim == 1:
            raise UnsupportedOpError("reduction over the batch dimension", ["sum/mean over per-sample dims"],
                                     where=where)
        k = 0 if dim == 0 else dim - 1
        wrap = dim != 0
        name = x.name
    elif isinstance(x, str):
        nd = len(b.shape(x)) + 1
        dim = dim % nd
        if dim == 0:
            raise UnsupportedOpError("reduction over the batch dimension", ["sum/mean over per-sample dims"],
                                     where=where)
        k, name = dim - 1, x
    else:
        return NOT_HANDLED
    shape = b.shape(name)
    n = shape[k]
    if len(shape) == 1 and not keepdim:
        raise UnsupportedOpError("reduction to a scalar per sample", ["sum/mean keeping a feature dim"], where=where)
    perm = [i for i in range(len(shape)) if i != k] + [k]
    y = name if perm == list(range(len(shape))) else b.add(Permute(tuple(perm)), [name])
    w = torch.full((1, n), (1.0 / n) if mean else 1.0, dtype=b.dtype)
    y = b.add(Linear(w, None), [y])
    kept = tuple(s for i, s in enumerate(shape) if i != k)
    out_shape = shape[:k] + (1,) + shape[k + 1:] if keepdim else kept
    y = b.add(Reshape(b.shape(y), out_shape), [y])
    return TimeMajor(y) if wrap else y


def swap01(b: GraphBuilder, x, perm: list[int], where: str):
    """permute/transpose that swaps torch dims 0 and 1 (batch <-> time) and keeps the rest."""
    nd = len(perm)
    if sorted(perm) != list(range(nd)) or perm[:2] != [1, 0] or perm[2:] != list(range(2, nd)):
        return NOT_HANDLED
    if isinstance(x, TimeMajor):
        return x.name
    if isinstance(x, Seq):
        return Seq(x.steps, not x.time_major)
    if isinstance(x, Stacked):  # (L*D, B, H) -> (B, L*D, H)
        return Seq(x.items, False).node(b)
    if isinstance(x, str):
        return TimeMajor(x)
    return NOT_HANDLED
