"""ONNX models to the certnn IR.

Converters are registered explicitly, one per ONNX op type::

    @register_onnx("Gemm")          # fn(imp, node, ins, attrs) -> list of output values
    def _gemm(imp, node, ins, attrs): ...

Anything else raises :class:`~certnn.errors.UnsupportedOpError` naming the node, its position in the
graph and the supported op types.

Batch convention
----------------
certnn values are (B, *shape). The ONNX graph must have exactly one input that is not an initializer
(initializers listed among the graph inputs, as older exporters write them, are constants). If that input
has rank >= 2, one of its dimensions is the batch, whatever it is called (symbolic ``N``, ``None`` or a
fixed 1, as in ACAS Xu's (1, 1, 1, 5); a fixed size above 1 is not a batch, and the input then has none):
the first one, except for a *time-major* sequence input
(T, B, d) that feeds an ONNX ``RNN`` / ``LSTM`` / ``GRU`` with ``layout=0`` (MATLAB exports sequences this
way), whose batch is dimension 1. The per-sample shape is the input shape without the batch dimension, so
ACAS Xu samples are (1, 1, 5) and a time-major (T, B, d) input gives samples (T, d). A rank-1 input (n,)
has no batch dimension: the per-sample shape is (n,) and certnn adds the batch in front. Dimensions other
than the batch may be symbolic (a sequence length ``T``) when the per-sample shape is given on import
(``input_shape``; the CLI takes it from ``--input-shape``, the data or the VNN-LIB property).

Every ONNX value carries its batch axis ``batch`` (None: no batch dimension): certnn stores it batch first
with the other dimensions in their ONNX order, so an ONNX axis ``a`` of a value whose batch axis is ``b`` is
per-sample axis ``a`` (a < b) or ``a - 1`` (a > b). Transposes move the batch axis (torch's and MATLAB's
recurrent exports transpose between batch- and time-major layouts); Reshape keeps it when the dimensions in
front of it keep their product. Ops that would mix samples (flattening the batch into features, reducing
over it) are rejected unless the batch dimension is 1 in the model and the result simply drops it (e.g.
``Reshape`` to a rank-1 shape, which makes the value unbatched).

VNN-LIB numbers X_i / Y_j by flattening the ONNX input / output in C order; with batch size 1 that is the
C-order flattening of one certnn sample, so a certnn sample ``x.reshape(-1)`` is the X vector.

Constant subgraphs (Shape/Gather/Concat/Unsqueeze chains computing a reshape target, Constant nodes,
arithmetic on initializers) are folded with :mod:`onnx.reference`. ``Shape`` of a batched value reports
batch size 1 (a Reshape target's first entry is read as "the batch" whatever its value).
"""
from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelImportError, UnsupportedOpError
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.shape import Add, Concat, Permute, Reshape, Slice
from .ir import Graph, GraphBuilder

__all__ = ["register_onnx", "supported_onnx_ops", "onnx_to_graph", "load_onnx", "OnnxModel"]


@dataclass(frozen=True)
class Val:
    """An ONNX value during import: a constant (numpy array) or a certnn node (name, and the ONNX axis of
    its batch dimension, None when it has none)."""

    const: np.ndarray | None = None
    name: str | None = None
    batch: int | None = 0

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def batched(self) -> bool:
        return self.batch is not None


Converter = Callable[["_Importer", Any, list, dict], list]
ONNX_CONVERTERS: dict[str, Converter] = {}
#: op types that are the identity at inference time (their first output is their first input)
PASSTHROUGH = ("Identity", "Dropout")


def register_onnx(*op_types: str):
    def deco(fn: Converter) -> Converter:
        for t in op_types:
            ONNX_CONVERTERS[t] = fn
        return fn
    return deco


def supported_onnx_ops() -> list[str]:
    return sorted(set(ONNX_CONVERTERS) | set(PASSTHROUGH) | {"Constant"})


class _Importer:
    def __init__(self, builder: GraphBuilder, in_batch: int | None, consumers: dict[str, int]):
        self.b = builder
        self.in_batch = in_batch
        self.consumers = consumers
        self.where = ""
        self.node = None
        self.env: dict[str, Val] = {}

    # -- helpers -------------------------------------------------------------------------------------
    def unsupported(self, what: str, hint: str | None = None) -> UnsupportedOpError:
        return UnsupportedOpError(what, supported_onnx_ops(), where=self.where, hint=hint)

    def error(self, msg: str) -> ModelImportError:
        return ModelImportError(f"{self.where}: {msg}")

    def shape(self, v: Val) -> tuple[int, ...]:
        """The ONNX shape of a value (batch reported as 1 for batched values)."""
        if v.is_const:
            return tuple(v.const.shape)
        s = self.b.shape(v.name)
        return (s[:v.batch] + (1,) + s[v.batch:]) if v.batched else s

    def rank(self, v: Val) -> int:
        return len(self.shape(v))

    def axis(self, v: Val, a: int, what: str = "axis") -> int:
        """ONNX axis -> certnn per-sample axis (0-based over the per-sample dims)."""
        r = self.rank(v)
        if not -r <= a < r:
            raise self.error(f"{what} {a} out of range for a rank-{r} tensor")
        a %= r
        if v.batched:
            if a == v.batch:
                raise self.unsupported(f"{self.node.op_type} over the batch dimension ({what} {a})")
            return a - 1 if a > v.batch else a
        return a

    def add(self, op, inputs: list[Val], batch: int | None) -> Val:
        """Add a certnn node; `batch` is the ONNX axis of its batch dimension (None: no batch)."""
        if batch is True or batch is False:  # pragma: no cover - defensive: a flag passed by mistake
            raise TypeError("Importer.add takes the batch axis, not a flag")
        name = self.b.add(op, [v.name for v in inputs])
        return Val(name=name, batch=batch)

    def torch_const(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(a, dtype=np.float64), dtype=self.b.dtype)

    def last_node(self, v: Val):
        """The certnn node of v when it is the last node added and used by nothing else (for fusions)."""
        n = self.b.nodes[-1]
        if v.is_const or n.name != v.name:
            return None
        return n

    def uses(self, certnn_name: str) -> int:
        """How many ONNX node inputs (and graph outputs) read the certnn node (through any alias)."""
        return sum(self.consumers.get(k, 0) for k, v in self.env.items() if v.name == certnn_name)

    def replace_last(self, op) -> str:
        n = self.b.nodes.pop()
        del self.b._probe[n.name]
        return self.b.add(op, list(n.inputs), name=n.name)


def _attrs(node) -> dict:
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _var(imp: _Importer, v: Val, what: str = "input") -> Val:
    if v is None or v.is_const:
        raise imp.unsupported(f"{imp.node.op_type} with a constant {what} (only layer outputs supported here)")
    return v


def _ints(v: Val | None, imp: _Importer, what: str) -> list[int] | None:
    if v is None:
        return None
    if not v.is_const:
        raise imp.unsupported(f"{imp.node.op_type} with a computed {what} (it must be constant)")
    return [int(t) for t in np.asarray(v.const).reshape(-1)]


# ---------------------------------------------------------------- affine ops

@register_onnx("Gemm")
def _gemm(imp: _Importer, node, ins, attrs):
    a, w = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    _var(imp, a, "A")
    if attrs.get("transA", 0):
        raise imp.unsupported("Gemm with transA=1 on a layer output")
    if a.batched and a.batch != 0:
        raise imp.unsupported("Gemm whose A has its batch in dimension 1 (transpose it first)")
    if not w.is_const:
        raise imp.unsupported("Gemm with a variable B (products of two layer outputs)")
    W = np.asarray(w.const, dtype=np.float64)
    W = W.T if attrs.get("transB", 0) else W  # (in, out)
    weight = alpha * W.T  # (out, in)
    bias = None
    if c is not None:
        if not c.is_const:
            raise imp.unsupported("Gemm with a variable C")
        C = beta * np.asarray(c.const, dtype=np.float64)
        if C.size not in (1, weight.shape[0]) and C.shape[-1:] != (weight.shape[0],):
            raise imp.unsupported(f"Gemm with a bias C of shape {C.shape} that varies over the batch")
        if C.ndim == 2 and C.shape[0] != 1:
            raise imp.unsupported(f"Gemm with a bias C of shape {C.shape} that varies over the batch")
        bias = np.broadcast_to(C.reshape(-1) if C.size > 1 else C.reshape(()), (weight.shape[0],))
    return [imp.add(Linear(imp.torch_const(weight), None if bias is None else imp.torch_const(bias)), [a],
                    a.batch)]


@register_onnx("MatMul")
def _matmul(imp: _Importer, node, ins, attrs):
    a, b = ins
    if not a.is_const and b.is_const:
        W = np.asarray(b.const, dtype=np.float64)
        if W.ndim != 2:
            raise imp.unsupported(f"MatMul with a constant of rank {W.ndim} (2 supported)")
        if a.batched and a.batch == imp.rank(a) - 1:
            raise imp.unsupported("MatMul contracting the batch dimension")
        return [imp.add(Linear(imp.torch_const(W.T), None), [a], a.batch)]
    if a.is_const and not b.is_const:
        # W @ x over the last two dims of x: transpose, apply W over the last dim, transpose back
        W = np.asarray(a.const, dtype=np.float64)
        if W.ndim != 2:
            raise imp.unsupported(f"MatMul with a constant of rank {W.ndim} on the left (2 supported)")
        shape = imp.b.shape(b.name)
        if b.batched and b.batch >= imp.rank(b) - 2:
            raise imp.unsupported("W @ x where one of x's last two dimensions is the batch")
        if len(shape) == 1:
            return [imp.add(Linear(imp.torch_const(W), None), [b], b.batch)]
        nd = len(shape)
        perm = list(range(nd))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        t = imp.add(Permute(tuple(perm)), [b], b.batch)
        t = imp.add(Linear(imp.torch_const(W), None), [t], b.batch)
        return [imp.add(Permute(tuple(perm)), [t], b.batch)]
    raise imp.unsupported("MatMul of two layer outputs (a product of variables)")


def _lift_rank(imp: _Importer, x: Val, c) -> Val:
    """x with leading unit dimensions added when a constant operand of higher rank has only 1s there (as
    exporters broadcast a folded [1, 1, H] constant against a [B, H] value); the batch axis moves along."""
    c = np.asarray(c)
    extra = c.ndim - imp.rank(x)
    if extra <= 0 or any(d != 1 for d in c.shape[:extra]):
        return x
    per = imp.b.shape(x.name)
    return imp.add(Reshape(per, (1,) * extra + per), [x], None if x.batch is None else x.batch + extra)


def _broadcast_const(imp: _Importer, x: Val, c: np.ndarray) -> torch.Tensor:
    """A constant operand of an elementwise op on x as a tensor broadcastable to one certnn sample."""
    c = np.asarray(c, dtype=np.float64)
    xs = imp.shape(x)
    if c.ndim > len(xs):
        raise imp.unsupported(f"{imp.node.op_type} with a constant of rank {c.ndim} that adds dimensions "
                              f"to a rank-{len(xs)} tensor")
    try:
        out = np.broadcast_shapes(c.shape, xs)
    except ValueError as exc:
        raise imp.error(f"constant of shape {c.shape} does not broadcast to {xs}") from exc
    if tuple(out) != tuple(xs):
        raise imp.unsupported(f"{imp.node.op_type} with a constant of shape {c.shape} that broadcasts the "
                              f"tensor of shape {xs} to a larger shape")
    if x.batched:
        k = x.batch - (len(xs) - c.ndim)  # the constant's axis aligned with the batch (trailing alignment)
        if k >= 0:
            c = np.take(c, 0, axis=k)  # of size 1 (checked by the broadcast above)
    return imp.torch_const(c)


def _elementwise(imp: _Importer, x: Val, scale, shift) -> Val:
    return imp.add(ElementwiseAffine(scale, shift), [x], x.batch)


@register_onnx("Add", "Sub")
def _add_sub(imp: _Importer, node, ins, attrs):
    a, b = ins
    sign = 1.0 if node.op_type == "Add" else -1.0
    if not a.is_const and not b.is_const:
        # numpy-style broadcasting aligns trailing dimensions: give the lower-rank operand leading 1s
        ra, rb = imp.rank(a), imp.rank(b)
        if ra < rb:
            a = _lift_rank(imp, a, np.empty((1,) * rb))
        elif rb < ra:
            b = _lift_rank(imp, b, np.empty((1,) * ra))
        if a.batch != b.batch:
            raise imp.unsupported(f"{node.op_type} of tensors with the batch in different dimensions "
                                  f"({a.batch} and {b.batch})")
        return [imp.add(Add(sign), [a, b], a.batch)]
    if a.is_const and b.is_const:  # pragma: no cover - folded before
        raise imp.error("constant operands should have been folded")
    if a.is_const and sign > 0:  # c + x = x + c
        a, b = b, a
    if not a.is_const:
        a = _lift_rank(imp, a, b.const)
        k = _broadcast_const(imp, a, b.const)
        k = k if sign > 0 else -k
        # MatMul followed by Add of a bias vector: fuse into the Linear
        last = imp.last_node(a)
        if (last is not None and isinstance(last.op, Linear) and last.op.bias is None
                and imp.uses(last.name) == 1 and k.numel() in (1, last.op.weight.shape[0])
                and (k.ndim == 0 or k.shape[-1] == k.numel())):
            bias = torch.broadcast_to(k.reshape(-1) if k.ndim else k, (last.op.weight.shape[0],)).clone()
            return [Val(name=imp.replace_last(Linear(last.op.weight, bias)), batch=a.batch)]
        return [_elementwise(imp, a, None, k)]
    b = _lift_rank(imp, b, a.const)
    k = _broadcast_const(imp, b, a.const)
    if sign > 0:
        return [_elementwise(imp, b, None, k)]
    return [_elementwise(imp, b, torch.tensor(-1.0, dtype=imp.b.dtype), k)]  # c - x


@register_onnx("Mul", "Div")
def _mul_div(imp: _Importer, node, ins, attrs):
    a, b = ins
    if not a.is_const and not b.is_const:
        if node.op_type == "Div":
            raise imp.unsupported("Div of two layer outputs (no relaxation of x / y)")
        # x * y of two layer outputs of the same shape: the product op (McCormick planes)
        from ..ops.product import Mul
        ra, rb = imp.rank(a), imp.rank(b)
        if ra < rb:
            a = _lift_rank(imp, a, np.empty((1,) * rb))
        elif rb < ra:
            b = _lift_rank(imp, b, np.empty((1,) * ra))
        if a.batch != b.batch or imp.b.shape(a.name) != imp.b.shape(b.name):
            raise imp.unsupported(f"Mul of two layer outputs of shapes {imp.shape(a)} and {imp.shape(b)} "
                                  "(the same shape is supported)")
        return [imp.add(Mul(), [a, b], a.batch)]
    if node.op_type == "Div":
        if a.is_const:
            raise imp.unsupported("Div of a constant by a layer output")
        a = _lift_rank(imp, a, b.const)
        k = _broadcast_const(imp, a, b.const)
        if (k == 0).any():
            raise imp.error("division by zero in a constant")
        return [_elementwise(imp, a, 1.0 / k, None)]
    x, c = (a, b.const) if not a.is_const else (b, a.const)
    x = _lift_rank(imp, x, c)
    return [_elementwise(imp, x, _broadcast_const(imp, x, c), None)]


@register_onnx("Neg")
def _neg(imp, node, ins, attrs):
    x = _var(imp, ins[0])
    return [_elementwise(imp, x, torch.tensor(-1.0, dtype=imp.b.dtype), None)]


@register_onnx("BatchNormalization")
def _batchnorm(imp: _Importer, node, ins, attrs):
    x = _var(imp, ins[0])
    if len(node.output) > 1 and any(node.output[1:]):
        raise imp.unsupported("BatchNormalization in training mode (extra outputs)")
    if attrs.get("training_mode", 0):
        raise imp.unsupported("BatchNormalization with training_mode=1")
    consts = []
    for v, what in zip(ins[1:5], ("scale", "B", "mean", "var")):
        if v is None or not v.is_const:
            raise imp.unsupported(f"BatchNormalization with a computed {what}")
        consts.append(np.asarray(v.const, dtype=np.float64).reshape(-1))
    gamma, beta, mean, var = consts
    eps = float(attrs.get("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    shape = imp.b.shape(x.name)
    cax = imp.axis(x, 1)  # channels: ONNX axis 1
    tail = len(shape) - cax - 1
    bshape = (-1,) + (1,) * tail
    return [_elementwise(imp, x, imp.torch_const(scale.reshape(bshape)), imp.torch_const(shift.reshape(bshape)))]


# ---------------------------------------------------------------- activations

def _act(kind: str):
    def conv(imp: _Importer, node, ins, attrs):
        x = _var(imp, ins[0])
        params = {}
        if kind == "leaky_relu":
            params["negative_slope"] = float(attrs.get("alpha", 0.01))
        return [imp.add(Activation(kind, **params), [x], x.batch)]
    return conv


register_onnx("Relu")(_act("relu"))
register_onnx("Sigmoid")(_act("sigmoid"))
register_onnx("Tanh")(_act("tanh"))
register_onnx("LeakyRelu")(_act("leaky_relu"))
register_onnx("Atan")(_act("arctan"))


@register_onnx("Clip")
def _clip(imp: _Importer, node, ins, attrs):
    x = _var(imp, ins[0])
    lo = attrs.get("min", None)
    hi = attrs.get("max", None)
    if len(ins) > 1 and ins[1] is not None:
        lo = float(np.asarray(_const_in(imp, ins[1], "min")).reshape(()))
    if len(ins) > 2 and ins[2] is not None:
        hi = float(np.asarray(_const_in(imp, ins[2], "max")).reshape(()))
    lo = -np.inf if lo is None else float(lo)
    hi = np.inf if hi is None else float(hi)
    if lo == 0.0 and hi == np.inf:
        return [imp.add(Activation("relu"), [x], x.batch)]
    if np.isfinite(lo) and np.isfinite(hi):
        return [imp.add(Activation("hardtanh", min_val=lo, max_val=hi), [x], x.batch)]
    raise imp.unsupported(f"Clip to [{lo}, {hi}] (supported: [0, inf) and finite [min, max])")


def _const_in(imp, v: Val, what: str):
    if not v.is_const:
        raise imp.unsupported(f"{imp.node.op_type} with a computed {what}")
    return v.const


# ---------------------------------------------------------------- convolution and pooling

def _spatial_pads(imp: _Importer, attrs, kernel, x: Val, strides, dilations):
    """Symmetric padding tuple, or (None, F.pad-order pads) when asymmetric."""
    nd = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        spatial = imp.b.shape(x.name)[-nd:]
        pads_b, pads_e = [], []
        for i in range(nd):
            out = -(-spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i])
            small, big = total // 2, total - total // 2
            pads_b.append(small if auto == "SAME_UPPER" else big)
            pads_e.append(big if auto == "SAME_UPPER" else small)
        pads = pads_b + pads_e
    elif auto == "VALID":
        pads = [0] * (2 * nd)
    else:
        pads = list(attrs.get("pads", [0] * (2 * nd)))
    begin, end = pads[:nd], pads[nd:]
    if begin == end:
        return tuple(int(p) for p in begin), None
    fpad = []
    for i in reversed(range(nd)):
        fpad += [int(begin[i]), int(end[i])]
    return (0,) * nd, tuple(fpad)


@register_onnx("Conv")
def _conv(imp: _Importer, node, ins, attrs):
    from ..ops.conv import Conv, ZeroPad  # lazy: provided by the CNN ops
    x = _var(imp, ins[0])
    if x.batch != 0:
        raise imp.unsupported("Conv on a tensor without a batch dimension in front")
    w = _const_in(imp, ins[1], "weight")
    bias = ins[2].const if len(ins) > 2 and ins[2] is not None else None
    if len(ins) > 2 and ins[2] is not None and not ins[2].is_const:
        raise imp.unsupported("Conv with a computed bias")
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise imp.unsupported(f"Conv{nd}d (1-D and 2-D supported)")
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    strides = list(attrs.get("strides", [1] * nd))
    dil = list(attrs.get("dilations", [1] * nd))
    padding, fpad = _spatial_pads(imp, attrs, kernel, x, strides, dil)
    if fpad is not None:
        x = imp.add(ZeroPad(fpad), [x], 0)
    op = Conv(imp.torch_const(w), None if bias is None else imp.torch_const(bias), tuple(strides), padding,
              tuple(dil), int(attrs.get("group", 1)))
    return [imp.add(op, [x], 0)]


@register_onnx("Pad")
def _pad(imp: _Importer, node, ins, attrs):
    from ..ops.conv import ZeroPad
    x = _var(imp, ins[0])
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = list(attrs["pads"]) if "pads" in attrs else _ints(ins[1], imp, "pads")
    value = float(attrs.get("value", 0.0))
    if len(ins) > 2 and ins[2] is not None:
        value = float(np.asarray(_const_in(imp, ins[2], "constant_value")).reshape(()))
    if mode != "constant" or value != 0.0 or any(p < 0 for p in pads):
        raise imp.unsupported(f"Pad mode={mode} value={value} (zero padding supported)")
    r = imp.rank(x)
    begin, end = pads[:r], pads[r:]
    if x.batched and (begin[x.batch] or end[x.batch]):
        raise imp.unsupported("Pad of the batch dimension")
    if x.batched and (any(begin[:x.batch]) or any(end[:x.batch])):
        raise imp.unsupported("Pad of dimensions in front of the batch dimension")
    fpad = []
    for i in reversed(range(x.batch + 1 if x.batched else 0, r)):
        fpad += [int(begin[i]), int(end[i])]
    return [imp.add(ZeroPad(tuple(fpad)), [x], x.batch)]


def _pool_common(imp, attrs, x):
    if x.batched and x.batch != 0:
        raise imp.unsupported("pooling on a tensor whose batch is not in dimension 0")
    kernel = list(attrs["kernel_shape"])
    nd = len(kernel)
    strides = list(attrs.get("strides", [1] * nd))
    dil = list(attrs.get("dilations", [1] * nd))
    padding, fpad = _spatial_pads(imp, attrs, kernel, x, strides, dil)
    return kernel, strides, dil, padding, fpad


@register_onnx("MaxPool")
def _maxpool(imp: _Importer, node, ins, attrs):
    from ..ops.pooling import MaxPool
    x = _var(imp, ins[0])
    if len(node.output) > 1 and node.output[1]:
        raise imp.unsupported("MaxPool with an Indices output")
    kernel, strides, dil, padding, fpad = _pool_common(imp, attrs, x)
    if fpad is not None:
        raise imp.unsupported("MaxPool with asymmetric padding")
    op = MaxPool(tuple(kernel), tuple(strides), padding, tuple(dil) if any(d != 1 for d in dil) else 1,
                 bool(attrs.get("ceil_mode", 0)))
    return [imp.add(op, [x], x.batch)]


@register_onnx("AveragePool")
def _avgpool(imp: _Importer, node, ins, attrs):
    from ..ops.conv import AvgPool, ZeroPad
    x = _var(imp, ins[0])
    kernel, strides, dil, padding, fpad = _pool_common(imp, attrs, x)
    include = bool(attrs.get("count_include_pad", 0))
    if any(d != 1 for d in dil):
        raise imp.unsupported("AveragePool with dilations")
    if fpad is not None:
        if not include:
            raise imp.unsupported("AveragePool with asymmetric padding and count_include_pad=0")
        x = imp.add(ZeroPad(fpad), [x], x.batch)
    op = AvgPool(tuple(kernel), tuple(strides), padding, ceil_mode=bool(attrs.get("ceil_mode", 0)),
                 count_include_pad=include)
    return [imp.add(op, [x], x.batch)]


@register_onnx("GlobalAveragePool")
def _gap(imp: _Importer, node, ins, attrs):
    from ..ops.conv import GlobalAvgPool
    x = _var(imp, ins[0])
    return [imp.add(GlobalAvgPool(), [x], x.batch)]


# ---------------------------------------------------------------- shape ops

def _reshape_to(imp: _Importer, x: Val, onnx_shape: list[int], batch_at: int | None = None) -> Val:
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
def _reshape(imp: _Importer, node, ins, attrs):
    x = _var(imp, ins[0])
    if "shape" in attrs:  # opset < 5
        target = [int(t) for t in attrs["shape"]]
    else:
        target = _ints(ins[1], imp, "shape")
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
def _flatten(imp: _Importer, node, ins, attrs):
    x = _var(imp, ins[0])
    xs = imp.shape(x)
    a = int(attrs.get("axis", 1))
    a = a % len(xs) if a != len(xs) else a
    t = [int(np.prod(xs[:a])), int(np.prod(xs[a:]))]
    return [_reshape_to(imp, x, t, 0 if x.batched and x.batch == 0 and a == 1 else None)]


def _squeeze_axes(imp, node, ins, attrs):
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(ins) > 1 and ins[1] is not None:
        return _ints(ins[1], imp, "axes")
    return None


@register_onnx("Squeeze")
def _squeeze(imp: _Importer, node, ins, attrs):
    x = _var(imp, ins[0])
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
def _unsqueeze(imp: _Importer, node, ins, attrs):
    x = _var(imp, ins[0])
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
def _transpose(imp: _Importer, node, ins, attrs):
    """A permutation of the ONNX axes; the batch axis moves with it (certnn keeps the batch first and
    permutes the other dimensions)."""
    x = _var(imp, ins[0])
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


def const_node(imp: _Importer, like: str, value: np.ndarray) -> str:
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
def _concat(imp: _Importer, node, ins, attrs):
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
def _slice(imp: _Importer, node, ins, attrs):
    x = _var(imp, ins[0])
    if "starts" in attrs:  # opset < 10
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(ins[1], imp, "starts"), _ints(ins[2], imp, "ends")
        axes = _ints(ins[3], imp, "axes") if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
        steps = _ints(ins[4], imp, "steps") if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
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
def _gather(imp: _Importer, node, ins, attrs):
    x = _var(imp, ins[0])
    idx = np.asarray(_const_in(imp, ins[1], "indices"))
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
def _reduce(imp: _Importer, node, ins, attrs):
    """Mean / sum over per-sample axes: a Linear over the reduced axes (moved last and flattened)."""
    x = _var(imp, ins[0])
    r = imp.rank(x)
    if "axes" in attrs:
        axes = [int(a) for a in attrs["axes"]]
    elif len(ins) > 1 and ins[1] is not None:
        axes = _ints(ins[1], imp, "axes")
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
def _split(imp: _Importer, node, ins, attrs):
    """Consecutive Slices along one axis (sizes from the `split` attribute or input, or equal parts)."""
    x = _var(imp, ins[0])
    per = imp.b.shape(x.name)
    a = int(attrs.get("axis", 0)) % imp.rank(x)
    d = imp.axis(x, a)
    n_out = len(node.output)
    if "split" in attrs:
        sizes = [int(s) for s in attrs["split"]]
    elif len(ins) > 1 and ins[1] is not None:
        sizes = _ints(ins[1], imp, "split")
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


@register_onnx("Shape")
def _shape(imp: _Importer, node, ins, attrs):
    s = np.array(imp.shape(ins[0]), dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return [Val(const=s[start:end])]


@register_onnx("Cast")
def _cast(imp: _Importer, node, ins, attrs):
    import onnx
    x = _var(imp, ins[0])
    if attrs.get("to") not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise imp.unsupported("Cast of a layer output to a non-float type")
    return [x]


# ---------------------------------------------------------------- driver

def _fold(node, ins: list[Val | None], opset: int) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants with the ONNX reference implementation."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if n else "" for i, n in enumerate(node.input)]
    n2 = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))], domain=node.domain)
    n2.attribute.extend(node.attribute)
    inputs = [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(v.const.dtype), v.const.shape)
              for nm, v in zip(names, ins) if nm]
    outs = [helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.UNDEFINED, None)
            for i in range(len(node.output))]
    g = helper.make_graph([n2], "fold", inputs, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {nm: v.const for nm, v in zip(names, ins) if nm}
    return [np.asarray(o) for o in ReferenceEvaluator(m).run(None, feeds)]


def _element_types(model, inp, env: dict) -> tuple[str, str, str]:
    """(input dtype, output dtype, lowest float precision used) of an ONNX model; raises for inputs that
    are not floating point (certnn certifies real-valued inputs)."""
    def elem(vi) -> int:
        return vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0

    it = elem(inp)
    if it not in FLOAT_TYPES:
        raise ModelImportError(f"the ONNX input {inp.name!r} has element type {onnx_type_name(it)}; certnn imports "
                               f"floating-point inputs ({', '.join(FLOAT_TYPES.values())}) that onnxruntime runs")
    ot = elem(model.graph.output[0])
    if ot not in FLOAT_TYPES and ot != 0:
        raise ModelImportError(f"the ONNX output {model.graph.output[0].name!r} has element type {onnx_type_name(ot)}; "
                               f"certnn bounds floating-point outputs ({', '.join(FLOAT_TYPES.values())})")
    used = {FLOAT_TYPES[it]} | ({FLOAT_TYPES[ot]} if ot in FLOAT_TYPES else set())
    for v in env.values():
        if v.is_const and np.asarray(v.const).dtype.kind == "f" and np.asarray(v.const).size > 1:
            used.add(str(np.asarray(v.const).dtype))
    for n in model.graph.node:
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i in FLOAT_TYPES:
                    used.add(FLOAT_TYPES[a.i])
    precision = max(used, key=lambda t: float(np.finfo(np.dtype(t)).eps))
    return FLOAT_TYPES[it], FLOAT_TYPES.get(ot, FLOAT_TYPES[it]), precision


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


#: ONNX element types certnn imports as inputs, and their numpy types (onnxruntime runs these)
FLOAT_TYPES = {1: "float32", 11: "float64", 10: "float16"}
ONNX_TYPE_NAMES = {0: "undefined", 1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
                   7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
                   14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
                   19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1"}


def onnx_type_name(elem_type: int) -> str:
    """The ONNX element type's name as VNN-LIB writes it (float32, float64, int64, ...)."""
    return ONNX_TYPE_NAMES.get(int(elem_type), f"type{int(elem_type)}")


@dataclass(frozen=True, eq=False)
class OnnxModel:
    """An imported ONNX model: the certnn graph and what is needed to run the original with onnxruntime.

    ``input_dtype`` is the ONNX input's element type (float32, float64 or float16): certnn's graph runs in
    float64 whatever it is; onnxruntime is fed arrays of this type (cast at the boundary).
    ``precision`` is the lowest floating-point precision the model computes in (its input, output,
    initializers and Cast targets), which sets the tolerance of the import parity check."""

    graph: Graph
    model_bytes: bytes
    input_name: str
    onnx_input_shape: tuple  # with the batch entry (int, or str / None when symbolic)
    batched: bool  # whether the ONNX input has a batch dimension
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    precision: str = "float32"
    #: the ONNX input's batch axis: 0, or 1 for a time-major sequence input (T, B, ...)
    batch_axis: int = 0
    #: the ONNX output's batch axis (None: the model drops a batch of 1)
    output_batch_axis: int | None = 0

    def onnx_input(self, x: np.ndarray) -> np.ndarray:
        """certnn samples (B, *shape) -> the ONNX input array (the batch moved to its ONNX axis, or removed
        when the input has none), cast to the ONNX input's element type."""
        x = np.asarray(x, dtype=np.dtype(self.input_dtype))
        if not self.batched:
            return x.reshape(x.shape[1:])
        if self.batch_axis:
            return np.ascontiguousarray(np.moveaxis(x, 0, self.batch_axis))
        return x

    def session(self):
        """The onnxruntime session of the original model (created once, one thread, warnings off).

        onnxruntime implements RNN / LSTM / GRU only with ``layout=0``; a model using ``layout=1`` runs as its
        layout-0 equivalent (layout_zero_equivalent: the same op between transposes, which is how the ONNX
        specification defines layout=1)."""
        sess = self.__dict__.get("_session")
        if sess is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            raw = layout_zero_equivalent(self.model_bytes)
            sess = ort.InferenceSession(raw, sess_options=opts, providers=["CPUExecutionProvider"])
            object.__setattr__(self, "_session", sess)
        return sess

    def run_onnxruntime(self, x: np.ndarray) -> np.ndarray:
        """Outputs (B, K) of onnxruntime for certnn samples x (B, *shape), one sample at a time when the
        ONNX batch dimension is fixed or the model has none."""
        sess = self.session()
        x = np.asarray(x)
        b = self.onnx_input_shape[self.batch_axis] if self.batched else None
        fixed = self.batched and isinstance(b, int) and b > 0
        one_by_one = fixed or not self.batched or self.output_batch_axis is None
        outs = []
        chunks = [x[i:i + 1] for i in range(len(x))] if one_by_one else [x]
        for c in chunks:
            y = np.asarray(sess.run(None, {self.input_name: self.onnx_input(c)})[0], dtype=np.float64)
            if self.output_batch_axis:
                y = np.moveaxis(y, self.output_batch_axis, 0)
            outs.append(y.reshape(len(c), -1))
        return np.concatenate(outs, 0)


def layout_zero_equivalent(model_bytes: bytes) -> bytes:
    """The model with every RNN / LSTM / GRU of ``layout=1`` (batch-first X, Y, initial and final states)
    rewritten as the ``layout=0`` op between Transposes; unchanged bytes when there is none."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(model_bytes)
    nodes = list(model.graph.node)
    if not any(n.op_type in RECURRENT_OPS and any(a.name == "layout" and a.i == 1 for a in n.attribute)
               for n in nodes):
        return model_bytes
    out = []
    for k, n in enumerate(nodes):
        if not (n.op_type in RECURRENT_OPS and any(a.name == "layout" and a.i == 1 for a in n.attribute)):
            out.append(n)
            continue
        ins, outs = list(n.input), list(n.output)
        tag = f"__certnn_layout0_{k}"
        if ins[0]:
            out.append(helper.make_node("Transpose", [ins[0]], [tag + "_x"], perm=[1, 0, 2]))
            ins[0] = tag + "_x"
        for j in (5, 6):  # initial_h, initial_c: [B, D, H] -> [D, B, H]
            if len(ins) > j and ins[j]:
                out.append(helper.make_node("Transpose", [ins[j]], [f"{tag}_s{j}"], perm=[1, 0, 2]))
                ins[j] = f"{tag}_s{j}"
        new_outs = [f"{tag}_o{j}" if o else "" for j, o in enumerate(outs)]
        attrs = [a for a in n.attribute if a.name != "layout"]
        m = helper.make_node(n.op_type, ins, new_outs, name=n.name, domain=n.domain)
        m.attribute.extend(attrs)
        out.append(m)
        for j, o in enumerate(outs):
            if o:  # Y: [T, D, B, H] -> [B, T, D, H]; Y_h / Y_c: [D, B, H] -> [B, D, H]
                out.append(helper.make_node("Transpose", [new_outs[j]], [o], perm=[2, 0, 1, 3] if j == 0 else [1, 0, 2]))
    del model.graph.node[:]
    model.graph.node.extend(out)
    return model.SerializeToString()


def _read_model(source):
    import onnx

    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise ModelImportError(f"ONNX file {p} not found")
        raw = p.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        raw = bytes(source)
    elif isinstance(source, onnx.ModelProto):
        return source, source.SerializeToString()
    else:
        raise ModelImportError(f"expected an ONNX file path, bytes or ModelProto, got {type(source).__name__}")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ModelImportError(f"{source}: corrupt gzip data ({exc})") from exc
    try:
        model = onnx.load_from_string(raw)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise ModelImportError(f"{source}: not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.graph.node:
        raise ModelImportError(f"{source}: the ONNX graph has no nodes (not an ONNX model?)")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        # weights in a separate file next to the model (torch.onnx.export writes model.onnx.data)
        if not isinstance(source, (str, Path)):
            raise ModelImportError("the ONNX model keeps its weights in external data files; load it from its path")
        from onnx.external_data_helper import load_external_data_for_model
        try:
            load_external_data_for_model(model, str(Path(source).parent))
        except Exception as exc:  # noqa: BLE001
            raise ModelImportError(f"{source}: cannot read the model's external weight data ({exc})") from exc
        raw = model.SerializeToString()
    return model, raw


RECURRENT_OPS = ("RNN", "LSTM", "GRU")
#: ops through which a time-major input is followed to the recurrent op it feeds
_LAYOUT_KEEPING = ("Identity", "Dropout", "Cast")


def _time_major_input(g, name: str) -> bool:
    """Whether the graph input `name` is a time-major sequence (T, B, d): it reaches input X of an ONNX
    RNN / LSTM / GRU with layout=0 (the default) through layout-keeping ops only."""
    frontier, seen = [name], set()
    while frontier:
        cur = frontier.pop()
        if cur in seen:
            continue
        seen.add(cur)
        for n in g.node:
            if cur not in n.input:
                continue
            if n.op_type in RECURRENT_OPS and n.input[0] == cur:
                layout = next((a.i for a in n.attribute if a.name == "layout"), 0)
                if layout == 0:
                    return True
            elif n.op_type in _LAYOUT_KEEPING and n.input[0] == cur:
                frontier.extend(o for o in n.output[:1] if o)
    return False


class SymbolicShapeError(ModelImportError):
    """The ONNX input has symbolic per-sample dimensions and no per-sample shape was given. ``per`` is the
    per-sample shape with None where a dimension is symbolic."""

    def __init__(self, msg: str, per: tuple):
        super().__init__(msg)
        self.per = per

    def complete(self, n_values: int) -> tuple[int, ...] | None:
        """The per-sample shape with n_values values in all, when exactly one dimension is symbolic."""
        unknown = [i for i, d in enumerate(self.per) if d is None]
        known = int(np.prod([d for d in self.per if d is not None])) if len(unknown) < len(self.per) else 1
        if len(unknown) != 1 or known <= 0 or n_values % known:
            return None
        return tuple(n_values // known if d is None else d for d in self.per)


def _batch_axis(g, name: str, dims: list) -> int | None:
    """The ONNX axis of the input's batch: 1 for a time-major sequence feeding a recurrent op, else 0; None
    for a rank-1 input, or when that dimension is a fixed size above 1 (a matrix input, not a batch)."""
    if len(dims) < 2:
        return None
    b = 1 if len(dims) >= 3 and _time_major_input(g, name) else 0
    if isinstance(dims[b], int) and dims[b] > 1:
        return None
    return b


def _resolve_shape(name: str, dims: list, batch: int | None, input_shape) -> tuple[int, ...]:
    """The per-sample shape: the ONNX input's dims without the batch, symbolic ones taken from input_shape."""
    per = [d for i, d in enumerate(dims) if i != batch]
    symbolic = [i for i, d in enumerate(per) if d is None or isinstance(d, str) or (isinstance(d, int) and d <= 0)]
    if input_shape is not None:
        want = tuple(int(v) for v in input_shape)
        if len(want) != len(per) or any(w < 1 for w in want):
            raise ModelImportError(f"the ONNX input {name!r} has shape {dims} ({len(per)} dimensions per sample"
                                   f"{', the batch in dimension ' + str(batch) if batch is not None else ''}); "
                                   f"the given per-sample shape {want} does not fit it")
        bad = [i for i, (d, w) in enumerate(zip(per, want)) if i not in symbolic and int(d) != w]
        if bad:
            raise ModelImportError(f"the ONNX input {name!r} has shape {dims}: the given per-sample shape {want} "
                                   f"differs from its fixed dimensions at {bad}")
        return want
    if symbolic:
        names = ", ".join(f"{i} ({per[i]!r})" for i in symbolic)
        raise SymbolicShapeError(f"the ONNX input {name!r} has shape {dims} with symbolic per-sample dimension(s) "
                                 f"{names} (e.g. a sequence length): give the per-sample shape, e.g. "
                                 f"--input-shape {','.join(str(d) if i not in symbolic else 'T' for i, d in enumerate(per))}",
                                 tuple(None if i in symbolic else int(d) for i, d in enumerate(per)))
    return tuple(int(d) for d in per)


@dataclass(frozen=True)
class OnnxSignature:
    """An ONNX model's single input and output as declared: names, dims (int, or str / None when
    symbolic), element type names (float32, ...) and the input's batch axis (None: no batch; 1 for a
    time-major sequence input)."""

    input_name: str
    input_dims: tuple
    input_type: str
    output_name: str
    output_dims: tuple
    output_type: str
    batch_axis: int | None


def onnx_signature(source) -> OnnxSignature:
    """The declared input and output of an ONNX model (see OnnxSignature), without importing it."""
    model, _ = _read_model(source)
    g = model.graph
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if len(real_inputs) != 1 or len(g.output) != 1:
        raise ModelImportError(f"the ONNX graph has {len(real_inputs)} inputs and {len(g.output)} outputs; certnn "
                               "supports exactly one of each")
    inp, out = real_inputs[0], g.output[0]

    def elem(vi) -> str:
        return onnx_type_name(vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0)

    dims = _dims(inp)
    batch = _batch_axis(g, inp.name, dims)
    return OnnxSignature(inp.name, tuple(dims), elem(inp), out.name, tuple(_dims(out)), elem(out), batch)


def onnx_to_model(source, dtype: torch.dtype = torch.float64, check: bool = True,
                  input_shape: tuple[int, ...] | None = None) -> OnnxModel:
    """Import an ONNX model (path, gzip path, bytes or ModelProto); see the module docstring.

    ``input_shape``: the per-sample input shape, needed when the ONNX input has symbolic dimensions
    besides the batch (a sequence length); checked against the fixed ones otherwise."""
    try:
        import onnx  # noqa: F401
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover
        raise ModelImportError(f"ONNX import needs the onnx package (pip install certnn[onnx]): {exc}") from exc
    model, raw = _read_model(source)
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if not 1 <= opset:
        raise ModelImportError(f"unsupported opset {opset}")
    env = _initializers(g, numpy_helper)
    inp = _single_input(g, env)
    input_dtype, output_dtype, precision = _element_types(model, inp, env)
    dims = _dims(inp)
    if not dims:
        raise ModelImportError(f"the ONNX input {inp.name!r} has no shape")
    batch_axis = _batch_axis(g, inp.name, dims)
    batched = batch_axis is not None
    per = _resolve_shape(inp.name, dims, batch_axis, input_shape)
    builder = GraphBuilder(per, dtype)
    imp = _Importer(builder, batch_axis, _consumer_counts(g))
    imp.env = env
    env[inp.name] = Val(name=builder.input_name, batch=batch_axis)
    for pos, node in enumerate(g.node):
        _convert_node(imp, pos, node, opset)
    out = _output_value(g, env, builder)
    from .passes import simplify_selections
    graph = simplify_selections(_prune(builder.build(out.name)))
    shown = tuple(d if i == batch_axis or not (d is None or isinstance(d, str) or d <= 0) else
                  per[i - (1 if batch_axis is not None and i > batch_axis else 0)] for i, d in enumerate(dims))
    om = OnnxModel(graph, raw, inp.name, shown, batched, input_dtype, output_dtype, precision,
                   batch_axis or 0, out.batch)
    if check:
        check_onnx_parity(om)
    return om


def _initializers(g, numpy_helper) -> dict[str, Val]:
    env: dict[str, Val] = {}
    for init in g.initializer:
        try:
            env[init.name] = Val(const=numpy_helper.to_array(init))
        except Exception as exc:  # noqa: BLE001
            raise ModelImportError(f"cannot read initializer {init.name!r}: {exc}") from exc
    return env


def _single_input(g, env: dict[str, Val]):
    """The graph's one input that is not an initializer (and its one output is checked)."""
    real_inputs = [i for i in g.input if i.name not in env]
    if len(real_inputs) != 1:
        raise ModelImportError(f"the ONNX graph has {len(real_inputs)} inputs that are not initializers "
                               f"({', '.join(i.name for i in real_inputs)}); certnn supports exactly one")
    if len(g.output) != 1:
        raise ModelImportError(f"the ONNX graph has {len(g.output)} outputs; certnn supports exactly one")
    return real_inputs[0]


def _consumer_counts(g) -> dict[str, int]:
    """How many nodes (and graph outputs) read each value."""
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    for o in g.output:
        consumers[o.name] = consumers.get(o.name, 0) + 1
    return consumers


def _convert_node(imp: _Importer, pos: int, node, opset: int) -> None:
    """One ONNX node's outputs into imp.env: a constant (Constant, or every input constant: folded), the
    input itself (pass-through ops), or the nodes its converter adds."""
    env = imp.env
    imp.node = node
    imp.where = f"node {pos} {node.op_type} {node.name or node.output[0]!r}"
    if node.domain not in ("", "ai.onnx"):
        raise imp.unsupported(f"op {node.domain}.{node.op_type}")
    ins: list[Val | None] = []
    for i in node.input:
        if not i:
            ins.append(None)
        elif i not in env:
            raise imp.error(f"input {i!r} is not defined before use")
        else:
            ins.append(env[i])
    attrs = _attrs(node)
    if node.op_type == "Constant":
        env[node.output[0]] = Val(const=_constant(imp, node, attrs))
        return
    present = [v for v in ins if v is not None]
    if node.op_type in PASSTHROUGH:
        if len(node.output) > 1 and any(node.output[1:]) and imp.consumers.get(node.output[1], 0):
            raise imp.unsupported(f"{node.op_type} with its mask output in use")
        env[node.output[0]] = ins[0]
        return
    if present and all(v.is_const for v in present) and node.op_type != "Shape":
        try:
            outs = _fold(node, ins, opset)
        except Exception as exc:  # noqa: BLE001
            raise imp.error(f"cannot evaluate this constant {node.op_type}: {exc}") from exc
        for name, o in zip(node.output, outs):
            env[name] = Val(const=o)
        return
    conv = ONNX_CONVERTERS.get(node.op_type)
    if conv is None:
        raise imp.unsupported(f"op {node.op_type}")
    try:
        outs = conv(imp, node, ins, attrs)
    except ImportError as exc:
        raise imp.unsupported(f"op {node.op_type} (its certnn op is not available: {exc})") from exc
    for name, v in zip(node.output, outs):
        env[name] = v


def _constant(imp: _Importer, node, attrs: dict) -> np.ndarray:
    """The value of a Constant node."""
    from onnx import numpy_helper as nh
    a = node.attribute[0]
    if a.name == "value":
        return nh.to_array(a.t)
    if a.name in ("value_float", "value_int"):
        return np.array(attrs[a.name])
    if a.name in ("value_floats", "value_ints"):
        return np.array(list(attrs[a.name]))
    raise imp.unsupported(f"Constant with attribute {a.name}")


def _output_value(g, env: dict[str, Val], builder: GraphBuilder) -> Val:
    """The graph output's value: computed, depending on the input; an output that is the input itself gets
    an identity node."""
    out = env.get(g.output[0].name)
    if out is None:
        raise ModelImportError(f"the ONNX output {g.output[0].name!r} is never computed")
    if out.is_const:
        raise ModelImportError("the ONNX output does not depend on the input: nothing to certify")
    if out.name == builder.input_name:  # the output is the input (up to layout): an identity node
        per_in = builder.shape(out.name)
        out = Val(name=builder.add(Reshape(per_in, per_in), [out.name]), batch=out.batch)
    return out


def _prune(graph: Graph) -> Graph:
    """The graph without nodes the output does not depend on (e.g. unused outputs of a recurrent op)."""
    keep = set(graph.ancestors(graph.output_name))
    if len(keep) == len(graph.order):
        return graph
    from .ir import Node
    return Graph([Node(n, graph.nodes[n].op, graph.nodes[n].inputs, graph.nodes[n].shape)
                  for n in graph.order if n in keep], graph.output_name)


def parity_tolerance(precision: str) -> float:
    """Relative tolerance of the import parity check for a model computing in `precision`: 1e-4 for
    float32 / float64, 32 ulps (3e-2) for float16, whose rounding grows with every layer. Import bugs
    (a wrong op, axis or layout) show up as O(1) differences."""
    return max(1e-4, 32 * float(np.finfo(np.dtype(precision)).eps))


def check_onnx_parity(om: OnnxModel, n: int = 3, seed: int = 0, rtol: float | None = None) -> None:
    """Raise ModelImportError when the IR and onnxruntime disagree on random inputs (skipped when
    onnxruntime is not installed). The inputs are drawn in [-1, 1] and rounded to the ONNX input's
    element type, so both run on the same points."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:  # pragma: no cover
        return
    rtol = parity_tolerance(om.precision) if rtol is None else rtol
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n,) + om.graph.input_shape).astype(np.dtype(om.input_dtype))
    try:
        want = om.run_onnxruntime(x)
    except Exception as exc:  # noqa: BLE001
        raise ModelImportError(f"onnxruntime cannot run the model: {exc}") from exc
    with torch.no_grad():
        got = om.graph.forward(torch.as_tensor(x, dtype=torch.float64)).reshape(n, -1).numpy()
    if want.shape != got.shape:
        raise ModelImportError(f"import parity: onnxruntime output shape {want.shape} != IR {got.shape}")
    err = float(np.abs(want - got).max())
    if not np.isfinite(err) or err > rtol * (1 + float(np.abs(want).max())):
        raise ModelImportError(f"import parity failed: the IR and onnxruntime differ by {err:.3g} on random inputs "
                               f"(tolerance {rtol:.2g} relative, the model computes in {om.precision})")


def onnx_to_graph(source, dtype: torch.dtype = torch.float64, check: bool = True,
                  input_shape: tuple[int, ...] | None = None) -> Graph:
    return onnx_to_model(source, dtype, check, input_shape).graph


def load_onnx(path: str, dtype: torch.dtype = torch.float64, check: bool = True,
              input_shape: tuple[int, ...] | None = None) -> Graph:
    """The certnn Graph of an ONNX file (``.onnx`` or gzip-compressed ``.onnx.gz``); ``input_shape`` gives
    the per-sample shape when the input has symbolic dimensions besides the batch."""
    return onnx_to_graph(path, dtype, check, input_shape)


# the recurrent ops (RNN, LSTM, GRU) register themselves
from . import onnx_recurrent  # noqa: E402,F401
