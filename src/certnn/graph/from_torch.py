"""PyTorch modules to the certnn IR.

`nn.Sequential` (nested too) is converted layer by layer; any other module is traced with torch.fx and
its graph is converted node by node. Converters are registered explicitly:

    @register_module(nn.Linear)            # fn(builder, module, input_name) -> output name
    @register_function(torch.relu, ...)    # fn(builder, fx_node, args, kwargs) -> output name

Anything else raises UnsupportedOpError naming the layer and listing what is supported.

This module is the driver (Sequential, tracing, parity); the converter tables live in ``torch_registry``,
the converters in ``torch_layers`` (layers, convolution and pooling) and ``torch_functions`` (fx functions
and Tensor methods), recurrent layers in ``recurrent``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ModelImportError, UnsupportedOpError
from . import recurrent as rec
from . import torch_functions, torch_layers  # noqa: F401 - they register their converters
from .ir import Graph, GraphBuilder
from .torch_registry import (FUNCTION_CONVERTERS, METHOD_CONVERTERS, MODULE_CONVERTERS, PASSTHROUGH, is_node_name,
                             param, supported_names)
from .torch_registry import register_function, register_method_call, register_module  # noqa: F401 - importable here


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


def _traced(module: nn.Module, path: str):
    """The torch.fx GraphModule of a module with one input (clear errors for torch.nn layers without a
    converter, untraceable forwards and several inputs)."""
    if type(module).__module__.startswith("torch.nn"):
        raise UnsupportedOpError(f"layer nn.{type(module).__name__}", supported_names(), where=path or "<root>")
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001
        raise ModelImportError(f"cannot trace {type(module).__name__} at {path or '<root>'} with torch.fx "
                               f"({type(exc).__name__}: {exc}); write the model as nn.Sequential or avoid "
                               "data-dependent control flow") from exc
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ModelImportError(f"{type(module).__name__}.forward takes {len(placeholders)} inputs; certnn "
                               "supports models with one input tensor")
    return gm


def _trace_into(b: GraphBuilder, module: nn.Module, x: str, path: str) -> str:
    gm = _traced(module, path)
    env: dict[str, Any] = {}
    out_name = None
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
        elif n.op in ("call_module", "call_function", "call_method"):
            env[n.name] = _call(b, gm, n, args, kwargs, where)
        elif n.op == "output":
            out_name = rec.materialize(b, args[0], where, "the model output")
            if not is_node_name(b, out_name):
                raise ModelImportError("the model's output must be a single tensor")
    assert out_name is not None
    return out_name


def _call(b: GraphBuilder, gm, n, args: list, kwargs: dict, where: str):
    """The value of an fx call node: the recurrent rules first (graph/recurrent.py), then the converter of
    the module, function or method."""
    target = gm.get_submodule(n.target) if n.op == "call_module" else n.target
    res = rec.dispatch(b, n.op, target, args, kwargs, where, _convert_module)
    if res is not rec.NOT_HANDLED:
        return res
    if n.op == "call_module":
        args = _generic_args(b, args, where, n.target)
        if len(args) != 1 or not is_node_name(b, args[0]):
            raise UnsupportedOpError(f"call of {type(target).__name__} with {len(args)} inputs",
                                     supported_names(), where=where)
        return _convert_module(b, target, args[0], where)
    if n.op == "call_function":
        args = _generic_args(b, args, where, getattr(n.target, "__name__", str(n.target)))
        conv = FUNCTION_CONVERTERS.get(n.target)
        if conv is None:
            raise UnsupportedOpError(f"function {getattr(n.target, '__name__', n.target)}",
                                     supported_names(), where=where)
        return conv(b, n, args, kwargs)
    return _call_method(b, n, args, kwargs, where)


def _call_method(b: GraphBuilder, n, args: list, kwargs: dict, where: str):
    if n.target in ("view", "reshape"):
        args = [args[0]] + [-1 if a is rec.BATCH else a for a in args[1:]]
    args = _generic_args(b, args, where, f"Tensor.{n.target}")
    conv = METHOD_CONVERTERS.get(n.target)
    if conv is None:
        if n.target in ("contiguous", "clone", "detach", "float", "double") and is_node_name(b, args[0]):
            return args[0]
        if n.target == "size" or n.target == "dim":
            raise UnsupportedOpError(f"Tensor.{n.target}() in forward (shape-dependent code)",
                                     supported_names(), where=where,
                                     hint="use x.flatten(1) or nn.Flatten instead of x.view(x.size(0), -1)")
        raise UnsupportedOpError(f"method Tensor.{n.target}", supported_names(), where=where)
    return conv(b, n, args, kwargs)


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
