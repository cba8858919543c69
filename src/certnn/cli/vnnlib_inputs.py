"""The query and the model of ``certnn-vnnlib verify`` (cli/vnnlib_solver.py), read and checked against
each other: the ``--network`` mapping, declared and model shapes, element types (VNN-LIB 2.0, section
5.3.2); a VNN-LIB 1.0 file the vnnlib package cannot read goes through certnn's own parser."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


def _network_map(args, query) -> dict[str, str]:
    """Section 5.3.2, condition 1: one model file per declared network not declared equal to another."""
    from ..errors import SpecError

    given: dict[str, str] = {}
    for tok in args.network:
        name, sep, path = tok.partition("=")
        if not sep or not name or not path:
            raise SpecError(f"--network takes NAME=FILE; {tok!r} is not a network name and a file separated by '='")
        if name in given:
            raise SpecError(f"--network maps {name!r} more than once; each declared network takes one model file")
        given[name] = path
    nets = query.networks
    if query.version == "1.0":  # no network names in VNN-LIB 1.0: one model under any name
        if len(given) != 1:
            raise SpecError(f"a VNN-LIB 1.0 query has one network; give exactly one --network NAME=FILE "
                            f"(got {len(given)})")
        return {nets[0].name: next(iter(given.values()))}
    declared = {n.name: n for n in nets}
    for name in given:
        if name not in declared:
            raise SpecError(f"--network maps {name!r}, which {args.query} does not declare (it declares "
                            f"{', '.join(declared)}); the mapping must name each declared network")
        if declared[name].equal_to:
            raise SpecError(f"--network maps {name!r}, which {args.query} declares equal to "
                            f"{declared[name].equal_to!r}: it takes no model file of its own (an unnecessary model)")
    for n in nets:
        if not n.equal_to and n.name not in given:
            raise SpecError(f"no model file for network {n.name!r}, which {args.query} declares; give "
                            f"--network {n.name}=FILE.onnx")
    return given


def _shapes(query, sig, model_path: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The declared input and output shapes checked against the ONNX model's (symbolic dimensions take the
    declared sizes, section 3: "the query must instantiate the dynamic dimensions"); returns the
    per-sample input shape for the importer and the declared output shape."""
    from ..errors import SpecError

    net = query.networks[0]
    din, dout = net.of_kind("input")[0], net.of_kind("output")[0]

    def fits(decl, dims, what):
        if query.version == "1.0":
            return
        if len(decl.shape) != len(dims):
            raise SpecError(f"{decl.name} is declared {list(decl.shape)} but the model {model_path}'s {what} has "
                            f"shape {list(dims)}")
        for i, (a, b) in enumerate(zip(decl.shape, dims)):
            if isinstance(b, int) and b > 0 and a != b:
                raise SpecError(f"{decl.name} is declared {list(decl.shape)} but the model {model_path}'s {what} has "
                                f"shape {list(dims)} (dimension {i})")

    fits(din, sig.input_dims, "input")
    fits(dout, sig.output_dims, "output")
    if query.version == "1.0" or sig.batch_axis is None:
        per = None
    else:
        b = sig.batch_axis
        if din.shape[b] != 1:
            raise SpecError(f"{din.name} is declared {list(din.shape)} with {din.shape[b]} samples in the batch "
                            f"dimension {b}; certnn verifies one sample at a time (declare 1 there)")
        per = tuple(d for i, d in enumerate(din.shape) if i != b)
    return per, dout.shape


def _element_types(query, sig, model_path: str, assume_real: bool) -> None:
    """Section 5.3.2, conditions 2 (declared vs the model's element types) and 3 (certnn's soundness)."""
    from ..errors import SpecError

    if query.real_valued:
        return
    net = query.networks[0]
    for decl, actual, what in ((net.of_kind("input")[0], sig.input_type, "input"),
                               (net.of_kind("output")[0], sig.output_type, "output")):
        if decl.element_type != actual:
            raise SpecError(f"{decl.name} is declared {decl.element_type} but the model {model_path}'s {what} "
                            f"{getattr(sig, what + '_name')!r} is {actual}; declared and model element types must "
                            "agree unless the query is written entirely in real")
    if not assume_real:
        bad = next(d for d in query.declarations if d.element_type != "real")
        raise SpecError(f"{query.source} declares {bad.name} as {bad.element_type}: certnn's analysis is sound for the "
                        "network read over the real numbers (bounds in float64) and does not bound floating-point "
                        "rounding, so it supports only the element type real; declare the variables real to "
                        "consent to real-valued analysis (VNN-LIB section 3.5), or pass certnn's --assume-real")


def _onnx_v1(model_path: str, n_inputs: int):
    """A model for a VNN-LIB 1.0 query: symbolic per-sample dimensions solved from the number of inputs."""
    from ..graph.from_onnx import SymbolicShapeError, onnx_to_model

    try:
        return onnx_to_model(model_path)
    except SymbolicShapeError as exc:
        shape = exc.complete(n_inputs)
        if shape is None:
            raise
        return onnx_to_model(model_path, input_shape=shape)


def _load_any(qpath: Path):
    """The query through the vnnlib package; a VNN-LIB 1.0 file it cannot read goes through certnn's own
    parser (which also reports a malformed 1.0 file's line and column)."""
    from ..errors import SpecError
    from ..specs import vnnlib2
    from ..specs.vnnlib import _read_text, parse_vnnlib

    text = _read_text(qpath, SpecError)
    try:
        return vnnlib2.parse_query(text, str(qpath))
    except SpecError:
        if "vnnlib-version" in text:
            raise
        prop = parse_vnnlib(text, str(qpath))  # raises the precise error of a malformed file
        net = vnnlib2.NetworkDecl("N", None, None, (
            vnnlib2.Declaration("X", "input", "real", (prop.n_inputs,), "N"),
            vnnlib2.Declaration("Y", "output", "real", (prop.n_outputs,), "N")))
        return _V1Query(net, prop, str(qpath))


class _V1Query:
    """A VNN-LIB 1.0 query read by certnn's own parser (no exact formula: the closure is checked)."""

    version = "1.0"
    unsupported = None
    parser = "certnn"
    real_valued = True

    def __init__(self, net, prop, source):
        self.networks = (net,)
        self.prop = prop
        self.source = source

    @property
    def declarations(self):
        return list(self.networks[0].declarations)

    def property(self):
        return self.prop

    def satisfied_by(self, values) -> bool:
        from ..specs.vnnlib import property_violated

        return property_violated(self.prop, values["X"], values["Y"])


class Checked(NamedTuple):
    """A query checked against its model's signature: the property, the network mapping, the model file,
    the per-sample input shape for the importer (None: solved from the number of inputs) and the declared
    output shape."""

    query: object
    prop: object
    mapping: dict
    model_path: str
    per: tuple | None
    out_shape: tuple


def checked_query(args, qpath: Path) -> Checked:
    """The query read and checked (network mapping, theories, model file, shapes, element types), in this
    order: the first problem is the one reported."""
    from ..errors import ModelImportError, SpecError
    from ..graph.from_onnx import onnx_signature

    if not qpath.is_file():
        raise SpecError(f"query file {qpath} not found")
    query = _load_any(qpath)
    mapping = _network_map(args, query)
    if query.unsupported:
        raise SpecError(f"{qpath}: {query.unsupported}")
    prop = query.property()
    model_path = next(iter(mapping.values()))
    if not Path(model_path).is_file():
        raise ModelImportError(f"model file {model_path} (network {next(iter(mapping))}) not found")
    sig = onnx_signature(model_path)
    per, out_shape = _shapes(query, sig, model_path)
    _element_types(query, sig, model_path, args.assume_real)
    return Checked(query, prop, mapping, model_path, per, out_shape)


def load_model(c: Checked):
    """The ONNX model of a checked query, its numbers of input and output values checked against the
    property's."""
    import numpy as np

    from ..errors import SpecError
    from ..graph.from_onnx import onnx_to_model

    if c.per is None:  # a VNN-LIB 1.0 query, or a model input without a batch dimension
        om = _onnx_v1(c.model_path, c.prop.n_inputs)
    else:
        om = onnx_to_model(c.model_path, input_shape=c.per)
    n_in = int(np.prod(om.graph.input_shape))
    n_out = int(np.prod(om.graph.output_shape))
    if (n_in, n_out) != (c.prop.n_inputs, c.prop.n_outputs):
        raise SpecError(f"the query has {c.prop.n_inputs} input and {c.prop.n_outputs} output values; the model "
                        f"{c.model_path} has {n_in} and {n_out}")
    return om
