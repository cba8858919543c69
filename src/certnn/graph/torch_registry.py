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
from .registrar import registrar

ModuleConverter = Callable[[GraphBuilder, nn.Module, str], str]
FunctionConverter = Callable[[GraphBuilder, Any, list, dict], str]

MODULE_CONVERTERS: dict[type, ModuleConverter] = {}
FUNCTION_CONVERTERS: dict[Any, FunctionConverter] = {}
METHOD_CONVERTERS: dict[str, FunctionConverter] = {}
#: modules that are removed (identity in eval mode)
PASSTHROUGH: tuple[type, ...] = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)


register_module = registrar(MODULE_CONVERTERS, "register_module",
                            "Decorator registering a module converter for the given nn.Module types.")
register_function = registrar(FUNCTION_CONVERTERS, "register_function",
                              "Decorator registering an fx function converter for the given call targets.")
register_method_call = registrar(METHOD_CONVERTERS, "register_method_call",
                                 "Decorator registering a converter for the given Tensor method names.")


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
