"""`device=` of the attacks and of CLEVER: the model and the inputs moved to one device, results moved back.

The attacks and CLEVER run where their input x lies. `device=` ("cpu", "cuda", "auto", a torch.device; None:
x's own device) moves x and the model there first; the caller's module is never modified (a deep copy is
moved), a certnn Graph is copied with `Graph.to(device=...)`, and any other callable is used as is (it must
accept tensors on that device). Results come back on the device of the caller's x.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

Model = Callable[[Tensor], Tensor]


def target_device(x, device) -> torch.device | None:
    """The resolved device to run on, or None to stay where x is (device None, or already there)."""
    if device is None:
        return None
    from ..certify.device import resolve_device

    dev = resolve_device(device)
    here = x.device if isinstance(x, Tensor) else torch.device("cpu")
    return None if _same(dev, here) else dev


def _same(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cuda":
        cur = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return (a.index if a.index is not None else cur) == (b.index if b.index is not None else cur)
    return a.index == b.index  # cpu and cpu:0 differ only for certnn/testing/virtual_device.py's stand-in


def model_on(model: Model, device: torch.device) -> Model:
    """`model` running on `device`, the original unchanged (see the module docstring)."""
    from ..graph.ir import Graph

    if isinstance(model, Graph):
        return model.to(device=device)
    if isinstance(model, nn.Module):
        tensors = [*model.parameters(), *model.buffers()]
        if all(_same(t.device, device) for t in tensors):
            return model
        return copy.deepcopy(model).to(device)
    return model


def tensor_on(value, device: torch.device):
    """A tensor (or a tuple/list of them, e.g. a clip box) moved to `device`; other values unchanged."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(tensor_on(v, device) for v in value)
    return value


def result_on(result, device: torch.device):
    """A frozen dataclass of results with every tensor field moved to `device`."""
    moved = {f.name: getattr(result, f.name).to(device) for f in dataclasses.fields(result)
             if isinstance(getattr(result, f.name), Tensor)}
    return dataclasses.replace(result, **moved)
