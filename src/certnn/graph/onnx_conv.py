"""ONNX convolution, padding and pooling: ``Conv`` (1-D / 2-D), ``Pad`` (zeros), ``MaxPool``,
``AveragePool`` and ``GlobalAveragePool``; asymmetric or ``SAME_*`` padding becomes a ZeroPad node."""
from __future__ import annotations

import numpy as np

from .onnx_importer import Importer, Val, const_ints, const_value, variable
from .onnx_registry import register_onnx


def _spatial_pads(imp: Importer, attrs, kernel, x: Val, strides, dilations):
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
def _conv(imp: Importer, node, ins, attrs):
    from ..ops.conv import Conv, ZeroPad  # lazy: provided by the CNN ops
    x = variable(imp, ins[0])
    if x.batch != 0:
        raise imp.unsupported("Conv on a tensor without a batch dimension in front")
    w = const_value(imp, ins[1], "weight")
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
def _pad(imp: Importer, node, ins, attrs):
    from ..ops.conv import ZeroPad
    x = variable(imp, ins[0])
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = list(attrs["pads"]) if "pads" in attrs else const_ints(ins[1], imp, "pads")
    value = float(attrs.get("value", 0.0))
    if len(ins) > 2 and ins[2] is not None:
        value = float(np.asarray(const_value(imp, ins[2], "constant_value")).reshape(()))
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
def _maxpool(imp: Importer, node, ins, attrs):
    from ..ops.pooling import MaxPool
    x = variable(imp, ins[0])
    if len(node.output) > 1 and node.output[1]:
        raise imp.unsupported("MaxPool with an Indices output")
    kernel, strides, dil, padding, fpad = _pool_common(imp, attrs, x)
    if fpad is not None:
        raise imp.unsupported("MaxPool with asymmetric padding")
    op = MaxPool(tuple(kernel), tuple(strides), padding, tuple(dil) if any(d != 1 for d in dil) else 1,
                 bool(attrs.get("ceil_mode", 0)))
    return [imp.add(op, [x], x.batch)]


@register_onnx("AveragePool")
def _avgpool(imp: Importer, node, ins, attrs):
    from ..ops.conv import AvgPool, ZeroPad
    x = variable(imp, ins[0])
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
def _gap(imp: Importer, node, ins, attrs):
    from ..ops.conv import GlobalAvgPool
    x = variable(imp, ins[0])
    return [imp.add(GlobalAvgPool(), [x], x.batch)]
