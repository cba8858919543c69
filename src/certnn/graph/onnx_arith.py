"""ONNX linear algebra and arithmetic: ``Gemm``, ``MatMul`` (with a constant operand), ``Add`` / ``Sub``,
``Mul`` / ``Div`` (a constant operand as an elementwise affine map; x * y of two layer outputs as the
product op) and ``Neg``. A MatMul followed by the Add of a bias vector fuses into one Linear."""
from __future__ import annotations

import numpy as np
import torch

from ..ops.affine import ElementwiseAffine, Linear
from ..ops.shape import Add, Permute, Reshape
from .onnx_importer import Importer, Val, variable
from .onnx_registry import register_onnx


@register_onnx("Gemm")
def _gemm(imp: Importer, node, ins, attrs):
    a, w = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    variable(imp, a, "A")
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
def _matmul(imp: Importer, node, ins, attrs):
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


def _lift_rank(imp: Importer, x: Val, c) -> Val:
    """x with leading unit dimensions added when a constant operand of higher rank has only 1s there (as
    exporters broadcast a folded [1, 1, H] constant against a [B, H] value); the batch axis moves along."""
    c = np.asarray(c)
    extra = c.ndim - imp.rank(x)
    if extra <= 0 or any(d != 1 for d in c.shape[:extra]):
        return x
    per = imp.b.shape(x.name)
    return imp.add(Reshape(per, (1,) * extra + per), [x], None if x.batch is None else x.batch + extra)


def _broadcast_const(imp: Importer, x: Val, c: np.ndarray) -> torch.Tensor:
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


def elementwise(imp: Importer, x: Val, scale, shift) -> Val:
    """x * scale + shift (either may be None), elementwise."""
    return imp.add(ElementwiseAffine(scale, shift), [x], x.batch)


@register_onnx("Add", "Sub")
def _add_sub(imp: Importer, node, ins, attrs):
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
        return [elementwise(imp, a, None, k)]
    b = _lift_rank(imp, b, a.const)
    k = _broadcast_const(imp, b, a.const)
    if sign > 0:
        return [elementwise(imp, b, None, k)]
    return [elementwise(imp, b, torch.tensor(-1.0, dtype=imp.b.dtype), k)]  # c - x


@register_onnx("Mul", "Div")
def _mul_div(imp: Importer, node, ins, attrs):
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
        return [elementwise(imp, a, 1.0 / k, None)]
    x, c = (a, b.const) if not a.is_const else (b, a.const)
    x = _lift_rank(imp, x, c)
    return [elementwise(imp, x, _broadcast_const(imp, x, c), None)]


@register_onnx("Neg")
def _neg(imp, node, ins, attrs):
    x = variable(imp, ins[0])
    return [elementwise(imp, x, torch.tensor(-1.0, dtype=imp.b.dtype), None)]
