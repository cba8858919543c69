"""`certnn verify`: decide a VNN-LIB property on a model: holds (unsat), violated (sat, with a checked
counterexample) or unknown."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..report.atomic import write_or_keep
from .clock import process_start_perf
from .precision_args import add_precision_args
from .sharded import add_worker_args
from .verify_instances import add_instances_args, run_instances
from .verify_watchdog import AnswerGuard
from .common import add_log_args, add_random_init_arg, Console, Stopwatch, cli_load_model, input_settings, parse_methods

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    from ..certify.bounds import to_graph
    from ..certify.verify import VerifyConfig, verify_property
    from ..specs.vnnlib import load_vnnlib, write_counterexample

#: seconds of --timeout kept for writing the results after the verifier's deadline
RESERVE_S = 1.0

#: VNN-COMP result words for certnn's verdicts
VNNCOMP_WORD = {"holds": "unsat", "violated": "sat", "unknown": "unknown"}


def register(sub) -> None:
    p = sub.add_parser("verify", help="verify a VNN-LIB property: holds / violated / unknown",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--model", help=".onnx / .onnx.gz, FILE.py:FACTORY, TorchScript .pt, or a "
                                                   "pickled module (with --trust-pickle)")
    g.add_argument("--weights", help="weights for FILE.py:FACTORY models: a state_dict or checkpoint (loaded with "
                                     "weights_only=True)")
    g.add_argument("--weights-key", help="which state_dict of a checkpoint holding several")
    g.add_argument("--trust-pickle", action="store_true", help="allow loading a fully pickled module")
    add_random_init_arg(g)
    g.add_argument("--input-shape", type=lambda s: tuple(int(v) for v in s.split(",")),
                   help="per-sample input shape of a torch model, or of an ONNX model whose input has symbolic "
                        "dimensions besides the batch (default: the property's inputs, flat; for ONNX, solved from "
                        "the property's number of inputs when one dimension is symbolic)")
    p.add_argument("--spec", help="VNN-LIB property (.vnnlib or .vnnlib.gz): VNN-LIB 1.0, or a 2.0 query "
                                                 "over one network with one input and one output")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds for the whole run, counted from the process start (imports and model loading "
                        "included, as VNN-COMP counts); the verdict is written by then")
    p.add_argument("--method", default="ibp,crown,lp,milp",
                   help="stages to try after the attack, cheapest first; lp/milp run only on small ReLU nets")
    p.add_argument("--no-attack", action="store_true", help="skip the falsification attack")
    p.add_argument("--no-split", action="store_true", help="no input branch and bound")
    p.add_argument("--no-bab", action="store_true",
                   help="no branch and bound on ReLU splits (beta-CROWN) for inputs too wide to split")
    p.add_argument("--seed", type=int, default=0, help="random seed of the falsification attack")
    p.add_argument("--out", metavar="RESULT.txt",
                   help="write the VNN-COMP result file (sat + counterexample / unsat / unknown)")
    p.add_argument("--json", metavar="OUT.json", help="write machine-readable results (schema_version'd)")
    p.add_argument("--quiet", action="store_true", help="print only the verdict")
    add_precision_args(p, dtype=False, what="where bounds, attacks and branch and bound run (counterexamples are "
                                          "checked on the cpu)")
    add_log_args(p)
    add_instances_args(p)
    add_worker_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.instances:  # a benchmark folder, sharded over workers (cli/verify_instances.py)
        return run_instances(args)
    if not args.model or not args.spec:
        raise ConfigError("verify needs --model and --spec (or --instances instances.csv)")
    if args.workers or args.address or args.resume:
        raise ConfigError("--workers / --address / --resume shard a benchmark: use them with --instances")
    from ..certify.verify import VerifyConfig, verify_property
    from ..specs.vnnlib import load_vnnlib

    con = Console.for_args(args)
    methods, bounds, exact = _stages(args)
    prop = load_vnnlib(args.spec)
    graph, input_dtype, reference = _load_graph(args, prop)
    # the clock started with the process; a second is kept for writing the results and exiting
    started = getattr(args, "started_at", None) or process_start_perf()
    cfg = VerifyConfig(timeout=max(0.05, args.timeout - RESERVE_S), methods=bounds or ("ibp",),
                       attack=not args.no_attack, split=not args.no_split and "crown" in bounds, bab=not args.no_bab,
                       exact="auto" if len(exact) == 2 else (exact[0] if exact else "none"), seed=args.seed,
                       input_dtype=input_dtype)
    sw = Stopwatch()
    guard = AnswerGuard(args.out, args.quiet, getattr(args, "hard_exit", False))
    guard.arm(started + args.timeout)  # the answer by T even if a stage overruns (cli/verify_watchdog.py)
    with con.progress(f"verify {args.spec}", None):  # start / heartbeat / end lines on stderr
        res = verify_property(graph, prop, cfg, reference, started_at=started, device=args.device)
    guard.claim()
    word = VNNCOMP_WORD[res.verdict]
    if args.quiet:
        print(res.verdict)
    else:
        con.table(f"verify {Path(args.spec).name}", ["stage", "seconds", "outcome"],
                  [[s["stage"], s["seconds"], s.get("result", f"{s.get('open', '-')} open")] for s in res.stages])
        con.print(f"{res.verdict} ({word}) decided by {res.decided_by} in {sw():.3g} s")
    _write_outputs(args, con, res, word, methods, cfg, prop, reference)
    return guard.finish(0)


def _stages(args) -> tuple[list[str], tuple[str, ...], list[str]]:
    """--method split into (all methods, bound methods, exact methods lp / milp); --timeout checked."""
    methods = parse_methods(args.method)
    exact = [m for m in methods if m in ("lp", "milp")]
    bounds = tuple(m for m in methods if m not in ("lp", "milp"))
    if any(m == "lipschitz" for m in bounds):
        raise ConfigError("verify does not use the lipschitz baseline; choose from ibp, fastlin, crown, crown-ibp, "
                          "lp, milp")
    if args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    return methods, bounds, exact


def _load_graph(args, prop):
    """(graph, input element type, onnxruntime reference or None) of --model; an ONNX input's symbolic
    sequence length is solved from the property's number of inputs."""
    if not (args.model.endswith(".onnx") or args.model.endswith(".onnx.gz")):
        from ..certify.bounds import to_graph

        model = cli_load_model(args)
        return to_graph(model, args.input_shape or (prop.n_inputs,)), "float32", None
    from ..graph.from_onnx import onnx_to_model
    from ..graph.from_onnx import SymbolicShapeError
    try:
        om = onnx_to_model(args.model, input_shape=args.input_shape)
    except SymbolicShapeError as exc:  # a symbolic sequence length: from the property's number of inputs
        shape = exc.complete(prop.n_inputs)
        if shape is None:
            raise
        om = onnx_to_model(args.model, input_shape=shape)
    try:
        import onnxruntime  # noqa: F401
        reference = om.run_onnxruntime
    except ImportError:  # pragma: no cover
        reference = None
    return om.graph, om.input_dtype, reference


def _write_outputs(args, con, res, word: str, methods, cfg, prop, reference) -> None:
    """--out (VNN-COMP result file: the counterexample of a violated property, else the word) and --json."""
    from ..specs.vnnlib import write_counterexample
    from .precision_args import environment_for

    if args.out:
        if res.verdict == "violated":
            write_counterexample(args.out, res.x, res.y_reference if res.y_reference is not None else res.y)
        else:
            write_or_keep(args.out, word + "\n", "--out")
        if not args.quiet:
            con.print(f"wrote {args.out}")
    if args.json:
        doc = {"schema_version": 1, "command": "verify",
               "settings": {**input_settings(args), "spec": args.spec, "timeout": args.timeout,
                            "methods": list(methods), "attack": not args.no_attack, "split": cfg.split,
                            "seed": args.seed, "vnnlib_parser": prop.parser},
               "environment": environment_for(args),
               "result": {**res.as_dict(), "vnncomp": word,
                          "counterexample_checked_by": (["certnn float64"] + (["onnxruntime"] if reference else []))
                          if res.verdict == "violated" else None}}
        write_or_keep(args.json, json.dumps(doc, indent=2) + "\n", "--json")
        if not args.quiet:
            con.print(f"wrote {args.json}")
