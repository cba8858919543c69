"""PyTorch modules to the certnn IR.

`nn.Sequential` (nested too) is converted layer by layer; any other module is traced with torch.fx and
its graph is converted node by node. Converters are registered explicitly:

    @register_module(nn.Linear)            # fn(builder, module, input_name) -> output name
    @register_function(torch.relu, ...)    # fn(builder, fx_node, args, kwargs) -> output name

Anything else raises UnsupportedOpError naming the layer and listing what is supported.
"""
from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ModelImportError, UnsupportedOpError
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.conv import AvgPool, Conv, GlobalAvgPool, ZeroPad
from ..ops.pooling import MaxPool
from ..ops.shape import Add, Concat, Permute, Reshape, Slice
from . import recurrent as rec
from .ir import Graph, GraphBuilder

ModuleConverter = Callable[[GraphBuilder, nn.Module, str], str]
FunctionConverter = Callable[[GraphBuilder, Any, list, dict], str]

MODULE_CONVERTERS: dict[type, ModuleConverter] = {}
FUNCTION_CONVERTERS: dict[Any, FunctionConverter] = {}
METHOD_CONVERTERS: dict[str, FunctionConverter] = {}
#: modules that are removed (identity in eval mode)
PASSTHROUGH: tuple[type, ...] = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)


def register_module(*types: type):
    def deco(fn: ModuleConverter) -> ModuleConverter:
        for t in types:
            MODULE_CONVERTERS[t] = fn
        return fn
    return deco


def register_function(*fns: Any):
    def deco(fn: FunctionConverter) -> FunctionConverter:
        for f in fns:
            FUNCTION_CONVERTERS[f] = fn
        return fn
    return deco


def register_method_call(*names: str):
    def deco(fn: FunctionConverter) -> FunctionConverter:
        for n in names:
            METHOD_CONVERTERS[n] = fn
        return fn
    return deco


def supported_names() -> list[str]:
    names = [f"nn.{t.__name__}" for t in list(MODULE_CONVERTERS) + list(PASSTHROUGH)]
    names += [getattr(f, "__name__", str(f)) for f in FUNCTION_CONVERTERS]
    names += [f"Tensor.{m}" for m in METHOD_CONVERTERS]
    return names


# ---------------------------------------------------------------- module converters

def param(b: GraphBuilder, t: Tensor | None) -> Tensor | None:
    """A module tensor for an IR op: detached (the default), or the tensor itself when the graph is built
    with keep_grad=True (gradients of bounds then flow to the module's parameters)."""
    if t is None:
        return None
    return t if getattr(b, "options", {}).get("keep_grad") else t.detach()


@register_module(nn.Linear)
def _linear(b: GraphBuilder, m: nn.Linear, x: str) -> str:
    return b.add(Linear(param(b, m.weight), param(b, m.bias)), [x])


def _act(kind: str, **params):
    def conv(b: GraphBuilder, m: nn.Module, x: str) -> str:
        p = {k: float(getattr(m, k)) for k in params}
        return b.add(Activation(kind, **p), [x])
    return conv


register_module(nn.ReLU)(_act("relu"))
register_module(nn.Sigmoid)(_act("sigmoid"))
register_module(nn.Tanh)(_act("tanh"))
register_module(nn.LeakyReLU)(_act("leaky_relu", negative_slope=True))
register_module(nn.Hardtanh, nn.ReLU6)(_act("hardtanh", min_val=True, max_val=True))


@register_module(nn.Flatten)
def _flatten(b: GraphBuilder, m: nn.Flatten, x: str) -> str:
    return _flatten_dims(b, x, m.start_dim, m.end_dim)


def _flatten_dims(b: GraphBuilder, x: str, start: int, end: int) -> str:
    shape = b.shape(x)
    full = (0,) + shape
    nd = len(full)
    s = start % nd
    e = end % nd
    if s == 0:
        raise UnsupportedOpError("flatten over the batch dimension", ["flatten with start_dim >= 1"])
    n = 1
    for d in full[s:e + 1]:
        n *= d
    out = full[1:s] + (n,) + full[e + 1:]
    return b.add(Reshape(shape, out), [x])


# ---------------------------------------------------------------- convolutional layers (CNN-Cert)

def _sym_padding(padding, where: str) -> Any:
    if isinstance(padding, str):
        raise UnsupportedOpError(f"{where} with padding={padding!r}", ["integer or tuple padding"],
                                 hint="write the padding as numbers (e.g. padding=1 for 'same' with k=3)")
    return padding


@register_module(nn.Conv1d, nn.Conv2d)
def _conv(b: GraphBuilder, m: nn.Module, x: str) -> str:
    if m.padding_mode != "zeros":
        raise UnsupportedOpError(f"nn.{type(m).__name__} with padding_mode={m.padding_mode!r}",
                                 ["padding_mode='zeros'"])
    pad = _sym_padding(m.padding, f"nn.{type(m).__name__}")
    return b.add(Conv(param(b, m.weight), param(b, m.bias), m.stride, pad,
                      m.dilation, m.groups), [x])


@register_module(nn.AvgPool1d, nn.AvgPool2d)
def _avgpool(b: GraphBuilder, m: nn.Module, x: str) -> str:
    nd = 1 if isinstance(m, nn.AvgPool1d) else 2
    if getattr(m, "divisor_override", None):
        raise UnsupportedOpError("nn.AvgPool2d with divisor_override", ["divisor_override=None"])
    return b.add(AvgPool(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, nd=nd), [x])


def _adaptive_avg(b: GraphBuilder, x: str, output_size) -> str:
    shape = b.shape(x)
    spatial = shape[1:]
    nd = len(spatial)
    outs = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * nd
    outs = tuple(s if o is None else int(o) for o, s in zip(outs, spatial))
    if all(o == 1 for o in outs):
        return b.add(GlobalAvgPool(), [x])
    if any(s % o for o, s in zip(outs, spatial)):
        raise UnsupportedOpError(f"adaptive average pooling from {spatial} to {outs}",
                                 ["output sizes that divide the input size", "output size 1 (global pooling)"])
    k = tuple(s // o for o, s in zip(outs, spatial))
    return b.add(AvgPool(k, k, 0, nd=nd), [x])


@register_module(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
def _adaptive_avg_module(b: GraphBuilder, m: nn.Module, x: str) -> str:
    return _adaptive_avg(b, x, m.output_size)


@register_module(nn.MaxPool1d, nn.MaxPool2d)
def _maxpool(b: GraphBuilder, m: nn.Module, x: str) -> str:
    if m.return_indices:
        raise UnsupportedOpError("max pooling with return_indices=True", ["return_indices=False"])
    nd = 1 if isinstance(m, nn.MaxPool1d) else 2
    return b.add(MaxPool(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, nd=nd), [x])


@register_module(nn.BatchNorm1d, nn.BatchNorm2d)
def _batchnorm(b: GraphBuilder, m: nn.Module, x: str) -> str:
    """Eval-mode batch norm: y = (x - mean) / sqrt(var + eps) * gamma + beta per channel (dim 1)."""
    if m.running_mean is None or m.running_var is None:
        raise UnsupportedOpError(f"nn.{type(m).__name__} without running statistics (track_running_stats=False)",
                                 ["batch norm with running statistics, in eval mode"])
    mean, var = m.running_mean.detach().double(), m.running_var.detach().double()
    inv = 1.0 / torch.sqrt(var + m.eps)
    gamma = param(b, m.weight).double() if m.weight is not None else torch.ones_like(mean)
    beta = param(b, m.bias).double() if m.bias is not None else torch.zeros_like(mean)
    scale, shift = gamma * inv, beta - mean * gamma * inv
    shape = b.shape(x)
    view = (-1,) + (1,) * (len(shape) - 1)
    return b.add(ElementwiseAffine(scale.reshape(view), shift.reshape(view)), [x])


@register_module(nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d)
def _zeropad(b: GraphBuilder, m: nn.Module, x: str) -> str:
    if float(getattr(m, "value", 0.0)) != 0.0:
        raise UnsupportedOpError(f"nn.{type(m).__name__} with a nonzero value", ["zero padding"])
    return b.add(ZeroPad(tuple(m.padding)), [x])


def _arg(args, kwargs, i: int, name: str, default):
    return args[i] if len(args) > i else kwargs.get(name, default)


def _fx_conv(nd: int):
    def conv(b: GraphBuilder, node, args, kwargs) -> str:
        w = _arg(args, kwargs, 1, "weight", None)
        bias = _arg(args, kwargs, 2, "bias", None)
        if not isinstance(w, Tensor) or (bias is not None and not isinstance(bias, Tensor)):
            raise UnsupportedOpError("convolution with a weight computed in forward", ["conv with parameter weights"])
        pad = _sym_padding(_arg(args, kwargs, 4, "padding", 0), f"conv{nd}d")
        return b.add(Conv(w, bias, _arg(args, kwargs, 3, "stride", 1), pad, _arg(args, kwargs, 5, "dilation", 1),
                          _arg(args, kwargs, 6, "groups", 1)), [args[0]])
    return conv


register_function(nn.functional.conv1d, torch.conv1d)(_fx_conv(1))
register_function(nn.functional.conv2d, torch.conv2d)(_fx_conv(2))


def _fx_maxpool(nd: int):
    def conv(b: GraphBuilder, node, args, kwargs) -> str:
        if _arg(args, kwargs, 6, "return_indices", False):
            raise UnsupportedOpError("max pooling with return_indices=True", ["return_indices=False"])
        k = _arg(args, kwargs, 1, "kernel_size", None)
        return b.add(MaxPool(k, _arg(args, kwargs, 2, "stride", None), _arg(args, kwargs, 3, "padding", 0),
                             _arg(args, kwargs, 4, "dilation", 1), _arg(args, kwargs, 5, "ceil_mode", False), nd=nd),
                     [args[0]])
    return conv


register_function(nn.functional.max_pool1d, torch.max_pool1d)(_fx_maxpool(1))
register_function(nn.functional.max_pool2d, torch.max_pool2d)(_fx_maxpool(2))


def _fx_avgpool(nd: int):
    def conv(b: GraphBuilder, node, args, kwargs) -> str:
        if _arg(args, kwargs, 6 if nd == 2 else 99, "divisor_override", None):
            raise UnsupportedOpError("avg_pool2d with divisor_override", ["divisor_override=None"])
        k = _arg(args, kwargs, 1, "kernel_size", None)
        return b.add(AvgPool(k, _arg(args, kwargs, 2, "stride", None), _arg(args, kwargs, 3, "padding", 0),
                             _arg(args, kwargs, 4, "ceil_mode", False), _arg(args, kwargs, 5, "count_include_pad", True),
                             nd=nd), [args[0]])
    return conv


register_function(nn.functional.avg_pool1d, torch.avg_pool1d)(_fx_avgpool(1))
register_function(nn.functional.avg_pool2d)(_fx_avgpool(2))


def _fx_adaptive(b: GraphBuilder, node, args, kwargs) -> str:
    return _adaptive_avg(b, args[0], _arg(args, kwargs, 1, "output_size", None))


register_function(nn.functional.adaptive_avg_pool1d, nn.functional.adaptive_avg_pool2d)(_fx_adaptive)


# ---------------------------------------------------------------- fx function/method converters

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
        if _is_node_name(b, a) and _is_node_name(b, c):
            if op_name in ("add", "sub"):
                return b.add(Add(1.0 if op_name == "add" else -1.0), [a, c])
            raise UnsupportedOpError(f"{op_name} of two variable tensors", supported_names(),
                                     hint="products of two layer outputs need a dedicated op (LSTM/GRU support)")
        if _is_node_name(b, a):
            x, k = a, _const(c, b)
            scale, shift = {"add": (None, k), "sub": (None, -k), "mul": (k, None), "truediv": (1 / k, None)}[op_name]
        elif _is_node_name(b, c):
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


def _is_node_name(b: GraphBuilder, a) -> bool:
    return isinstance(a, str) and a in b._probe


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
    return _flatten_dims(b, args[0], start, end)


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
    if not all(_is_node_name(b, a) for a in xs):
        raise UnsupportedOpError("cat with constant tensors", ["cat of layer outputs"])
    sizes = tuple(b.shape(a)[dim - 1] for a in xs)
    return b.add(Concat(dim - 1, sizes), xs)


@register_function(torch.stack)
def _stack(b, node, args, kwargs):
    xs = list(args[0])
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not xs or not all(_is_node_name(b, a) for a in xs):
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


# ---------------------------------------------------------------- recurrent layers (graph/recurrent.py)

@register_module(nn.Embedding)
def _embedding(b: GraphBuilder, m: nn.Embedding, x: str) -> str:
    return rec.embedding_module(b, m, x, "")


def _generic_args(b: GraphBuilder, args: list, where: str, what: str) -> list:
    """Arguments for the generic converters: batch-first recurrent outputs become their (T, F) node, other
    virtual values (time-major tensors, h_n, zeros) raise a clear error."""
    return [rec.materialize(b, a, where, what) for a in args]


# ---------------------------------------------------------------- drivers

def _convert_module(b: GraphBuilder, m: nn.Module, x: str, path: str) -> str:
    if isinstance(m, nn.Sequential):
        for i, child in enumerate(m):
            x = _convert_module(b, child, x, f"{path}.{i}" if path else str(i))
        return x
    if isinstance(m, PASSTHROUGH):
        return x
    if isinstance(m, rec.RECURRENT_LAYERS + rec.RECURRENT_CELLS):
        raise UnsupportedOpError(f"nn.{type(m).__name__} outside a traced forward", rec.RECURRENT_SUPPORTED,
                                 where=path or "<root>",
                                 hint="recurrent layers return tuples (out, h_n): call them in a module whose "
                                      "forward unpacks the result, e.g. out, h = self.rnn(x); return self.fc(h[-1])")
    conv = MODULE_CONVERTERS.get(type(m))
    if conv is None:
        for t, c in MODULE_CONVERTERS.items():
            if isinstance(m, t):
                conv = c
                break
    if conv is None:
        if type(m).forward is not nn.Module.forward and not isinstance(m, tuple(MODULE_CONVERTERS)):
            return _trace_into(b, m, x, path)
        raise UnsupportedOpError(f"layer {type(m).__name__}", supported_names(), where=path or "<root>")
    return conv(b, m, x)


def _trace_into(b: GraphBuilder, module: nn.Module, x: str, path: str) -> str:
    if type(module).__module__.startswith("torch.nn"):
        raise UnsupportedOpError(f"layer nn.{type(module).__name__}", supported_names(), where=path or "<root>")
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001
        raise ModelImportError(f"cannot trace {type(module).__name__} at {path or '<root>'} with torch.fx "
                               f"({type(exc).__name__}: {exc}); write the model as nn.Sequential or avoid "
                               "data-dependent control flow") from exc
    env: dict[str, Any] = {}
    out_name = None
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ModelImportError(f"{type(module).__name__}.forward takes {len(placeholders)} inputs; certnn "
                               "supports models with one input tensor")
    for n in gm.graph.nodes:
        where = f"{path + '.' if path else ''}{n.name}"

        def load(a):
            return env[a.name] if isinstance(a, torch.fx.Node) else a

        args = [torch.fx.node.map_arg(a, load) for a in n.args]
        kwargs = {k: torch.fx.node.map_arg(v, load) for k, v in n.kwargs.items()}
        if n.op == "placeholder":
            env[n.name] = rec.TimeMajor(x) if (getattr(b, "options", {}).get("time_major") and x == b.input_name) else x
        elif n.op == "get_attr":
            obj = gm
            for part in n.target.split("."):
                obj = getattr(obj, part)
            env[n.name] = param(b, obj) if isinstance(obj, Tensor) else obj
        elif n.op in ("call_module", "call_function", "call_method") and (res := rec.dispatch(
                b, n.op, gm.get_submodule(n.target) if n.op == "call_module" else n.target, args, kwargs, where,
                _convert_module)) is not rec.NOT_HANDLED:
            env[n.name] = res
            continue
        elif n.op == "call_module":
            args = _generic_args(b, args, where, n.target)
            sub = gm.get_submodule(n.target)
            if len(args) != 1 or not _is_node_name(b, args[0]):
                raise UnsupportedOpError(f"call of {type(sub).__name__} with {len(args)} inputs",
                                         supported_names(), where=where)
            env[n.name] = _convert_module(b, sub, args[0], where)
        elif n.op == "call_function":
            args = _generic_args(b, args, where, getattr(n.target, "__name__", str(n.target)))
            conv = FUNCTION_CONVERTERS.get(n.target)
            if conv is None:
                raise UnsupportedOpError(f"function {getattr(n.target, '__name__', n.target)}",
                                         supported_names(), where=where)
            env[n.name] = conv(b, n, args, kwargs)
        elif n.op == "call_method":
            if n.target in ("view", "reshape"):
                args = [args[0]] + [-1 if a is rec.BATCH else a for a in args[1:]]
            args = _generic_args(b, args, where, f"Tensor.{n.target}")
            conv = METHOD_CONVERTERS.get(n.target)
            if conv is None:
                if n.target in ("contiguous", "clone", "detach", "float", "double") and _is_node_name(b, args[0]):
                    env[n.name] = args[0]
                    continue
                if n.target == "size" or n.target == "dim":
                    raise UnsupportedOpError(f"Tensor.{n.target}() in forward (shape-dependent code)",
                                             supported_names(), where=where,
                                             hint="use x.flatten(1) or nn.Flatten instead of x.view(x.size(0), -1)")
                raise UnsupportedOpError(f"method Tensor.{n.target}", supported_names(), where=where)
            env[n.name] = conv(b, n, args, kwargs)
        elif n.op == "output":
            out_name = rec.materialize(b, args[0], where, "the model output")
            if not _is_node_name(b, out_name):
                raise ModelImportError("the model's output must be a single tensor")
    assert out_name is not None
    return out_name


def from_torch(module: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype = torch.float64,
               check: bool = True, embedded: bool = False, time_major: bool = False,
               keep_grad: bool = False) -> Graph:
    """Convert an nn.Module (in eval mode semantics) to the IR; `input_shape` excludes the batch dim.

    With check=True the IR is run on random inputs and compared with the module (import parity).
    Sequence models (graph/recurrent.py) have input_shape (T, d). embedded=True splits the model's first
    nn.Embedding off: the IR input is the embedded sequence (T, E) (see recurrent.embed_tokens).
    time_major=True: the module's forward takes (T, B, d); the IR input is still batch first, (B, T, d).

    keep_grad=True (for verified training, certnn.train.robust): the IR's weights are the module's
    parameters themselves (no detach; converted by a differentiable ``.to(dtype)``, which is the identity
    when dtype is the parameters' dtype) or tensors computed from them (e.g. an RNN's b_ih + b_hh), so
    bounds computed on the graph are differentiable with respect to the parameters. Such a graph is a
    snapshot of one step: an optimizer updates parameters in place, which leaves derived tensors stale
    (and autograd refuses to go back through them), so build a new graph after every update. The default
    (False) detaches every weight, as certification wants.
    """
    if isinstance(module, torch.jit.ScriptModule):
        from .from_script import script_to_sequential
        module = script_to_sequential(module)
    if not isinstance(module, nn.Module):
        raise ModelImportError(f"expected a torch.nn.Module, got {type(module).__name__}")
    was_training = module.training
    module.eval()
    try:
        b = GraphBuilder(tuple(input_shape), dtype)
        b.options = {"embedded": embedded, "time_major": time_major, "keep_grad": keep_grad}
        out = _convert_module(b, module, b.input_name, "")
        if out == b.input_name:
            raise ModelImportError("the model is the identity: nothing to certify")
        graph = b.build(out)
        if check:
            check_parity(module, graph, embedded=embedded, time_major=time_major)
    finally:
        module.train(was_training)
    return graph


def run_module(module: nn.Module, x: Tensor, embedded: bool = False, time_major: bool = False) -> Tensor:
    """The module on IR-layout inputs x (B, *input_shape), in the module's dtype, output in float64:
    time_major transposes x to (T, B, ...); embedded feeds x as the output of the first nn.Embedding."""
    p = next(iter(module.parameters()), None)
    mdtype = p.dtype if p is not None else torch.float32
    xm = x.to(mdtype)
    if time_major:
        xm = xm.transpose(0, 1)
    with torch.no_grad():
        if not embedded:
            return module(xm).to(torch.float64)
        emb = rec.first_embedding(module)
        if emb is None:
            raise ModelImportError("embedded=True but the model has no nn.Embedding")
        tokens = torch.zeros(xm.shape[:-1], dtype=torch.long)
        handle = emb.register_forward_hook(lambda mod, inp, out: xm)
        try:
            return module(tokens).to(torch.float64)
        finally:
            handle.remove()


def check_parity(module: nn.Module, graph: Graph, n: int = 4, seed: int = 0, rtol: float = 1e-4,
                 embedded: bool = False, time_major: bool = False) -> None:
    """Raise ModelImportError if the IR and the module disagree on random inputs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((n,) + graph.input_shape, generator=gen, dtype=torch.float64)
    p = next(iter(module.parameters()), None)
    mdtype = p.dtype if p is not None else torch.float32
    with torch.no_grad():
        want = run_module(module, x, embedded, time_major)
        got = graph.forward(x.to(graph.dtype)).to(torch.float64)
    if want.shape != got.shape:
        raise ModelImportError(f"import parity: module output shape {tuple(want.shape)} != IR {tuple(got.shape)}")
    err = (want - got).abs().max().item()
    scale = 1 + want.abs().max().item()
    tol = 1e-9 if mdtype == torch.float64 and graph.dtype == torch.float64 else rtol
    if err > tol * scale:
        raise ModelImportError(f"import parity failed: IR and module differ by {err:.3g} on random inputs")
