"""The VNN-LIB standard's solver command-line interface (VNN-LIB 2.0, chapter 5), as ``certnn-vnnlib`` and
``certnn vnnlib``.

::

    certnn-vnnlib --name                      certnn's full name
    certnn-vnnlib --version                   its version
    certnn-vnnlib verify QUERY [--network NAME=MODEL.onnx ...] [--timeout SECONDS]
                               [--serialise-assignments DIR]
                               [--method ibp,crown,lp,milp] [--seed S] [--assume-real] [--json OUT.json]
    certnn-vnnlib supports CAPABILITY         one of the eleven capabilities of section 5.4

Output (section 5.1): answers on stdout, everything else (progress, warnings, errors) on stderr.

``verify`` prints one line, ``sat``, ``unsat``, ``unknown`` or ``timed-out`` (section 5.3.1), and after ``sat``
the satisfying assignment in the command-line format: for every declared variable in declaration order a
header ``NAME TYPE [d1,d2]`` (the declared element type, dimensions without spaces) and its values one per
line in row-major order (Python's shortest round-tripping repr). With ``--serialise-assignments DIR`` the
assignment is written instead as ``DIR/NAME.pb``, one serialised ONNX TensorProto per variable of the
declared element type (``real`` as float64) and shape.

Verdicts keep certnn's proof discipline (certify/verify.py): ``unsat`` only from a sound proof (bound
propagation, input splitting, LP/MILP); ``sat`` only for an input that certnn's float64 graph and
onnxruntime both put in the query's unsafe set and that satisfies the query as written (strict
comparisons strictly, ``!=``, literals as exact decimals: :meth:`certnn.specs.vnnlib2.Query.satisfied_by`);
``unknown`` when neither was reached; ``timed-out`` when the time limit ran out first (a watchdog prints it
at the deadline whatever the computation is doing).

Errors (section 5.3.2), each one line on stderr with exit code 2 and nothing on stdout:

1. the ``--network`` mapping does not give exactly one model per declared network (networks declared
   ``equal-to`` another take none; an undeclared name, a repeated name or a missing network is an error);
   a VNN-LIB 1.0 query declares no network name and takes one ``--network`` of any name;
2. the element types of the ONNX model's input and output differ from the declared ones (not checked for
   real-valued queries, which declare every variable ``real``);
3. the query declares a floating-point (or other) element type: certnn's analysis is sound for the network
   read as a function over the real numbers (bounds computed in float64) and does not bound floating-point
   rounding of the deployed network, so it reports only ``real`` among its element types (section 5.4.1)
   and answers only real-valued queries. Rewriting the query with ``real`` is the standard's way to
   consent to that; ``--assume-real`` is certnn's optional, non-standard way to give the same consent on the
   command line.

Queries outside certnn's theories (several networks, hidden nodes, several inputs or outputs, comparisons
across nodes, linear or polynomial input constraints), malformed queries or models, unsupported operators
and shape mismatches are also errors (exit 2), as section 5.3.2 leaves to the solver's discretion.

Exit codes: 0 an answer was printed (whatever it is), 2 an error above or a usage error, 4 an internal
error (a bug; the traceback goes to stderr), 130 interrupted. The standard defines no exit codes; these are
certnn's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from .clock import process_age as _process_age

NAME = "certnn"
SOLVER = "certnn-vnnlib"
EXIT_OK, EXIT_ERROR, EXIT_INTERNAL = 0, 2, 4

#: the mandatory capabilities of section 5.4, in its order, and certnn's answers
OPSET_RANGE = ("7", "21")
CAPABILITIES = ("--onnx-opset-versions", "--onnx-element-types", "--onnx-operators", "--vnnlib-versions",
                "--hidden-node-theories", "--multiple-input-output-theories", "--multiple-network-theories",
                "--multiple-node-comparison-theories", "--arithmetic-complexity-theories",
                "--optimised-disjunctive-reasoning", "--serialise-assignments")
#: spellings the standard also uses (the example of 5.4.2) and optional capabilities certnn answers
ALIASES = {"--multiple-inputs-output-theories": "--multiple-input-output-theories"}
OPTIONAL = ("--unsat-proofs",)


def capability_answer(cap: str) -> str:
    """The exact stdout text answering one capability (trailing newline included)."""
    from ..specs.vnnlib2 import VNNLIB_VERSIONS

    cap = ALIASES.get(cap, cap)
    if cap == "--onnx-opset-versions":
        lines = list(OPSET_RANGE)
    elif cap == "--onnx-element-types":
        lines = ["real"]
    elif cap == "--onnx-operators":
        from ..graph.from_onnx import supported_onnx_ops
        lines = supported_onnx_ops()  # bare lines: every element type reported (real)
    elif cap == "--vnnlib-versions":
        lines = [VNNLIB_VERSIONS[0], VNNLIB_VERSIONS[-1]]
    elif cap == "--hidden-node-theories":
        lines = ["NH"]
    elif cap == "--multiple-input-output-theories":
        lines = ["SIO"]
    elif cap == "--multiple-network-theories":
        lines = ["SNET"]
    elif cap == "--multiple-node-comparison-theories":
        lines = ["SNC"]
    elif cap == "--arithmetic-complexity-theories":
        lines = ["BND", "OUTC"]
    elif cap == "--optimised-disjunctive-reasoning":
        lines = ["false"]  # certnn expands the assertions into disjunctive normal form
    elif cap == "--serialise-assignments":
        lines = ["true"]
    elif cap == "--unsat-proofs":
        lines = ["false"]
    else:  # pragma: no cover - argparse only lets the flags above through
        raise ValueError(cap)
    return "".join(f"{v}\n" for v in lines)


# ----------------------------------------------------------------------------------------------------
# stdout discipline
# ----------------------------------------------------------------------------------------------------

class _Answer:
    """Writes the one answer to stdout exactly once (the main thread or the deadline watchdog, whichever
    comes first); while the verification runs, stray prints of libraries go to stderr."""

    def __init__(self):
        self.lock = threading.Lock()
        self.done = False
        self.out = sys.stdout
        sys.stdout = sys.stderr

    def write(self, text: str) -> bool:
        with self.lock:
            if self.done:
                return False
            self.done = True
            self.out.write(text)
            self.out.flush()
            return True

    def close(self) -> None:
        sys.stdout = self.out


# ----------------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def __init__(self, *a, **k):
        k.setdefault("allow_abbrev", False)  # the standard's spellings only
        super().__init__(*a, **k)


def build_parser(prog: str = SOLVER) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="certnn behind the VNN-LIB standard's solver interface (chapter 5).")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--name", action="store_true", help="print the solver's full name")
    g.add_argument("--version", action="store_true", help="print the solver's version")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    v = sub.add_parser("verify", help="decide a query: sat / unsat / unknown / timed-out")
    v.add_argument("query", metavar="QUERY", help="the VNN-LIB query (.vnnlib, optionally gzip-compressed)")
    v.add_argument("--network", action="append", default=[], metavar="NAME=FILE",
                   help="the ONNX model of a declared network; once per network not declared equal to another")
    v.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit in seconds (the standard's integer seconds; fractions accepted); none: no limit")
    v.add_argument("--serialise-assignments", "--assignments", dest="serialise", metavar="DIR",
                   help="write a satisfying assignment as DIR/NAME.pb ONNX TensorProtos instead of stdout")
    v.add_argument("--method", default="ibp,crown,lp,milp",
                   help="certnn option: bound methods tried after the attack, cheapest first (with crown or "
                        "alpha-crown: input splitting and ReLU branch and bound; lp/milp: exact stages on small "
                        "ReLU nets)")
    v.add_argument("--seed", type=int, default=0, help="certnn option: seed of the attacks")
    v.add_argument("--assume-real", action="store_true",
                   help="certnn option: consent to analysing floating-point declarations as real-valued "
                        "(what declaring them 'real' means in the standard)")
    v.add_argument("--json", metavar="OUT.json", help="certnn option: write certnn's record of the run")
    for name in ("supports", "capabilities"):  # section 5.1 calls the command 'capabilities'
        s = sub.add_parser(name, help="report a capability" if name == "supports" else argparse.SUPPRESS)
        cg = s.add_mutually_exclusive_group()
        for cap in CAPABILITIES + OPTIONAL:
            cg.add_argument(cap, dest="capability", action="store_const", const=cap,
                            help=argparse.SUPPRESS if cap in OPTIONAL else None)
        for alias, cap in ALIASES.items():
            cg.add_argument(alias, dest="capability", action="store_const", const=cap, help=argparse.SUPPRESS)
    return p


def _error(msg: str, prog: str = SOLVER) -> int:
    print(f"{prog}: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return EXIT_ERROR


def console_main() -> int:
    """The ``certnn-vnnlib`` executable: the deadline of --timeout counts from the process start."""
    return main(started=time.monotonic() - _process_age(), hard_exit=True)


def main(argv: list[str] | None = None, prog: str = SOLVER, started: float | None = None,
         hard_exit: bool = False) -> int:
    """Run the interface; ``started`` (time.monotonic()) is when the clock of --timeout starts (default:
    now; the executables pass the process start, which is what a harness timing the process sees).
    ``hard_exit``: at the deadline the watchdog prints ``timed-out`` and ends the process (the executables);
    otherwise (called as a function) it prints ``timed-out`` and the late result is discarded."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors: argparse printed them on stderr
        return EXIT_ERROR if exc.code not in (0, None) else EXIT_OK
    if args.command is not None and (args.name or args.version):
        return _error("--name and --version are global options without a command", prog)
    if args.name or args.version:
        from .. import __version__

        sys.stdout.write(f"{NAME}\n" if args.name else f"{__version__}\n")
        sys.stdout.flush()
        return EXIT_OK
    if args.command is None:
        parser.print_usage(sys.stderr)
        return _error("give --name, --version, or a command (verify, supports)", prog)
    if args.command in ("supports", "capabilities"):
        if args.capability is None:
            return _error(f"{args.command} needs one capability: {', '.join(CAPABILITIES)}", prog)
        sys.stdout.write(capability_answer(args.capability))
        sys.stdout.flush()
        return EXIT_OK
    return _verify_main(args, prog, time.monotonic() if started is None else started, hard_exit)


def _verify_main(args, prog: str, started: float, hard_exit: bool) -> int:
    from ..errors import CertnnError

    ans = _Answer()
    try:
        return _verify(args, ans, prog, started, hard_exit)
    except CertnnError as exc:
        return _error(str(exc), prog)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        _error(f"internal error ({type(exc).__name__}: {exc}); please report it", prog)
        return EXIT_INTERNAL
    finally:
        ans.close()


# ----------------------------------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------------------------------

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


def _verify(args, ans: _Answer, prog: str, started: float, hard_exit: bool) -> int:
    deadline = None
    if args.timeout is not None:
        if args.timeout != args.timeout or args.timeout < 0:
            return _error(f"--timeout must be a number of seconds >= 0, got {args.timeout}", prog)
        deadline = started + args.timeout

    def fire():
        if ans.write("timed-out\n"):
            print(f"{prog}: the time limit ran out", file=sys.stderr)
            sys.stderr.flush()
            if hard_exit:
                os._exit(EXIT_OK)

    watchdog = None
    if deadline is not None:
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), fire)
        watchdog.daemon = True
        watchdog.start()
    try:
        return _verify_inner(args, ans, prog, deadline)
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _verify_inner(args, ans: _Answer, prog: str, deadline: float | None) -> int:
    import numpy as np
    import torch

    from ..certify.verify import VerifyConfig, verify_property
    from ..errors import ModelImportError, SpecError
    from ..graph.from_onnx import onnx_signature, onnx_to_model
    from .common import parse_methods

    torch.set_num_threads(1)
    qpath = Path(args.query)
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
    methods = parse_methods(args.method)
    exact = [m for m in methods if m in ("lp", "milp")]
    bounds = tuple(m for m in methods if m not in ("lp", "milp", "lipschitz"))
    if per is None:  # a VNN-LIB 1.0 query, or a model input without a batch dimension
        om = _onnx_v1(model_path, prop.n_inputs)
    else:
        om = onnx_to_model(model_path, input_shape=per)
    n_in = int(np.prod(om.graph.input_shape))
    n_out = int(np.prod(om.graph.output_shape))
    if (n_in, n_out) != (prop.n_inputs, prop.n_outputs):
        raise SpecError(f"the query has {prop.n_inputs} input and {prop.n_outputs} output values; the model "
                        f"{model_path} has {n_in} and {n_out}")
    if deadline is None:
        budget = 1e9
    else:
        budget = deadline - time.monotonic() - 0.5  # keep time to print
        if budget <= 0:
            ans.write("timed-out\n")
            return EXIT_OK
    backward = any(m in bounds for m in ("crown", "alpha-crown"))  # input splitting and ReLU branch and bound
    cfg = VerifyConfig(timeout=budget, methods=bounds or ("ibp",), attack=True, split=backward, bab=backward,
                       exact="auto" if len(exact) == 2 else (exact[0] if exact else "none"), seed=args.seed,
                       input_dtype=om.input_dtype)
    res = verify_property(om.graph, prop, cfg, om.run_onnxruntime)
    word = {"holds": "unsat", "violated": "sat", "unknown": "unknown"}[res.verdict]
    if res.verdict == "unknown" and res.decided_by == "timeout":
        word = "timed-out"
    text = f"{word}\n"
    assignment = None
    if res.verdict == "violated":
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
            word, text, assignment = "unknown", "unknown\n", None
        elif args.serialise:
            _serialise(assignment, args.serialise)
        else:
            text += _render(assignment)
    if args.json:
        from ..report.records import environment

        doc = {"schema_version": 1, "command": "vnnlib verify",
               "settings": {"query": str(qpath), "networks": mapping, "timeout": args.timeout,
                            "methods": list(methods), "seed": args.seed, "assume_real": args.assume_real,
                            "vnnlib_version": query.version, "parser": query.parser},
               "environment": environment(), "result": {**res.as_dict(), "answer": word}}
        from ..report.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
    ans.write(text)
    return EXIT_OK


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


def register(sub) -> None:
    """`certnn vnnlib ...`: the same interface under the certnn command."""
    p = sub.add_parser("vnnlib", help="the VNN-LIB standard's solver interface (verify / supports / --name / "
                                      "--version), as certnn-vnnlib", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: main(a.rest, prog="certnn vnnlib"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
