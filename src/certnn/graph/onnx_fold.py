"""Constants of an ONNX graph: initializers, ``Constant`` nodes and nodes whose inputs are all constant
(evaluated with the ONNX reference implementation, :mod:`onnx.reference`)."""
from __future__ import annotations

import numpy as np

from ..errors import ModelImportError
from .onnx_importer import Importer, Val


def fold_node(node, ins: list[Val | None], opset: int) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants with the ONNX reference implementation."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if n else "" for i, n in enumerate(node.input)]
    n2 = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))], domain=node.domain)
    n2.attribute.extend(node.attribute)
    inputs = [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(v.const.dtype), v.const.shape)
              for nm, v in zip(names, ins) if nm]
    outs = [helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.UNDEFINED, None)
            for i in range(len(node.output))]
    g = helper.make_graph([n2], "fold", inputs, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {nm: v.const for nm, v in zip(names, ins) if nm}
    return [np.asarray(o) for o in ReferenceEvaluator(m).run(None, feeds)]


def initializers(g, numpy_helper) -> dict[str, Val]:
    """The graph's initializers as constant values, by name."""
    env: dict[str, Val] = {}
    for init in g.initializer:
        try:
            env[init.name] = Val(const=numpy_helper.to_array(init))
        except Exception as exc:  # noqa: BLE001
            raise ModelImportError(f"cannot read initializer {init.name!r}: {exc}") from exc
    return env


def constant_value(imp: Importer, node, attrs: dict) -> np.ndarray:
    """The value of a Constant node."""
    from onnx import numpy_helper as nh
    a = node.attribute[0]
    if a.name == "value":
        return nh.to_array(a.t)
    if a.name in ("value_float", "value_int"):
        return np.array(attrs[a.name])
    if a.name in ("value_floats", "value_ints"):
        return np.array(list(attrs[a.name]))
    raise imp.unsupported(f"Constant with attribute {a.name}")
