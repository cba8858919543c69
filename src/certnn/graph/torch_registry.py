"""The tables of PyTorch converters (graph/from_torch.py): modules by type, fx functions by target and
Tensor methods by name, registered explicitly::

    @register_module(nn.Linear)            # fn(builder, module, input_name) -> output name
    @register_function(torch.relu, ...)    # fn(builder, fx_node, args, kwargs) -> output name

and the helpers every converter uses (``param``: a module tensor for an IR op; ``is_node_name``)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .ir import GraphBuilder

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


# ---------------------------------------------------------------- helpers

def param(b: GraphBuilder, t: Tensor | None) -> Tensor | None:
    """A module tensor for an IR op: detached (the default), or the tensor itself when the graph is built
    with keep_grad=True (gradients of bounds then flow to the module's parameters)."""
    if t is None:
        return None
    return t if getattr(b, "options", {}).get("keep_grad") else t.detach()


def is_node_name(b: GraphBuilder, a) -> bool:
    """Whether a converted argument is a node of the graph being built (not a constant)."""
    return isinstance(a, str) and a in b._probe
