"""ONNX ops that select, combine or reduce elements: ``Concat`` (constants beside layer outputs become
constant nodes), ``Slice`` (negative steps as single-position slices), ``Gather`` with constant indices,
``Split`` and ``ReduceMean`` / ``ReduceSum`` over per-sample axes."""
from __future__ import annotations

import numpy as np
import torch

from ..ops.affine import Linear
from ..ops.shape import Concat, Permute, Reshape, Slice
from .onnx_importer import Importer, Val, const_ints, const_value, variable
from .onnx_registry import register_onnx


def const_node(imp: Importer, like: str, value: np.ndarray) -> str:
    """A node holding a constant per sample (the same for every sample), made exactly from a node of the
    graph: a zero-weight Linear of its first element plus the value as bias."""
    b = imp.b
    flat = b.add(Reshape(b.shape(like), (int(np.prod(b.shape(like))),)), [like])
    first = b.add(Slice(b.shape(flat), (slice(0, 1),)), [flat])
    value = np.asarray(value, dtype=np.float64)
    n = int(value.size)
    node = b.add(Linear(torch.zeros((n, 1), dtype=b.dtype), imp.torch_const(value.reshape(-1))), [first])
    return node if value.shape == (n,) else b.add(Reshape((n,), tuple(value.shape)), [node])


@register_onnx("Concat")
def _concat(imp: Importer, node, ins, attrs):
    xs = [v for v in ins if v is not None]
    var = [v for v in xs if not v.is_const]
    if var and any(v.is_const for v in xs):
        # constants beside layer outputs: constant nodes, per sample (their batch entry must be 1)
        ref = var[0]
        r = imp.rank(ref)
        out = []
        for v in xs:
            if v.is_const:
                c = np.asarray(v.const, dtype=np.float64)
                if c.ndim != r:
                    raise imp.error(f"Concat of a rank-{c.ndim} constant with a rank-{r} tensor")
                if ref.batched:
                    if c.shape[ref.batch] != 1:
                        raise imp.unsupported("Concat of a constant that differs between samples")
                    c = np.take(c, 0, axis=ref.batch)
                v = Val(name=const_node(imp, imp.b.input_name, c), batch=ref.batch)
            out.append(v)
        xs = out
    if len({v.batch for v in xs}) != 1:
        raise imp.unsupported("Concat of tensors with the batch in different dimensions (or none)")
    dim = imp.axis(xs[0], int(attrs["axis"]))
    sizes = tuple(imp.b.shape(v.name)[dim] for v in xs)
    if len(xs) == 1:
        return [xs[0]]
    return [imp.add(Concat(dim, sizes), xs, xs[0].batch)]


@register_onnx("Slice")
def _slice(imp: Importer, node, ins, attrs):
    x = variable(imp, ins[0])
    if "starts" in attrs:  # opset < 10
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = const_ints(ins[1], imp, "starts"), const_ints(ins[2], imp, "ends")
        axes = const_ints(ins[3], imp, "axes") if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
        steps = const_ints(ins[4], imp, "steps") if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    per = imp.b.shape(x.name)
    index = [slice(None)] * len(per)
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise imp.error("Slice with step 0")
        if x.batched and a % imp.rank(x) == x.batch:
            # slicing the batch dimension: fine when it keeps all of it (an identity)
            if st == 1 and s == 0 and e >= 2 ** 30:
                continue
            raise imp.unsupported("Slice of the batch dimension")
        d = imp.axis(x, a)
        n = per[d]
        if st > 0:
            s = max(0, min(n, s + n if s < 0 else s))
            e = max(0, min(n, e + n if e < 0 else e))
            index[d] = slice(s, e, st)
        else:  # negative steps: the elements s, s + st, ... while > e, as explicit indices
            s = max(-1, min(n - 1, s + n if s < 0 else s))
            e = max(-1, min(n - 1, e + n if e < 0 else e)) if e >= -n else -1
            idx = list(range(s, e, st))
            index[d] = idx
    if any(isinstance(i, list) for i in index):
        # reversed selections: one Slice per listed axis, as a gather of single positions + Concat
        cur = x
        for d, ix in enumerate(index):
            if not isinstance(ix, list):
                continue
            shape = imp.b.shape(cur.name)
            parts = []
            for i in ix:
                sel = [slice(None)] * len(shape)
                sel[d] = slice(i, i + 1)
                parts.append(imp.add(Slice(shape, tuple(sel)), [cur], cur.batch))
            if not parts:
                raise imp.unsupported("Slice selecting nothing")
            sizes = tuple(1 for _ in parts)
            cur = parts[0] if len(parts) == 1 else imp.add(Concat(d, sizes), parts, cur.batch)
            index[d] = slice(None)
        if all(i == slice(None) for i in index):
            return [cur]
        return [imp.add(Slice(imp.b.shape(cur.name), tuple(index)), [cur], cur.batch)]
    return [imp.add(Slice(per, tuple(index)), [x], x.batch)]


@register_onnx("Gather")
def _gather(imp: Importer, node, ins, attrs):
    x = variable(imp, ins[0])
    idx = np.asarray(const_value(imp, ins[1], "indices"))
    if idx.ndim > 1:
        raise imp.unsupported("Gather on a layer output with indices of rank > 1")
    per = imp.b.shape(x.name)
    a = int(attrs.get("axis", 0)) % imp.rank(x)
    d = imp.axis(x, a)
    batch = None if not x.batched else (x.batch - 1 if a < x.batch and idx.ndim == 0 else x.batch)
    if idx.ndim == 0:
        i = int(idx)
        i = i + per[d] if i < 0 else i
        if not 0 <= i < per[d]:
            raise imp.error(f"Gather index {int(idx)} out of range for a dimension of size {per[d]}")
        index = [slice(None)] * len(per)
        index[d] = i
        return [imp.add(Slice(per, tuple(index)), [x], batch)]
    # a vector of indices: one slice each, concatenated along the axis
    parts = []
    for i in idx.reshape(-1).tolist():
        i = int(i) + per[d] if int(i) < 0 else int(i)
        if not 0 <= i < per[d]:
            raise imp.error(f"Gather index {i} out of range for a dimension of size {per[d]}")
        sel = [slice(None)] * len(per)
        sel[d] = slice(i, i + 1)
        parts.append(imp.add(Slice(per, tuple(sel)), [x], batch))
    if len(parts) == 1:
        return parts
    return [imp.add(Concat(d, tuple(1 for _ in parts)), parts, batch)]


@register_onnx("ReduceMean", "ReduceSum")
def _reduce(imp: Importer, node, ins, attrs):
    """Mean / sum over per-sample axes: a Linear over the reduced axes (moved last and flattened)."""
    x = variable(imp, ins[0])
    r = imp.rank(x)
    if "axes" in attrs:
        axes = [int(a) for a in attrs["axes"]]
    elif len(ins) > 1 and ins[1] is not None:
        axes = const_ints(ins[1], imp, "axes")
    else:
        axes = []
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(r))
    axes = sorted({a % r for a in axes})
    if x.batched and x.batch in axes:
        raise imp.unsupported(f"{node.op_type} over the batch dimension")
    keep = bool(attrs.get("keepdims", 1))
    per = imp.b.shape(x.name)
    red = [imp.axis(x, a) for a in axes]
    rest = [i for i in range(len(per)) if i not in red]
    n = int(np.prod([per[i] for i in red]))
    cur = x.name
    perm = tuple(rest + red)
    if perm != tuple(range(len(per))):
        cur = imp.b.add(Permute(perm), [cur])
    flat = tuple(per[i] for i in rest) + (n,)
    cur = imp.b.add(Reshape(imp.b.shape(cur), flat), [cur])
    w = np.full((1, n), 1.0 / n if node.op_type == "ReduceMean" else 1.0)
    cur = imp.b.add(Linear(imp.torch_const(w), None), [cur])
    if keep:
        out_per = tuple(1 if i in red else per[i] for i in range(len(per)))
        batch = x.batch
    else:
        out_per = tuple(per[i] for i in rest)
        batch = None if not x.batched else x.batch - sum(1 for a in axes if a < x.batch)
    if not out_per:
        raise imp.unsupported(f"{node.op_type} to a scalar per sample")
    return [imp.add(Reshape(imp.b.shape(cur), out_per), [Val(name=cur)], batch)]


@register_onnx("Split")
def _split(imp: Importer, node, ins, attrs):
    """Consecutive Slices along one axis (sizes from the `split` attribute or input, or equal parts)."""
    x = variable(imp, ins[0])
    per = imp.b.shape(x.name)
    a = int(attrs.get("axis", 0)) % imp.rank(x)
    d = imp.axis(x, a)
    n_out = len(node.output)
    if "split" in attrs:
        sizes = [int(s) for s in attrs["split"]]
    elif len(ins) > 1 and ins[1] is not None:
        sizes = const_ints(ins[1], imp, "split")
    else:
        k = int(attrs.get("num_outputs", n_out))
        step = -(-per[d] // k)
        sizes = [min(step, per[d] - i * step) for i in range(k)]
    if sum(sizes) != per[d] or len(sizes) != n_out:
        raise imp.error(f"Split sizes {sizes} do not fit a dimension of {per[d]} into {n_out} outputs")
    outs, start = [], 0
    for s in sizes:
        index = [slice(None)] * len(per)
        index[d] = slice(start, start + s)
        outs.append(imp.add(Slice(per, tuple(index)), [x], x.batch))
        start += s
    return outs
