"""ONNX elementwise nonlinearities and normalisation: ``Relu``, ``Sigmoid``, ``Tanh``, ``LeakyRelu``,
``Atan``, ``Clip`` (a ReLU or a hardtanh) and ``BatchNormalization`` at inference (a per-channel affine
map)."""
from __future__ import annotations

import numpy as np

from ..ops.activation import Activation
from .onnx_arith import elementwise
from .onnx_importer import Importer, const_value, variable
from .onnx_registry import register_onnx


def _act(kind: str):
    def conv(imp: Importer, node, ins, attrs):
        x = variable(imp, ins[0])
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
def _clip(imp: Importer, node, ins, attrs):
    x = variable(imp, ins[0])
    lo = attrs.get("min", None)
    hi = attrs.get("max", None)
    if len(ins) > 1 and ins[1] is not None:
        lo = float(np.asarray(const_value(imp, ins[1], "min")).reshape(()))
    if len(ins) > 2 and ins[2] is not None:
        hi = float(np.asarray(const_value(imp, ins[2], "max")).reshape(()))
    lo = -np.inf if lo is None else float(lo)
    hi = np.inf if hi is None else float(hi)
    if lo == 0.0 and hi == np.inf:
        return [imp.add(Activation("relu"), [x], x.batch)]
    if np.isfinite(lo) and np.isfinite(hi):
        return [imp.add(Activation("hardtanh", min_val=lo, max_val=hi), [x], x.batch)]
    raise imp.unsupported(f"Clip to [{lo}, {hi}] (supported: [0, inf) and finite [min, max])")


@register_onnx("BatchNormalization")
def _batchnorm(imp: Importer, node, ins, attrs):
    x = variable(imp, ins[0])
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
    return [elementwise(imp, x, imp.torch_const(scale.reshape(bshape)), imp.torch_const(shift.reshape(bshape)))]
