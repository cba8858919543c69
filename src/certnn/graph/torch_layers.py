"""PyTorch layers to the certnn IR: ``nn.Linear``, activations, ``nn.Flatten``, convolutions, pooling,
batch norm (eval mode), zero padding and ``nn.Embedding`` (graph/recurrent.py), and the fx functions of
convolution and pooling (``F.conv2d``, ``F.max_pool2d``, ...)."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UnsupportedOpError
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.conv import AvgPool, Conv, GlobalAvgPool, ZeroPad
from ..ops.pooling import MaxPool
from ..ops.shape import Reshape
from . import recurrent as rec
from .ir import GraphBuilder
from .torch_registry import param, register_function, register_module


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
    return flatten_dims(b, x, m.start_dim, m.end_dim)


def flatten_dims(b: GraphBuilder, x: str, start: int, end: int) -> str:
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


@register_module(nn.Embedding)
def _embedding(b: GraphBuilder, m: nn.Embedding, x: str) -> str:
    return rec.embedding_module(b, m, x, "")
