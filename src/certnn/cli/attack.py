"""`certnn attack`: attack radius per sample (FMN by default, or PGD bisection) (an upper bound on the minimal adversarial distortion)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .attack_options import add_attack_args, attack_config, attack_name
from .sharded import add_worker_args, wants_sharding
from .common import (Console, Stopwatch, add_data_args, add_model_args, add_output_args, add_spec_args,
                     add_frame_norm_arg, input_settings, load_model_and_data, threat_model)
from .precision_args import add_precision_args, environment_for

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    import torch
    from ..attacks import attack_radius
    from ..certify.bounds import to_graph
    from ..certify.targets import select_targets


def register(sub) -> None:
    p = sub.add_parser("attack", help="attack radius (upper bound: a checked adversarial example) per sample",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    add_spec_args(p, methods=False)
    add_frame_norm_arg(p)
    g = p.add_argument_group("attack")
    add_attack_args(g, "--steps", "--restarts")
    g.add_argument("--eps-max", type=float, default=1.0, help="largest radius searched (inf where none is found)")
    add_precision_args(p, dtype=False, what="where the attack runs")
    add_output_args(p)
    add_worker_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if wants_sharding(args):  # --workers / --address / --resume: docs/scaling.md
        from .shard_run import run_sharded

        return run_sharded(args, "attack")
    import torch

    from ..attacks import attack_radius
    from ..certify.bounds import to_graph
    from ..certify.targets import select_targets

    con = Console.for_args(args)
    model, x, y = load_model_and_data(args)
    graph = to_graph(model, tuple(x.shape[1:]))
    with torch.no_grad():
        logits = graph.forward(x)
    target = select_targets(logits, y, args.target, args.seed, index_offset=args.start)
    clip = tuple(args.clip) if args.clip else None
    sw = Stopwatch()
    acfg = attack_config(args)
    with con.progress(f"attack radius ({attack_name(acfg)})", len(y)) as cb:
        r = attack_radius(graph, x, y, args.norm, acfg, target=target, clip=clip, eps_max=args.eps_max,
                          frame_norm=args.frame_norm, progress=cb.detail, device=args.device)
        cb(len(y), len(y))
    per = sw() / max(1, len(y))
    pred = logits.argmax(1)
    rows = [[args.start + i, int(y[i]), int(pred[i]), float(r.radius[i])] for i in range(len(y))]
    con.table(f"attack radius ({threat_model(args.norm, args.frame_norm)}; upper bound, {attack_name(acfg)})",
              ["index", "label", "pred", f"attack_radius[{args.attack_method}]"], rows)
    con.print(f"{attack_name(acfg)}: {per:.3g} s / sample")
    if args.json:
        def clean(v):
            return "inf" if v == float("inf") else v
        doc = {"schema_version": 1, "command": "attack",
               "settings": {**input_settings(args), "data": args.data, "norm": args.norm, "frame_norm": args.frame_norm,
                            "target": args.target,
                            "clip": clip, "seed": args.seed, "attack_method": args.attack_method, **acfg.to_dict(),
                            "eps_max": args.eps_max},
               "environment": environment_for(args), "summary": {"samples": len(y), "seconds_per_sample": per},
               "samples": [{"index": a, "label": b, "predicted": c, "attack_radius": clean(d),
                            **({"target": int(target[i])} if target is not None else {})}
                           for i, (a, b, c, d) in enumerate(rows)]}
        from ..report.atomic import write_or_keep

        write_or_keep(args.json, json.dumps(doc, indent=2) + "\n", "--json")
        con.print(f"wrote {args.json}")
    return 0
