"""TorchScript models (`torch.jit.save`) to plain modules, for Sequential-structured scripts.

A scripted module keeps each submodule's class name (`original_name`) and its parameters, so a script of
an nn.Sequential of standard layers can be rebuilt exactly. Scripts with custom forward code cannot be
read reliably this way; they get a clear error (export them as a state_dict + factory, or ONNX).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import UnsupportedOpError
from .registrar import registrar

_REBUILD: dict[str, Callable[[torch.jit.ScriptModule], nn.Module]] = {}


register_script = registrar(_REBUILD, "register_script",
                            "Decorator registering the rebuilder of a scripted submodule's original class name.")


def _copy_params(dst: nn.Module, src: torch.jit.ScriptModule) -> nn.Module:
    state = {k: v for k, v in src.state_dict().items()}
    dst.load_state_dict(state)
    return dst


@register_script("Linear")
def _linear(m):
    w = m.weight
    return _copy_params(nn.Linear(w.shape[1], w.shape[0], bias=m.bias is not None), m)


for _n, _cls in {"ReLU": nn.ReLU, "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid, "Identity": nn.Identity,
                 "Dropout": nn.Identity}.items():
    register_script(_n)(lambda m, _cls=_cls: _cls())


@register_script("LeakyReLU")
def _leaky(m):
    return nn.LeakyReLU(float(m.negative_slope))


@register_script("Hardtanh")
def _hardtanh(m):
    return nn.Hardtanh(float(m.min_val), float(m.max_val))


@register_script("Flatten")
def _flatten(m):
    return nn.Flatten(int(m.start_dim), int(m.end_dim))


def script_to_sequential(m: torch.jit.ScriptModule, path: str = "<root>") -> nn.Module:
    name = m.original_name
    if name == "Sequential":
        return nn.Sequential(*[script_to_sequential(c, f"{path}.{k}") for k, c in m.named_children()])
    fn = _REBUILD.get(name)
    if fn is None:
        raise UnsupportedOpError(f"TorchScript module {name!r}", ["Sequential"] + sorted(_REBUILD), where=path,
                                 hint="scripts with custom forward code cannot be imported; save a state_dict "
                                      "and use --model file.py:factory --weights state.pt, or export to ONNX")
    return fn(m)
