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
error (a bug: one line on stderr naming a temporary file that holds the traceback, cli/internal_error.py),
130 interrupted. The standard defines no exit codes; these are certnn's.

The pieces: cli/vnnlib_capabilities.py (section 5.4's answers), cli/vnnlib_inputs.py (the query and model
read and checked), cli/vnnlib_assignment.py (the answer and a ``sat`` answer's assignment).
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
from .vnnlib_capabilities import ALIASES, CAPABILITIES, OPTIONAL, capability_answer

NAME = "certnn"
SOLVER = "certnn-vnnlib"
EXIT_OK, EXIT_ERROR, EXIT_INTERNAL = 0, 2, 4


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
    v.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                   help="certnn option: where bounds, attacks and branch and bound run (auto: cuda when present; "
                        "counterexamples are checked on the cpu)")
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
        from .internal_error import save_traceback

        where = save_traceback()
        _error(f"internal error ({type(exc).__name__}: {exc}); please report it"
               + (f" with {where}" if where else ""), prog)
        return EXIT_INTERNAL
    finally:
        ans.close()


# ----------------------------------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------------------------------

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
    import torch

    from ..certify.device import resolve_device
    from ..certify.verify import verify_property
    from .common import parse_methods
    from .vnnlib_assignment import answer_text
    from .vnnlib_inputs import checked_query, load_model

    torch.set_num_threads(1)
    device = resolve_device(args.device)  # cuda without a GPU: an error before the query is read
    qpath = Path(args.query)
    checked = checked_query(args, qpath)
    methods = parse_methods(args.method)
    om = load_model(checked)
    if deadline is None:
        budget = 1e9
    else:
        budget = deadline - time.monotonic() - 0.5  # keep time to print
        if budget <= 0:
            ans.write("timed-out\n")
            return EXIT_OK
    res = verify_property(om.graph, checked.prop, _config(methods, budget, om, args.seed), om.run_onnxruntime,
                          device=device)
    word, text = answer_text(res, checked.query, checked.out_shape, args.serialise, prog)
    if args.json:
        _write_record(args, qpath, checked, methods, res, word)
    ans.write(text)
    return EXIT_OK


def _config(methods: tuple, budget: float, om, seed: int):
    """The verification's settings: the bound methods tried after the attack (cheapest first), input
    splitting and ReLU branch and bound under a backward method, the exact stages asked for."""
    from ..certify.verify import VerifyConfig

    exact = [m for m in methods if m in ("lp", "milp")]
    bounds = tuple(m for m in methods if m not in ("lp", "milp", "lipschitz"))
    backward = any(m in bounds for m in ("crown", "alpha-crown"))  # input splitting and ReLU branch and bound
    return VerifyConfig(timeout=budget, methods=bounds or ("ibp",), attack=True, split=backward, bab=backward,
                        exact="auto" if len(exact) == 2 else (exact[0] if exact else "none"), seed=seed,
                        input_dtype=om.input_dtype)


def _write_record(args, qpath: Path, checked, methods: tuple, res, word: str) -> None:
    """--json: certnn's record of the run (settings, environment, the result and the answer)."""
    from ..report.atomic import atomic_write_text
    from .precision_args import environment_for

    query = checked.query
    doc = {"schema_version": 1, "command": "vnnlib verify",
           "settings": {"query": str(qpath), "networks": checked.mapping, "timeout": args.timeout,
                        "methods": list(methods), "seed": args.seed, "assume_real": args.assume_real,
                        "vnnlib_version": query.version, "parser": query.parser},
           "environment": environment_for(args), "result": {**res.as_dict(), "answer": word}}
    atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")


def register(sub) -> None:
    """`certnn vnnlib ...`: the same interface under the certnn command."""
    p = sub.add_parser("vnnlib", help="the VNN-LIB standard's solver interface (verify / supports / --name / "
                                      "--version), as certnn-vnnlib", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: main(a.rest, prog="certnn vnnlib"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
