"""ONNX shape ops that keep every element: ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``,
``Transpose`` (the batch axis moves with them), ``Shape`` (a constant, batch reported as 1) and ``Cast``
(to a float type: the identity)."""
from __future__ import annotations

import numpy as np

from ..ops.shape import Permute, Reshape
from .onnx_importer import Importer, Val, const_ints, variable
from .onnx_registry import register_onnx


def _reshape_to(imp: Importer, x: Val, onnx_shape: list[int], batch_at: int | None = None) -> Val:
    """Reshape a value to an ONNX target shape with -1 / 0 already resolved against x's ONNX shape (batch
    reported as 1). ``batch_at``: the target position known to hold the batch (a 0 / -1 entry there).

    A batched value stays batched when the target has a 1 at some position b' such that the dimensions in
    front of it have the product of those in front of the batch now (row-major order keeps every sample's
    elements together and in order); otherwise a reshape whose size is one sample's is read as dropping a
    batch of 1, and anything else mixes samples and is refused."""
    per = imp.b.shape(x.name)
    n = int(np.prod(per)) if per else 1
    out = None
    batch: int | None = None
    if x.batched:
        xs = imp.shape(x)
        front = int(np.prod(xs[:x.batch])) if x.batch else 1
        cands = [batch_at] if batch_at is not None else range(len(onnx_shape))
        for k in cands:
            if (k < len(onnx_shape) and onnx_shape[k] == 1 and int(np.prod(onnx_shape[:k] or [1])) == front
                    and int(np.prod(onnx_shape[:k] + onnx_shape[k + 1:] or [1])) == n):
                out, batch = tuple(onnx_shape[:k]) + tuple(onnx_shape[k + 1:]), k
                break
    if out is None:
        if int(np.prod(onnx_shape)) == n:
            out, batch = tuple(onnx_shape), None  # the batch (of size 1 in the model) is dropped
            if x.batched and len(out) == 0:
                raise imp.unsupported("Reshape to a scalar")
        else:
            raise imp.unsupported(f"Reshape of a tensor of shape {imp.shape(x)} to {onnx_shape} that mixes "
                                  "the batch with other dimensions")
    if out == per:
        return Val(name=x.name, batch=batch)
    return imp.add(Reshape(per, out), [x], batch)


@register_onnx("Reshape")
def _reshape(imp: Importer, node, ins, attrs):
    x = variable(imp, ins[0])
    if "shape" in attrs:  # opset < 5
        target = [int(t) for t in attrs["shape"]]
    else:
        target = const_ints(ins[1], imp, "shape")
    xs = list(imp.shape(x))
    allowzero = int(attrs.get("allowzero", 0))
    t = []
    batch_at = None
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(xs):
                raise imp.error(f"Reshape target {target}: 0 at position {i} beyond the input's rank")
            t.append(xs[i])
            if x.batched and i == x.batch:
                batch_at = i  # "copy the batch dimension"
        else:
            t.append(d)
    if x.batched and batch_at is None and len(t) >= 2 and x.batch < len(t) and target[x.batch] == -1:
        # -1 where the batch is: the batch (a rank-1 target [-1] flattens everything, batch of 1 included)
        t[x.batch] = 1
        batch_at = x.batch
    if t.count(-1) > 1:
        raise imp.error(f"Reshape target {target} has more than one -1")
    total = int(np.prod(xs))
    if -1 in t:
        known = int(np.prod([d for d in t if d != -1])) if len(t) > 1 else 1
        if known == 0 or total % known:
            raise imp.error(f"Reshape of shape {xs} to {target}: sizes do not match")
        t[t.index(-1)] = total // known
    return [_reshape_to(imp, x, t, batch_at)]


@register_onnx("Flatten")
def _flatten(imp: Importer, node, ins, attrs):
    x = variable(imp, ins[0])
    xs = imp.shape(x)
    a = int(attrs.get("axis", 1))
    a = a % len(xs) if a != len(xs) else a
    t = [int(np.prod(xs[:a])), int(np.prod(xs[a:]))]
    return [_reshape_to(imp, x, t, 0 if x.batched and x.batch == 0 and a == 1 else None)]


def _squeeze_axes(imp, node, ins, attrs):
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(ins) > 1 and ins[1] is not None:
        return const_ints(ins[1], imp, "axes")
    return None


@register_onnx("Squeeze")
def _squeeze(imp: Importer, node, ins, attrs):
    x = variable(imp, ins[0])
    xs = list(imp.shape(x))
    axes = _squeeze_axes(imp, node, ins, attrs)
    r = len(xs)
    if axes is None:
        axes = [i for i, d in enumerate(xs) if d == 1 and not (x.batched and i == x.batch)]
    axes = sorted({a % r for a in axes})
    if x.batched and x.batch in axes:
        raise imp.unsupported("Squeeze of the batch dimension")
    for a in axes:
        if xs[a] != 1:
            raise imp.error(f"Squeeze of axis {a} of size {xs[a]}")
    per = imp.b.shape(x.name)
    new = tuple(d for i, d in enumerate(xs) if i not in axes and not (x.batched and i == x.batch))
    batch = None if not x.batched else x.batch - sum(1 for a in axes if a < x.batch)
    if new == per:
        return [Val(name=x.name, batch=batch)]
    return [imp.add(Reshape(per, new), [x], batch)]


@register_onnx("Unsqueeze")
def _unsqueeze(imp: Importer, node, ins, attrs):
    x = variable(imp, ins[0])
    xs = list(imp.shape(x))
    axes = _squeeze_axes(imp, node, ins, attrs)
    r = len(xs) + len(axes)
    axes = sorted(a % r for a in axes)
    # positions in the output: the input's dims keep their order around the new ones
    keep = [i for i in range(r) if i not in axes]
    batch = None if not x.batched else keep[x.batch]
    out = [1] * r
    for j, i in enumerate(keep):
        out[i] = xs[j]
    per = imp.b.shape(x.name)
    new = tuple(d for i, d in enumerate(out) if not (x.batched and i == batch))
    return [imp.add(Reshape(per, new), [x], batch)]


@register_onnx("Transpose")
def _transpose(imp: Importer, node, ins, attrs):
    """A permutation of the ONNX axes; the batch axis moves with it (certnn keeps the batch first and
    permutes the other dimensions)."""
    x = variable(imp, ins[0])
    r = imp.rank(x)
    perm = [int(p) % r for p in attrs.get("perm", list(reversed(range(r))))]
    if sorted(perm) != list(range(r)):
        raise imp.error(f"Transpose perm {perm} is not a permutation of {r} axes")
    if x.batched:
        b = x.batch
        batch = perm.index(b)
        p = tuple(q - (1 if q > b else 0) for q in perm if q != b)
    else:
        batch, p = None, tuple(perm)
    if p == tuple(range(len(p))):
        return [Val(name=x.name, batch=batch)]
    return [imp.add(Permute(p), [x], batch)]


@register_onnx("Shape")
def _shape(imp: Importer, node, ins, attrs):
    s = np.array(imp.shape(ins[0]), dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return [Val(const=s[start:end])]


@register_onnx("Cast")
def _cast(imp: Importer, node, ins, attrs):
    import onnx
    x = variable(imp, ins[0])
    if attrs.get("to") not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise imp.unsupported("Cast of a layer output to a non-float type")
    return [x]
