"""Reading an ONNX model and checking what certnn imports: the file (gzip, external weights), its single
input and output, element types, the input's batch axis (time-major sequences feeding a recurrent op) and
per-sample shape (symbolic dimensions given by ``input_shape``), with errors saying what and why."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelImportError
from ..io_gzip import gunzip_if_gzipped
from .onnx_importer import Val
from .onnx_model import FLOAT_TYPES, RECURRENT_OPS, onnx_type_name


def read_model(source):
    """(ModelProto, serialized bytes) of a path (.onnx or gzip), bytes or ModelProto."""
    import onnx

    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise ModelImportError(f"ONNX file {p} not found")
        raw = p.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        raw = bytes(source)
    elif isinstance(source, onnx.ModelProto):
        return source, source.SerializeToString()
    else:
        raise ModelImportError(f"expected an ONNX file path, bytes or ModelProto, got {type(source).__name__}")
    raw = gunzip_if_gzipped(raw, str(source), ModelImportError)
    try:
        model = onnx.load_from_string(raw)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise ModelImportError(f"{source}: not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.graph.node:
        raise ModelImportError(f"{source}: the ONNX graph has no nodes (not an ONNX model?)")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        # weights in a separate file next to the model (torch.onnx.export writes model.onnx.data)
        if not isinstance(source, (str, Path)):
            raise ModelImportError("the ONNX model keeps its weights in external data files; load it from its path")
        from onnx.external_data_helper import load_external_data_for_model
        try:
            load_external_data_for_model(model, str(Path(source).parent))
        except Exception as exc:  # noqa: BLE001
            raise ModelImportError(f"{source}: cannot read the model's external weight data ({exc})") from exc
        raw = model.SerializeToString()
    return model, raw


#: ops through which a time-major input is followed to the recurrent op it feeds
_LAYOUT_KEEPING = ("Identity", "Dropout", "Cast")


def _time_major_input(g, name: str) -> bool:
    """Whether the graph input `name` is a time-major sequence (T, B, d): it reaches input X of an ONNX
    RNN / LSTM / GRU with layout=0 (the default) through layout-keeping ops only."""
    frontier, seen = [name], set()
    while frontier:
        cur = frontier.pop()
        if cur in seen:
            continue
        seen.add(cur)
        for n in g.node:
            if cur not in n.input:
                continue
            if n.op_type in RECURRENT_OPS and n.input[0] == cur:
                layout = next((a.i for a in n.attribute if a.name == "layout"), 0)
                if layout == 0:
                    return True
            elif n.op_type in _LAYOUT_KEEPING and n.input[0] == cur:
                frontier.extend(o for o in n.output[:1] if o)
    return False


class SymbolicShapeError(ModelImportError):
    """The ONNX input has symbolic per-sample dimensions and no per-sample shape was given. ``per`` is the
    per-sample shape with None where a dimension is symbolic."""

    def __init__(self, msg: str, per: tuple):
        super().__init__(msg)
        self.per = per

    def complete(self, n_values: int) -> tuple[int, ...] | None:
        """The per-sample shape with n_values values in all, when exactly one dimension is symbolic."""
        unknown = [i for i, d in enumerate(self.per) if d is None]
        known = int(np.prod([d for d in self.per if d is not None])) if len(unknown) < len(self.per) else 1
        if len(unknown) != 1 or known <= 0 or n_values % known:
            return None
        return tuple(n_values // known if d is None else d for d in self.per)


def input_batch_axis(g, name: str, dims: list) -> int | None:
    """The ONNX axis of the input's batch: 1 for a time-major sequence feeding a recurrent op, else 0; None
    for a rank-1 input, or when that dimension is a fixed size above 1 (a matrix input, not a batch)."""
    if len(dims) < 2:
        return None
    b = 1 if len(dims) >= 3 and _time_major_input(g, name) else 0
    if isinstance(dims[b], int) and dims[b] > 1:
        return None
    return b


def per_sample_shape(name: str, dims: list, batch: int | None, input_shape) -> tuple[int, ...]:
    """The per-sample shape: the ONNX input's dims without the batch, symbolic ones taken from input_shape."""
    per = [d for i, d in enumerate(dims) if i != batch]
    symbolic = [i for i, d in enumerate(per) if d is None or isinstance(d, str) or (isinstance(d, int) and d <= 0)]
    if input_shape is not None:
        want = tuple(int(v) for v in input_shape)
        if len(want) != len(per) or any(w < 1 for w in want):
            raise ModelImportError(f"the ONNX input {name!r} has shape {dims} ({len(per)} dimensions per sample"
                                   f"{', the batch in dimension ' + str(batch) if batch is not None else ''}); "
                                   f"the given per-sample shape {want} does not fit it")
        bad = [i for i, (d, w) in enumerate(zip(per, want)) if i not in symbolic and int(d) != w]
        if bad:
            raise ModelImportError(f"the ONNX input {name!r} has shape {dims}: the given per-sample shape {want} "
                                   f"differs from its fixed dimensions at {bad}")
        return want
    if symbolic:
        names = ", ".join(f"{i} ({per[i]!r})" for i in symbolic)
        raise SymbolicShapeError(f"the ONNX input {name!r} has shape {dims} with symbolic per-sample dimension(s) "
                                 f"{names} (e.g. a sequence length): give the per-sample shape, e.g. "
                                 f"--input-shape {','.join(str(d) if i not in symbolic else 'T' for i, d in enumerate(per))}",
                                 tuple(None if i in symbolic else int(d) for i, d in enumerate(per)))
    return tuple(int(d) for d in per)


@dataclass(frozen=True)
class OnnxSignature:
    """An ONNX model's single input and output as declared: names, dims (int, or str / None when
    symbolic), element type names (float32, ...) and the input's batch axis (None: no batch; 1 for a
    time-major sequence input)."""

    input_name: str
    input_dims: tuple
    input_type: str
    output_name: str
    output_dims: tuple
    output_type: str
    batch_axis: int | None


def onnx_signature(source) -> OnnxSignature:
    """The declared input and output of an ONNX model (see OnnxSignature), without importing it."""
    model, _ = read_model(source)
    g = model.graph
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if len(real_inputs) != 1 or len(g.output) != 1:
        raise ModelImportError(f"the ONNX graph has {len(real_inputs)} inputs and {len(g.output)} outputs; certnn "
                               "supports exactly one of each")
    inp, out = real_inputs[0], g.output[0]

    def elem(vi) -> str:
        return onnx_type_name(vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0)

    dims = declared_dims(inp)
    batch = input_batch_axis(g, inp.name, dims)
    return OnnxSignature(inp.name, tuple(dims), elem(inp), out.name, tuple(declared_dims(out)), elem(out), batch)


def element_types(model, inp, env: dict) -> tuple[str, str, str]:
    """(input dtype, output dtype, lowest float precision used) of an ONNX model; raises for inputs that
    are not floating point (certnn certifies real-valued inputs)."""
    def elem(vi) -> int:
        return vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0

    it = elem(inp)
    if it not in FLOAT_TYPES:
        raise ModelImportError(f"the ONNX input {inp.name!r} has element type {onnx_type_name(it)}; certnn imports "
                               f"floating-point inputs ({', '.join(FLOAT_TYPES.values())}) that onnxruntime runs")
    ot = elem(model.graph.output[0])
    if ot not in FLOAT_TYPES and ot != 0:
        raise ModelImportError(f"the ONNX output {model.graph.output[0].name!r} has element type {onnx_type_name(ot)}; "
                               f"certnn bounds floating-point outputs ({', '.join(FLOAT_TYPES.values())})")
    used = {FLOAT_TYPES[it]} | ({FLOAT_TYPES[ot]} if ot in FLOAT_TYPES else set())
    for v in env.values():
        if v.is_const and np.asarray(v.const).dtype.kind == "f" and np.asarray(v.const).size > 1:
            used.add(str(np.asarray(v.const).dtype))
    for n in model.graph.node:
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i in FLOAT_TYPES:
                    used.add(FLOAT_TYPES[a.i])
    precision = max(used, key=lambda t: float(np.finfo(np.dtype(t)).eps))
    return FLOAT_TYPES[it], FLOAT_TYPES.get(ot, FLOAT_TYPES[it]), precision


def declared_dims(value_info) -> list:
    """A value's declared dims: ints, or the symbolic name (None when unnamed); [] when it has no shape."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def single_input(g, env: dict[str, Val]):
    """The graph's one input that is not an initializer (and its one output is checked)."""
    real_inputs = [i for i in g.input if i.name not in env]
    if len(real_inputs) != 1:
        raise ModelImportError(f"the ONNX graph has {len(real_inputs)} inputs that are not initializers "
                               f"({', '.join(i.name for i in real_inputs)}); certnn supports exactly one")
    if len(g.output) != 1:
        raise ModelImportError(f"the ONNX graph has {len(g.output)} outputs; certnn supports exactly one")
    return real_inputs[0]
