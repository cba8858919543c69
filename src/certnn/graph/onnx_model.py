"""An imported ONNX model (``OnnxModel``: the certnn graph and the original for onnxruntime), ONNX element
type names, the layout-0 rewrite onnxruntime needs for batch-first recurrent ops, and the import parity
check against onnxruntime."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ModelImportError
from .ir import Graph

#: the ONNX recurrent op types
RECURRENT_OPS = ("RNN", "LSTM", "GRU")
#: ONNX element types certnn imports as inputs, and their numpy types (onnxruntime runs these)
FLOAT_TYPES = {1: "float32", 11: "float64", 10: "float16"}
ONNX_TYPE_NAMES = {0: "undefined", 1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
                   7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
                   14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
                   19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1"}


def onnx_type_name(elem_type: int) -> str:
    """The ONNX element type's name as VNN-LIB writes it (float32, float64, int64, ...)."""
    return ONNX_TYPE_NAMES.get(int(elem_type), f"type{int(elem_type)}")


@dataclass(frozen=True, eq=False)
class OnnxModel:
    """An imported ONNX model: the certnn graph and what is needed to run the original with onnxruntime.

    ``input_dtype`` is the ONNX input's element type (float32, float64 or float16): certnn's graph runs in
    float64 whatever it is; onnxruntime is fed arrays of this type (cast at the boundary).
    ``precision`` is the lowest floating-point precision the model computes in (its input, output,
    initializers and Cast targets), which sets the tolerance of the import parity check."""

    graph: Graph
    model_bytes: bytes
    input_name: str
    onnx_input_shape: tuple  # with the batch entry (int, or str / None when symbolic)
    batched: bool  # whether the ONNX input has a batch dimension
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    precision: str = "float32"
    #: the ONNX input's batch axis: 0, or 1 for a time-major sequence input (T, B, ...)
    batch_axis: int = 0
    #: the ONNX output's batch axis (None: the model drops a batch of 1)
    output_batch_axis: int | None = 0

    def onnx_input(self, x: np.ndarray) -> np.ndarray:
        """certnn samples (B, *shape) -> the ONNX input array (the batch moved to its ONNX axis, or removed
        when the input has none), cast to the ONNX input's element type."""
        x = np.asarray(x, dtype=np.dtype(self.input_dtype))
        if not self.batched:
            return x.reshape(x.shape[1:])
        if self.batch_axis:
            return np.ascontiguousarray(np.moveaxis(x, 0, self.batch_axis))
        return x

    def session(self):
        """The onnxruntime session of the original model (created once, one thread, warnings off).

        onnxruntime implements RNN / LSTM / GRU only with ``layout=0``; a model using ``layout=1`` runs as its
        layout-0 equivalent (layout_zero_equivalent: the same op between transposes, which is how the ONNX
        specification defines layout=1)."""
        sess = self.__dict__.get("_session")
        if sess is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            raw = layout_zero_equivalent(self.model_bytes)
            sess = ort.InferenceSession(raw, sess_options=opts, providers=["CPUExecutionProvider"])
            object.__setattr__(self, "_session", sess)
        return sess

    def run_onnxruntime(self, x: np.ndarray) -> np.ndarray:
        """Outputs (B, K) of onnxruntime for certnn samples x (B, *shape), one sample at a time when the
        ONNX batch dimension is fixed or the model has none."""
        sess = self.session()
        x = np.asarray(x)
        b = self.onnx_input_shape[self.batch_axis] if self.batched else None
        fixed = self.batched and isinstance(b, int) and b > 0
        one_by_one = fixed or not self.batched or self.output_batch_axis is None
        outs = []
        chunks = [x[i:i + 1] for i in range(len(x))] if one_by_one else [x]
        for c in chunks:
            y = np.asarray(sess.run(None, {self.input_name: self.onnx_input(c)})[0], dtype=np.float64)
            if self.output_batch_axis:
                y = np.moveaxis(y, self.output_batch_axis, 0)
            outs.append(y.reshape(len(c), -1))
        return np.concatenate(outs, 0)


def layout_zero_equivalent(model_bytes: bytes) -> bytes:
    """The model with every RNN / LSTM / GRU of ``layout=1`` (batch-first X, Y, initial and final states)
    rewritten as the ``layout=0`` op between Transposes; unchanged bytes when there is none."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(model_bytes)
    nodes = list(model.graph.node)
    if not any(n.op_type in RECURRENT_OPS and any(a.name == "layout" and a.i == 1 for a in n.attribute)
               for n in nodes):
        return model_bytes
    out = []
    for k, n in enumerate(nodes):
        if not (n.op_type in RECURRENT_OPS and any(a.name == "layout" and a.i == 1 for a in n.attribute)):
            out.append(n)
            continue
        ins, outs = list(n.input), list(n.output)
        tag = f"__certnn_layout0_{k}"
        if ins[0]:
            out.append(helper.make_node("Transpose", [ins[0]], [tag + "_x"], perm=[1, 0, 2]))
            ins[0] = tag + "_x"
        for j in (5, 6):  # initial_h, initial_c: [B, D, H] -> [D, B, H]
            if len(ins) > j and ins[j]:
                out.append(helper.make_node("Transpose", [ins[j]], [f"{tag}_s{j}"], perm=[1, 0, 2]))
                ins[j] = f"{tag}_s{j}"
        new_outs = [f"{tag}_o{j}" if o else "" for j, o in enumerate(outs)]
        attrs = [a for a in n.attribute if a.name != "layout"]
        m = helper.make_node(n.op_type, ins, new_outs, name=n.name, domain=n.domain)
        m.attribute.extend(attrs)
        out.append(m)
        for j, o in enumerate(outs):
            if o:  # Y: [T, D, B, H] -> [B, T, D, H]; Y_h / Y_c: [D, B, H] -> [B, D, H]
                out.append(helper.make_node("Transpose", [new_outs[j]], [o], perm=[2, 0, 1, 3] if j == 0 else [1, 0, 2]))
    del model.graph.node[:]
    model.graph.node.extend(out)
    return model.SerializeToString()


def parity_tolerance(precision: str) -> float:
    """Relative tolerance of the import parity check for a model computing in `precision`: 1e-4 for
    float32 / float64, 32 ulps (3e-2) for float16, whose rounding grows with every layer. Import bugs
    (a wrong op, axis or layout) show up as O(1) differences."""
    return max(1e-4, 32 * float(np.finfo(np.dtype(precision)).eps))


def check_onnx_parity(om: OnnxModel, n: int = 3, seed: int = 0, rtol: float | None = None) -> None:
    """Raise ModelImportError when the IR and onnxruntime disagree on random inputs (skipped when
    onnxruntime is not installed). The inputs are drawn in [-1, 1] and rounded to the ONNX input's
    element type, so both run on the same points."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:  # pragma: no cover
        return
    rtol = parity_tolerance(om.precision) if rtol is None else rtol
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n,) + om.graph.input_shape).astype(np.dtype(om.input_dtype))
    try:
        want = om.run_onnxruntime(x)
    except Exception as exc:  # noqa: BLE001
        raise ModelImportError(f"onnxruntime cannot run the model: {exc}") from exc
    with torch.no_grad():
        got = om.graph.forward(torch.as_tensor(x, dtype=torch.float64)).reshape(n, -1).numpy()
    if want.shape != got.shape:
        raise ModelImportError(f"import parity: onnxruntime output shape {want.shape} != IR {got.shape}")
    err = float(np.abs(want - got).max())
    if not np.isfinite(err) or err > rtol * (1 + float(np.abs(want).max())):
        raise ModelImportError(f"import parity failed: the IR and onnxruntime differ by {err:.3g} on random inputs "
                               f"(tolerance {rtol:.2g} relative, the model computes in {om.precision})")
