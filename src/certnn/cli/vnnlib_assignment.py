"""The satisfying assignment of a ``sat`` answer of ``certnn-vnnlib verify`` (cli/vnnlib_solver.py): every
declared variable in declaration order, rendered in the command-line format or serialised as ONNX
TensorProtos (VNN-LIB 2.0, section 5.3.1)."""
from __future__ import annotations

from pathlib import Path


def _assignment(query, x, y) -> list[tuple]:
    """(declaration, values) of every declared variable in declaration order."""
    import numpy as np

    net = query.networks[0]
    out = []
    for d in net.declarations:
        v = x if d.kind == "input" else y
        out.append((d, np.asarray(v, dtype=np.float64).reshape(d.shape)))
    return out


def _format_value(v: float, element_type: str) -> str:
    if element_type.startswith(("int", "uint")) or element_type == "bool":
        return str(int(v))
    return repr(float(v))


def _render(assignment) -> str:
    lines = []
    for d, vals in assignment:
        lines.append(f"{d.name} {d.element_type} [{','.join(str(s) for s in d.shape)}]")
        lines.extend(_format_value(v, d.element_type) for v in vals.reshape(-1))
    return "".join(f"{line}\n" for line in lines)


def _serialise(assignment, folder: str) -> None:
    import numpy as np
    from onnx import helper, numpy_helper

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for d, vals in assignment:
        et = "float64" if d.element_type == "real" else d.element_type
        try:
            dtype = helper.tensor_dtype_to_np_dtype(getattr(__import__("onnx").TensorProto, _PROTO_NAMES[et]))
        except KeyError:
            dtype = np.float64
        t = numpy_helper.from_array(np.asarray(vals, dtype=dtype).reshape(d.shape), name=d.name)
        (out / f"{d.name}.pb").write_bytes(t.SerializeToString())


_PROTO_NAMES = {"float32": "FLOAT", "float64": "DOUBLE", "float16": "FLOAT16", "bfloat16": "BFLOAT16",
                "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "uint8": "UINT8",
                "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64", "bool": "BOOL"}


def answer_text(res, query, out_shape: tuple, serialise: str | None, prog: str) -> tuple[str, str]:
    """The answer word and the stdout text of a verification result. A counterexample must satisfy the
    query as written (``query.satisfied_by``) under both certnn's and the reference's outputs, or the
    answer is ``unknown``; a ``sat`` answer's assignment follows the word, or goes to ``serialise``."""
    import sys

    import numpy as np

    word = {"holds": "unsat", "violated": "sat", "unknown": "unknown"}[res.verdict]
    if res.verdict == "unknown" and res.decided_by == "timeout":
        word = "timed-out"
    text = f"{word}\n"
    if res.verdict != "violated":
        return word, text
    # real-valued queries get certnn's float64 outputs, floating-point ones onnxruntime's
    y_model = res.y_reference if res.y_reference is not None else res.y
    assignment = _assignment(query, res.x, res.y if query.real_valued else y_model)
    out_name = query.networks[0].of_kind("output")[0].name
    x_vals = {d.name: v for d, v in assignment if d.kind == "input"}
    both = [{**x_vals, out_name: np.asarray(y).reshape(out_shape)} for y in (res.y, y_model)]
    if not all(query.satisfied_by(v) for v in both):
        print(f"{prog}: the counterexample found satisfies the query's closure but not the query as "
              "written (a strict comparison, != or a literal's exact value); answering unknown",
              file=sys.stderr)
        return "unknown", "unknown\n"
    if serialise:
        _serialise(assignment, serialise)
        return word, text
    return word, text + _render(assignment)
