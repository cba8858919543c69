"""`certnn clever`: CLEVER robustness estimates (statistics, not certificates)."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .sharded import add_worker_args, wants_sharding
from .common import (Console, Stopwatch, add_data_args, add_model_args, add_output_args, add_spec_args,
                     load_model_and_data, input_settings)
from .precision_args import add_precision_args, environment_for

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    import torch
    from ..certify.bounds import to_graph
    from ..certify.targets import select_targets
    from ..estimate import CleverConfig, clever_scores
    from ..report.records import environment


def register(sub) -> None:
    p = sub.add_parser("clever", help="CLEVER estimates of the minimal adversarial distortion (not a proof)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    add_spec_args(p, methods=False)
    p.add_argument("--batches", type=int, default=100, help="N_b: batches (maxima) for the Weibull fit")
    p.add_argument("--batch-samples", type=int, default=256, help="N_s: gradient samples per batch")
    p.add_argument("--radius", type=float, help="sampling radius R (default by norm)")
    add_precision_args(p, dtype=False, what="where the gradients are computed")
    add_output_args(p)
    add_worker_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if wants_sharding(args):  # --workers / --address / --resume: docs/scaling.md
        from .shard_run import run_sharded

        return run_sharded(args, "clever")
    import torch

    from ..certify.bounds import to_graph
    from ..certify.targets import select_targets
    from ..estimate import CleverConfig, clever_scores

    con = Console.for_args(args)
    model, x, y = load_model_and_data(args)
    graph = to_graph(model, tuple(x.shape[1:]))
    cfg = CleverConfig(n_batches=args.batches, n_samples=args.batch_samples, radius=args.radius, seed=args.seed)
    with torch.no_grad():
        logits = graph.forward(x)
    target = select_targets(logits, y, args.target, args.seed, index_offset=args.start)
    clip = tuple(args.clip) if args.clip else None
    sw = Stopwatch()
    with con.progress("clever", 1) as cb:
        res = clever_scores(graph, x, y, args.norm, cfg, target=target, clip=clip, device=args.device,
                            index_offset=args.start)
        cb(1, 1)
    per = sw() / max(1, len(y))
    pred = logits.argmax(1)
    docs = [{"index": args.start + i, "label": int(y[i]), "predicted": int(pred[i]),
             **({"target": int(target[i])} if target is not None else {}),
             "clever_estimate": float(res.clever_estimate[i]), "fit_ok": bool(res.fit_ok[i].any()), "time_s": per}
            for i in range(len(y))]
    con.table(f"CLEVER estimates (L{args.norm}; an estimate, not a certificate)", ["index", "label", "pred", "clever_estimate"],
              [[d["index"], d["label"], d["predicted"], d["clever_estimate"]] for d in docs])
    if args.json:
        import json

        doc = {"schema_version": 1, "command": "clever",
               "settings": {**input_settings(args), "data": args.data, "norm": args.norm, "target": args.target,
                            "clip": clip, "seed": args.seed, "n_batches": cfg.n_batches, "n_samples": cfg.n_samples,
                            "radius": cfg.radius_for(args.norm)},
               "environment": environment_for(args), "summary": {"samples": len(y), "seconds_per_sample": per},
               "samples": docs}
        from ..report.atomic import write_or_keep

        write_or_keep(args.json, json.dumps(doc, indent=2) + "\n", "--json")
        con.print(f"wrote {args.json}")
    return 0
