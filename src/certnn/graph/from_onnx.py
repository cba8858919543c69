"""ONNX models to the certnn IR.

Converters are registered explicitly, one per ONNX op type::

    @register_onnx("Gemm")          # fn(imp, node, ins, attrs) -> list of output values
    def _gemm(imp, node, ins, attrs): ...

Anything else raises :class:`~certnn.errors.UnsupportedOpError` naming the node, its position in the
graph and the supported op types.

This module is the driver (one node after the other, pruning, the parity check). The rest lives beside it:
``onnx_load`` (reading the file, input / output checks, batch axis, per-sample shape), ``onnx_model``
(``OnnxModel``, element types, parity), ``onnx_fold`` (constants), ``onnx_registry`` (the converter table),
``onnx_importer`` (``Val``, ``Importer``) and the converter families ``onnx_arith``, ``onnx_activations``,
``onnx_conv``, ``onnx_shape``, ``onnx_select`` and ``onnx_recurrent``.

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

import torch

from ..errors import ModelImportError
from ..ops.shape import Reshape
from .ir import Graph, GraphBuilder
from .onnx_fold import constant_value, fold_node, initializers
from .onnx_importer import Importer, Val, onnx_attrs
from .onnx_load import SymbolicShapeError, onnx_signature  # noqa: F401 - importable from here
from .onnx_load import declared_dims, element_types, input_batch_axis, per_sample_shape, read_model, single_input
from .onnx_model import OnnxModel, check_onnx_parity, parity_tolerance  # noqa: F401 - parity_tolerance too
from .onnx_registry import PASSTHROUGH, converter_for, register_onnx, supported_onnx_ops

__all__ = ["register_onnx", "supported_onnx_ops", "onnx_to_graph", "load_onnx", "OnnxModel"]


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
    model, raw = read_model(source)
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if not 1 <= opset:
        raise ModelImportError(f"unsupported opset {opset}")
    env = initializers(g, numpy_helper)
    inp = single_input(g, env)
    input_dtype, output_dtype, precision = element_types(model, inp, env)
    dims = declared_dims(inp)
    if not dims:
        raise ModelImportError(f"the ONNX input {inp.name!r} has no shape")
    batch_axis = input_batch_axis(g, inp.name, dims)
    batched = batch_axis is not None
    per = per_sample_shape(inp.name, dims, batch_axis, input_shape)
    builder = GraphBuilder(per, dtype)
    imp = Importer(builder, batch_axis, _consumer_counts(g))
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


def _consumer_counts(g) -> dict[str, int]:
    """How many nodes (and graph outputs) read each value."""
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    for o in g.output:
        consumers[o.name] = consumers.get(o.name, 0) + 1
    return consumers


def _convert_node(imp: Importer, pos: int, node, opset: int) -> None:
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
    attrs = onnx_attrs(node)
    if node.op_type == "Constant":
        env[node.output[0]] = Val(const=constant_value(imp, node, attrs))
        return
    present = [v for v in ins if v is not None]
    if node.op_type in PASSTHROUGH:
        if len(node.output) > 1 and any(node.output[1:]) and imp.consumers.get(node.output[1], 0):
            raise imp.unsupported(f"{node.op_type} with its mask output in use")
        env[node.output[0]] = ins[0]
        return
    if present and all(v.is_const for v in present) and node.op_type != "Shape":
        try:
            outs = fold_node(node, ins, opset)
        except Exception as exc:  # noqa: BLE001
            raise imp.error(f"cannot evaluate this constant {node.op_type}: {exc}") from exc
        for name, o in zip(node.output, outs):
            env[name] = Val(const=o)
        return
    conv = converter_for(node.op_type)
    if conv is None:
        raise imp.unsupported(f"op {node.op_type}")
    try:
        outs = conv(imp, node, ins, attrs)
    except ImportError as exc:
        raise imp.unsupported(f"op {node.op_type} (its certnn op is not available: {exc})") from exc
    for name, v in zip(node.output, outs):
        env[name] = v


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


def onnx_to_graph(source, dtype: torch.dtype = torch.float64, check: bool = True,
                  input_shape: tuple[int, ...] | None = None) -> Graph:
    return onnx_to_model(source, dtype, check, input_shape).graph


def load_onnx(path: str, dtype: torch.dtype = torch.float64, check: bool = True,
              input_shape: tuple[int, ...] | None = None) -> Graph:
    """The certnn Graph of an ONNX file (``.onnx`` or gzip-compressed ``.onnx.gz``); ``input_shape`` gives
    the per-sample shape when the input has symbolic dimensions besides the batch."""
    return onnx_to_graph(path, dtype, check, input_shape)
