"""`certnn certify`: verdicts and certified accuracy at given radii."""
from __future__ import annotations

import argparse

from ..certify.radius import CertifyConfig, Certifier
from ..report.records import SampleRecord, environment, write_json
from .common import (Console, Stopwatch, add_alpha_args, add_complete_args, add_data_args, add_model_args,
                     add_output_args, add_spec_args, alpha_config, complete_config, frame_options, input_settings,
                     load_model_and_data, parse_methods)


def register(sub) -> None:
    p = sub.add_parser("certify", help="certified accuracy at one or more eps",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    add_spec_args(p)
    add_alpha_args(p)
    add_complete_args(p)
    p.add_argument("--eps", type=float, nargs="+", required=True, help="radii to certify at")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    con = Console.for_args(args)
    methods = parse_methods(args.method)
    if len(methods) != 1:
        from ..errors import ConfigError
        raise ConfigError("certify takes one --method; use `certnn radius --method a,b` to compare methods")
    model, x, y = load_model_and_data(args)
    clip = tuple(args.clip) if args.clip else None
    cfg = CertifyConfig(method=methods[0], norm=args.norm, target=args.target, clip=clip, seed=args.seed,
                        batch_size=args.batch_size, alpha=alpha_config(args), complete=complete_config(args),
                        **frame_options(args))
    cert = Certifier(model, cfg, tuple(x.shape[1:]))
    verdicts = {}
    statuses = {}
    sw = Stopwatch()
    res = None
    with con.progress(f"{methods[0]} certify", len(args.eps)) as cb:
        for k, e in enumerate(args.eps):
            res = cert.certify(x, y, e)
            verdicts[e] = res.certified
            statuses[e] = res.status
            cb(k + 1, len(args.eps))
    per = sw() / max(1, x.shape[0])
    acc = {e: float(v.double().mean()) for e, v in verdicts.items()}
    clean = float(res.correct.double().mean())
    samples = [SampleRecord(index=args.start + i, label=int(y[i]), predicted=int(res.predicted[i]),
                            certified_radius=0.0, time_s=per,
                            target=None if res.target is None else int(res.target[i]),
                            certified={str(e): bool(verdicts[e][i]) for e in args.eps},
                            extra={"verdict": {str(e): statuses[e][i] for e in args.eps}} if args.complete else {})
               for i in range(x.shape[0])]
    # certified_radius here is the largest of the given eps that is certified (a lower bound), 0 if none
    samples = [SampleRecord(**{**s.__dict__, "certified_radius": max([e for e in args.eps if verdicts[e][i]], default=0.0)})
               for i, s in enumerate(samples)]
    if args.complete:
        cols = ["eps", "certified accuracy", "violated (checked)", "unknown"]
        rows = [[e, acc[e], sum(s == "violated" for s in statuses[e]), sum(s == "unknown" for s in statuses[e])]
                for e in args.eps]
    else:
        cols, rows = ["eps", "certified accuracy"], [[e, acc[e]] for e in args.eps]
    con.table(f"certified accuracy ({methods[0]}{' + branch and bound' if args.complete else ''}, L{args.norm}, "
              f"target={args.target})", cols, rows)
    con.print(f"clean accuracy {clean:.4g} on {x.shape[0]} samples")
    if args.json:
        settings = {**input_settings(args), "data": args.data, "norm": args.norm, "method": methods[0],
                    "target": args.target, "clip": clip, "seed": args.seed, "eps": list(args.eps),
                    "frames": cfg.frames, "frame_eps": cfg.frame_eps, "frame_norm": cfg.frame_norm}
        summary = {"samples": x.shape[0], "clean_accuracy": clean, "certified_accuracy": {str(e): acc[e] for e in args.eps},
                   "seconds_per_sample": per}
        settings["complete"] = bool(args.complete)
        if args.complete:
            settings["complete_timeout"] = args.complete_timeout
            summary["violated"] = {str(e): sum(s == "violated" for s in statuses[e]) for e in args.eps}
            summary["unknown"] = {str(e): sum(s == "unknown" for s in statuses[e]) for e in args.eps}
        write_json(args.json, "certify", settings, samples, summary, environment())
        con.print(f"wrote {args.json}")
    return 0
