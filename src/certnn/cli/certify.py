"""`certnn certify`: verdicts and certified accuracy at given radii."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .sharded import add_worker_args, wants_sharding
from .alpha_memory import fit_alpha_batch
from .budgets import add_memory_args, deadline, memory_plan
from .precision_args import add_precision_args, environment_for, precision_kwargs
from .profile_args import add_profile_arg, show_profile
from .common import (Console, Stopwatch, add_alpha_args, add_complete_args, add_data_args, add_model_args,
                     add_output_args, add_spec_args, alpha_config, complete_config, frame_options, input_settings,
                     load_model_and_data, parse_methods)

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    from ..certify.radius import CertifyConfig, Certifier
    from ..report.records import SampleRecord, environment, write_json


def register(sub) -> None:
    p = sub.add_parser("certify", help="certified accuracy at one or more eps",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    add_spec_args(p)
    add_alpha_args(p)
    add_complete_args(p)
    add_memory_args(p)
    p.add_argument("--eps", type=float, nargs="+", required=True, help="radii to certify at")
    add_precision_args(p)
    add_profile_arg(p)
    add_output_args(p)
    add_worker_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if wants_sharding(args):  # --workers / --address / --resume: docs/scaling.md
        from .shard_run import run_sharded

        return run_sharded(args, "certify")
    from ..certify.radius import CertifyConfig, Certifier

    con = Console.for_args(args)
    methods = parse_methods(args.method)
    if len(methods) != 1:
        from ..errors import ConfigError
        raise ConfigError("certify takes one --method; use `certnn radius --method a,b` to compare methods")
    from ..certify.profile import Profile

    prof = Profile()
    with prof.phase("load"):
        model, x, y = load_model_and_data(args)
    clip = tuple(args.clip) if args.clip else None
    from ..certify.bounds import to_graph

    model = to_graph(model, tuple(x.shape[1:]))
    plan = memory_plan(args, model, args.batch_size)
    cfg = CertifyConfig(method=methods[0], norm=args.norm, target=args.target, clip=clip, seed=args.seed,
                        batch_size=plan.batch_size, max_rows=plan.max_rows, alpha=alpha_config(args),
                        complete=complete_config(args), **frame_options(args))
    cert = Certifier(model, cfg, tuple(x.shape[1:]), **precision_kwargs(args))
    fit_alpha_batch(args, cert, x, y, max(args.eps), plan)
    sw = Stopwatch()
    res, verdicts, statuses, undecided = _certify_each_eps(args, con, cert, x, y, methods[0])
    per = sw() / max(1, x.shape[0])
    acc = {e: float(v.double().mean()) for e, v in verdicts.items()}
    clean = float(res.correct.double().mean())
    samples = _samples(args, x, y, res, per, verdicts, statuses, undecided)
    _show(args, con, methods[0], acc, statuses, clean, x.shape[0])
    prof.merge(cert.profile)
    show_profile(con, args, prof)
    if args.json:
        settings = {**input_settings(args), "data": args.data, "norm": args.norm, "method": methods[0],
                    "target": args.target, "clip": clip, "seed": args.seed, "eps": list(args.eps),
                    "frames": cfg.frames, "frame_eps": cfg.frame_eps, "frame_norm": cfg.frame_norm}
        _write_json(args, con, settings, samples, x.shape[0], clean, acc, per, statuses, undecided, prof)
    return 0


def _certify_each_eps(args, con, cert, x, y, method: str):
    """(the last eps's result, and per eps: verdicts, --complete statuses, samples left undecided at
    --timeout)."""
    from ..certify.deadline import certify_in_time

    verdicts = {}
    statuses = {}
    undecided = {}
    res = None
    with con.progress(f"{method} certify", len(args.eps)) as cb:
        for k, e in enumerate(args.eps):
            res, done = certify_in_time(cert, x, y, e, deadline(args), index_offset=args.start)
            undecided[e] = ~done
            verdicts[e] = res.certified
            statuses[e] = res.status
            cb(k + 1, len(args.eps))
    return res, verdicts, statuses, undecided


def _samples(args, x, y, res, per: float, verdicts: dict, statuses: dict, undecided: dict) -> list:
    from ..report.records import SampleRecord

    samples = [SampleRecord(index=args.start + i, label=int(y[i]), predicted=int(res.predicted[i]),
                            certified_radius=0.0, time_s=per,
                            target=None if res.target is None else int(res.target[i]),
                            certified={str(e): bool(verdicts[e][i]) for e in args.eps},
                            extra={**({"verdict": {str(e): statuses[e][i] for e in args.eps}} if args.complete else {}),
                                   **({"undecided_eps": [str(e) for e in args.eps if undecided[e][i]]}
                                      if any(undecided[e][i] for e in args.eps) else {})})
               for i in range(x.shape[0])]
    # certified_radius here is the largest of the given eps that is certified (a lower bound), 0 if none
    return [SampleRecord(**{**s.__dict__, "certified_radius": max([e for e in args.eps if verdicts[e][i]], default=0.0)})
            for i, s in enumerate(samples)]


def _show(args, con, method: str, acc: dict, statuses: dict, clean: float, n: int) -> None:
    if args.complete:
        cols = ["eps", "certified accuracy", "violated (checked)", "unknown"]
        rows = [[e, acc[e], sum(s == "violated" for s in statuses[e]), sum(s == "unknown" for s in statuses[e])]
                for e in args.eps]
    else:
        cols, rows = ["eps", "certified accuracy"], [[e, acc[e]] for e in args.eps]
    con.table(f"certified accuracy ({method}{' + branch and bound' if args.complete else ''}, L{args.norm}, "
              f"target={args.target})", cols, rows)
    con.print(f"clean accuracy {clean:.4g} on {n} samples")


def _write_json(args, con, settings: dict, samples: list, n: int, clean: float, acc: dict, per: float,
                statuses: dict, undecided: dict, prof) -> None:
    from ..report.records import write_json

    summary = {"samples": n, "clean_accuracy": clean, "certified_accuracy": {str(e): acc[e] for e in args.eps},
               "seconds_per_sample": per, "undecided": {str(e): int(undecided[e].sum()) for e in args.eps},
               "timers": prof.to_dict()}
    settings["complete"] = bool(args.complete)
    if args.complete:
        settings["complete_timeout"] = args.complete_timeout
        summary["violated"] = {str(e): sum(s == "violated" for s in statuses[e]) for e in args.eps}
        summary["unknown"] = {str(e): sum(s == "unknown" for s in statuses[e]) for e in args.eps}
    write_json(args.json, "certify", settings, samples, summary, environment_for(args))
    con.print(f"wrote {args.json}")
