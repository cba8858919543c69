"""fx functions and Tensor methods to the certnn IR: activations (``torch.relu``, ``x.tanh()``, ...),
arithmetic with constants (an elementwise affine map) and of two layer outputs (Add / Sub), and the ops
that move elements: flatten, view / reshape, permute, transpose, indexing, cat and stack (the batch
dimension stays first)."""
from __future__ import annotations

import operator

import torch
from torch import Tensor, nn

from ..errors import ModelImportError, UnsupportedOpError
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine
from ..ops.shape import Add, Concat, Permute, Reshape, Slice
from .ir import GraphBuilder
from .torch_layers import flatten_dims
from .torch_registry import is_node_name, register_function, register_method_call, supported_names


def _is_node(a) -> bool:
    return isinstance(a, torch.fx.Node)


def _const(v, b: GraphBuilder) -> Tensor:
    return torch.as_tensor(v, dtype=b.dtype)


def _unary(kind: str, **defaults):
    def conv(b: GraphBuilder, node, args, kwargs) -> str:
        params = dict(defaults)
        if kind == "leaky_relu":
            if len(args) > 1:
                params["negative_slope"] = float(args[1])
            params["negative_slope"] = float(kwargs.get("negative_slope", params.get("negative_slope", 0.01)))
        if kind == "hardtanh":
            if len(args) > 2:
                params["min_val"], params["max_val"] = float(args[1]), float(args[2])
            for k in ("min_val", "max_val"):
                if k in kwargs:
                    params[k] = float(kwargs[k])
        return b.add(Activation(kind, **params), [args[0]])
    return conv


register_function(torch.relu, nn.functional.relu)(_unary("relu"))
register_function(torch.sigmoid, nn.functional.sigmoid)(_unary("sigmoid"))
register_function(torch.tanh, nn.functional.tanh)(_unary("tanh"))
register_function(torch.atan, torch.arctan)(_unary("arctan"))
register_function(nn.functional.leaky_relu)(_unary("leaky_relu", negative_slope=0.01))
register_function(nn.functional.hardtanh)(_unary("hardtanh", min_val=-1.0, max_val=1.0))
register_method_call("relu")(_unary("relu"))
register_method_call("sigmoid")(_unary("sigmoid"))
register_method_call("tanh")(_unary("tanh"))
register_method_call("atan", "arctan")(_unary("arctan"))


def _arith(op_name: str):
    def conv(b: GraphBuilder, node, args, kwargs) -> str:
        a, c = args[0], args[1]
        if is_node_name(b, a) and is_node_name(b, c):
            if op_name in ("add", "sub"):
                return b.add(Add(1.0 if op_name == "add" else -1.0), [a, c])
            raise UnsupportedOpError(f"{op_name} of two variable tensors", supported_names(),
                                     hint="products of two layer outputs need a dedicated op (LSTM/GRU support)")
        if is_node_name(b, a):
            x, k = a, _const(c, b)
            scale, shift = {"add": (None, k), "sub": (None, -k), "mul": (k, None), "truediv": (1 / k, None)}[op_name]
        elif is_node_name(b, c):
            x, k = c, _const(a, b)
            if op_name == "truediv":
                raise UnsupportedOpError("division by a variable tensor", supported_names())
            scale, shift = {"add": (None, k), "sub": (-torch.ones_like(k), k), "mul": (k, None)}[op_name]
        else:  # both constants: should have been folded by fx
            raise UnsupportedOpError(f"{op_name} of two constants", supported_names())
        return _elementwise(b, x, scale, shift)
    return conv


def _elementwise(b: GraphBuilder, x: str, scale, shift) -> str:
    shape = b.shape(x)
    for t in (scale, shift):
        if t is not None and t.ndim > 0:
            try:
                out = torch.broadcast_shapes(t.shape, (1,) + shape)
            except RuntimeError as exc:
                raise ModelImportError(f"constant of shape {tuple(t.shape)} does not broadcast to {shape}") from exc
            if out[1:] != shape or (t.ndim == len(shape) + 1 and t.shape[0] != 1):
                raise UnsupportedOpError("arithmetic with a constant that broadcasts the layer's shape or "
                                         "varies over the batch", supported_names())
            if t.ndim == len(shape) + 1:
                t.squeeze_(0)
    return b.add(ElementwiseAffine(scale, shift), [x])


register_function(operator.add, torch.add)(_arith("add"))
register_function(operator.sub, torch.sub)(_arith("sub"))
register_function(operator.mul, torch.mul)(_arith("mul"))
register_function(operator.truediv, torch.div)(_arith("truediv"))
register_method_call("add")(_arith("add"))
register_method_call("sub")(_arith("sub"))
register_method_call("mul")(_arith("mul"))
register_method_call("div")(_arith("truediv"))


@register_function(operator.neg, torch.neg)
def _neg(b, node, args, kwargs):
    return b.add(ElementwiseAffine(torch.tensor(-1.0, dtype=b.dtype), None), [args[0]])


@register_function(torch.flatten)
def _fx_flatten(b, node, args, kwargs):
    start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
    return flatten_dims(b, args[0], start, end)


register_method_call("flatten")(_fx_flatten)


def _target_shape(b: GraphBuilder, x: str, dims) -> tuple[int, ...]:
    dims = list(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list, torch.Size)) else list(dims)
    shape = b.shape(x)
    n = 1
    for d in shape:
        n *= d
    if len(dims) == 0:
        raise ModelImportError("reshape to a scalar is not supported")
    first = dims[0]
    if not (first == -1 or (isinstance(first, int) and first >= 1)):
        raise ModelImportError(f"reshape {dims}: the first dimension must be the batch (-1 or the batch size)")
    rest = [int(d) for d in dims[1:]]
    if rest.count(-1) > 1:
        raise ModelImportError(f"reshape {dims}: more than one -1")
    if -1 in rest:
        known = 1
        for d in rest:
            if d != -1:
                known *= d
        rest[rest.index(-1)] = n // known
    else:
        if first == -1:
            pass
    prod = 1
    for d in rest:
        prod *= d
    if prod != n:
        raise ModelImportError(f"reshape {dims} of a sample of shape {shape}: sizes do not match "
                               "(the batch dimension must stay first)")
    return tuple(rest)


@register_method_call("view", "reshape")
def _view(b, node, args, kwargs):
    x = args[0]
    return b.add(Reshape(b.shape(x), _target_shape(b, x, args[1:])), [x])


@register_function(torch.reshape)
def _reshape_fn(b, node, args, kwargs):
    x = args[0]
    shape = args[1] if len(args) > 1 else kwargs["shape"]
    return b.add(Reshape(b.shape(x), _target_shape(b, x, [shape])), [x])


@register_method_call("permute")
def _permute(b, node, args, kwargs):
    dims = args[1:]
    dims = list(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else list(dims)
    nd = len(dims)
    dims = [d % nd for d in dims]
    if dims[0] != 0:
        raise UnsupportedOpError("permute that moves the batch dimension", ["permute keeping dim 0 first"])
    return b.add(Permute(tuple(d - 1 for d in dims[1:])), [args[0]])


@register_method_call("transpose")
def _transpose(b, node, args, kwargs):
    x, d0, d1 = args[0], args[1], args[2]
    nd = len(b.shape(x)) + 1
    perm = list(range(nd))
    d0, d1 = d0 % nd, d1 % nd
    perm[d0], perm[d1] = perm[d1], perm[d0]
    if perm[0] != 0:
        raise UnsupportedOpError("transpose of the batch dimension", ["transpose of per-sample dims"])
    return b.add(Permute(tuple(p - 1 for p in perm[1:])), [x])


@register_function(operator.getitem)
def _getitem(b, node, args, kwargs):
    x, idx = args[0], args[1]
    if not isinstance(idx, tuple):
        idx = (idx,)
    if any(i is Ellipsis for i in idx):
        nd = len(b.shape(x)) + 1
        k = idx.index(Ellipsis)
        fill = nd - (len(idx) - 1)
        idx = idx[:k] + (slice(None),) * fill + idx[k + 1:]
    for i in idx:
        if not isinstance(i, (slice, int)) or (isinstance(i, slice) and any(_is_node(v) or isinstance(v, str)
                                                                          for v in (i.start, i.stop, i.step))):
            raise UnsupportedOpError(f"indexing with {i!r}", ["basic slices and integers"])
    if not idx or idx[0] != slice(None):
        raise UnsupportedOpError("indexing that selects along the batch dimension",
                                 ["x[:, ...] with basic slices and integers"])
    return b.add(Slice(b.shape(x), idx[1:]), [x])


@register_function(torch.cat, torch.concat)
def _cat(b, node, args, kwargs):
    xs = list(args[0])
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    nd = len(b.shape(xs[0])) + 1
    dim = dim % nd
    if dim == 0:
        raise UnsupportedOpError("concatenation along the batch dimension", ["cat along per-sample dims"])
    if not all(is_node_name(b, a) for a in xs):
        raise UnsupportedOpError("cat with constant tensors", ["cat of layer outputs"])
    sizes = tuple(b.shape(a)[dim - 1] for a in xs)
    return b.add(Concat(dim - 1, sizes), xs)


@register_function(torch.stack)
def _stack(b, node, args, kwargs):
    xs = list(args[0])
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not xs or not all(is_node_name(b, a) for a in xs):
        raise UnsupportedOpError("stack of constant tensors", ["stack of layer outputs"])
    shape = b.shape(xs[0])
    if any(b.shape(a) != shape for a in xs):
        raise ModelImportError(f"torch.stack of tensors of different shapes {[b.shape(a) for a in xs]}")
    dim = dim % (len(shape) + 2)
    if dim == 0:
        raise UnsupportedOpError("stack along the batch dimension", ["stack along per-sample dims"])
    k = dim - 1
    new = shape[:k] + (1,) + shape[k:]
    rows = [b.add(Reshape(shape, new), [a]) for a in xs]
    return rows[0] if len(rows) == 1 else b.add(Concat(k, (1,) * len(rows)), rows)
