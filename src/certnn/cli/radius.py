"""`certnn radius`: certified radius per sample (one or several methods), optionally with attack radius."""
from __future__ import annotations

import argparse

import torch

from ..certify.radius import CertifyConfig, Certifier, RadiusConfig
from ..errors import SoundnessError
from ..report.records import SampleRecord, environment, write_json
from .common import (Console, Stopwatch, add_data_args, add_model_args, add_output_args, add_spec_args,
                     frame_options, load_model_and_data, parse_methods)


def register(sub) -> None:
    p = sub.add_parser("radius", help="certified radius per sample (largest eps proved robust)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    add_spec_args(p)
    g = p.add_argument_group("search")
    g.add_argument("--eps-init", type=float, help="first eps tried (default: 0.01 inf, 0.1 L2, 1 L1)")
    g.add_argument("--eps-max", type=float, default=1e3)
    g.add_argument("--bisection-steps", type=int, default=14)
    g.add_argument("--attack", action="store_true", help="also run PGD to find an attack radius (upper bound)")
    g.add_argument("--attack-steps", type=int, default=100)
    g.add_argument("--attack-restarts", type=int, default=5)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    con = Console(args.quiet)
    methods = parse_methods(args.method)
    model, x, y = load_model_and_data(args)
    search = RadiusConfig(eps_init=args.eps_init, eps_max=args.eps_max, bisection_steps=args.bisection_steps)
    clip = tuple(args.clip) if args.clip else None
    radii: dict[str, torch.Tensor] = {}
    times: dict[str, torch.Tensor] = {}
    base = None
    for m in methods:
        cfg = CertifyConfig(method=m, norm=args.norm, target=args.target, clip=clip, seed=args.seed,
                            batch_size=args.batch_size, **frame_options(args))
        cert = Certifier(model, cfg, tuple(x.shape[1:]))
        with con.progress(f"{m} radius", x.shape[0]) as cb:
            res = cert.radius(x, y, search, progress=cb)
        radii[m], times[m] = res.certified_radius, res.time_s
        base = base or (cert, res)
    cert, res = base
    attack = None
    if args.attack:
        from ..attacks import PGDConfig, attack_radius

        sw = Stopwatch()
        with con.progress("attack radius", 1):
            ar = attack_radius(cert.graph, x.to(torch.float64), y, args.norm,
                               PGDConfig(steps=args.attack_steps, restarts=args.attack_restarts, seed=args.seed),
                               target=res.target, clip=clip, scale=cert.scale, eps_max=args.eps_max)
        attack = ar.radius.to(torch.float64)
        attack_time = sw()
        worst = torch.nonzero(torch.stack([radii[m] > attack * (1 + 1e-9) + 1e-12 for m in methods]).any(0)).flatten()
        if worst.numel():
            raise SoundnessError(f"certified radius above the attack radius for samples {worst.tolist()[:10]}: "
                                 "this is a bug in certnn, please report it with the model and data")
    samples = []
    for i in range(x.shape[0]):
        samples.append(SampleRecord(
            index=args.start + i, label=int(y[i]), predicted=int(res.predicted[i]),
            certified_radius=float(radii[methods[0]][i]), time_s=float(times[methods[0]][i]),
            target=None if res.target is None else int(res.target[i]),
            attack_radius=None if attack is None else float(attack[i]),
            certified_radius_by_method={m: float(radii[m][i]) for m in methods} if len(methods) > 1 else None,
            extra={"time_s_by_method": {m: float(times[m][i]) for m in methods}} if len(methods) > 1 else {}))
    correct = res.correct
    summary = {"samples": x.shape[0], "correct": int(correct.sum()),
               "mean_certified_radius": {m: float(radii[m][correct].mean()) if correct.any() else 0.0 for m in methods},
               "seconds_per_sample": {m: float(times[m].mean()) for m in methods}}
    if attack is not None:
        finite = correct & torch.isfinite(attack)
        summary["mean_attack_radius"] = float(attack[finite].mean()) if finite.any() else None
        summary["attack_seconds_per_sample"] = attack_time / max(1, x.shape[0])
    cols = ["index", "label", "pred"] + [f"certified[{m}]" for m in methods] + (["attack"] if attack is not None else [])
    rows = [[s.index, s.label, s.predicted] + [float(radii[m][i]) for m in methods] +
            ([float(attack[i])] if attack is not None else []) for i, s in enumerate(samples)]
    con.table(f"certified radius (L{args.norm}, target={args.target})", cols, rows)
    con.print("mean certified radius over correctly classified samples: " +
              ", ".join(f"{m} {summary['mean_certified_radius'][m]:.4g}" for m in methods) +
              (f"; mean attack radius {summary['mean_attack_radius']:.4g}" if attack is not None and summary.get("mean_attack_radius") is not None else ""))
    if args.json:
        settings = {"model": args.model, "data": args.data, "norm": args.norm, "methods": methods,
                    "method": methods[0], "target": args.target, "clip": clip, "seed": args.seed,
                    "search": search.to_dict(), "attack": bool(args.attack),
                    "frames": cfg.frames, "frame_eps": cfg.frame_eps}
        write_json(args.json, "radius", settings, samples, summary, environment())
        con.print(f"wrote {args.json}")
    return 0
