"""`certnn report`: certified radius per method, attack radius and CLEVER on the same samples."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import SoundnessError
from .attack_options import add_attack_args, attack_config, attack_name
from .sharded import add_worker_args, wants_sharding
from .alpha_memory import fitted_batch
from .budgets import add_memory_args, deadline, memory_plan
from .common import (add_log_args, add_method_list_arg, Console, add_alpha_args, add_data_args, add_model_args,
                     add_spec_args, alpha_config,
                     input_settings, load_model_and_data, parse_methods)
from .precision_args import add_precision_args, precision_kwargs

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    from ..certify.radius import RadiusConfig
    from ..certify.bounds import to_graph
    from ..report.build import build_report
    from ..report.render import write_report


def register(sub) -> None:
    p = sub.add_parser("report", help="certified radii (several methods), attack radius and CLEVER, with plots",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    add_spec_args(p, methods=False)
    add_alpha_args(p)
    add_method_list_arg(p, "crown,fastlin,ibp")
    p.add_argument("--clever", action="store_true", help="add CLEVER estimates (statistics, not bounds)")
    p.add_argument("--attack", action="store_true", help="add attack radii (upper bounds)")
    add_attack_args(p)
    p.add_argument("--clever-batches", type=int, default=50, help="CLEVER: batches of gradient-norm samples")
    p.add_argument("--clever-samples", type=int, default=128, help="CLEVER: samples per batch")
    p.add_argument("--bisection-steps", type=int, default=10, help="bisection steps of each certified radius search")
    add_memory_args(p)
    p.add_argument("--out", required=True, help="output folder (report.json, report.md, *.png)")
    add_precision_args(p, what="where bounds, attacks and CLEVER are computed")
    p.add_argument("--quiet", action="store_true", help="no table or progress output")
    add_log_args(p)
    add_worker_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if wants_sharding(args):  # --workers / --address / --resume: docs/scaling.md
        from .shard_run import run_sharded

        return run_sharded(args, "report")
    from ..certify.bounds import to_graph
    from ..certify.radius import RadiusConfig
    from ..report.build import build_report
    from ..report.render import write_report

    con = Console.for_args(args)
    methods = parse_methods(args.method)
    model, x, y = load_model_and_data(args)
    graph = to_graph(model, tuple(x.shape[1:]))
    plan = memory_plan(args, graph, args.batch_size)
    clever_cfg = None
    if args.clever:
        from ..estimate import CleverConfig

        clever_cfg = CleverConfig(n_batches=args.clever_batches, n_samples=args.clever_samples, seed=args.seed)
    clip = tuple(args.clip) if args.clip else None
    search = RadiusConfig(bisection_steps=args.bisection_steps)
    batch = fitted_batch(args, graph, methods, x, y, plan, clip, 4 * search.initial(args.norm))
    with con.progress("report", 1) as cb:
        data = build_report(graph, x, y, args.norm, methods, args.target, clip, attack=args.attack,
                            clever=args.clever, seed=args.seed,
                            search=search, clever_config=clever_cfg,
                            index_offset=args.start, batch_size=batch, max_rows=plan.max_rows,
                            alpha=alpha_config(args), attack_config=attack_config(args) if args.attack else None,
                            progress=lambda what, d, t: cb.detail({"stage": what, "done": d, "of": t}),
                            deadline=deadline(args), **precision_kwargs(args))
    files = write_report(data, args.out, {**input_settings(args), "data": args.data})
    s = data.summary
    rows = [[f"certified: {m}", "lower bound", s["mean_certified_radius"][m], s["seconds_per_sample"][m]] for m in methods]
    if data.attack_radius is not None:
        rows.append([f"attack ({attack_name(attack_config(args))})", "upper bound", s["mean_attack_radius"], s["seconds_per_sample"]["attack"]])
    if data.clever_estimate is not None:
        rows.append(["CLEVER", "estimate", s["mean_clever_estimate"], s["seconds_per_sample"]["clever"]])
    con.table(f"mean radius over {s['correct']} correctly classified of {s['samples']} samples (L{args.norm})",
              ["quantity", "kind", "mean radius", "s / sample"], rows)
    if data.clever_estimate is not None and data.attack_radius is not None:
        con.print(f"CLEVER above the attack radius on {data.clever_above_attack} samples (an estimate can be wrong)")
    if s["undecided"]:
        con.print(f"--timeout: {s['undecided']} of {s['samples']} samples undecided (not run; not counted)")
    con.print(f"wrote {files['md']} and {files['json']}")
    if data.violations:
        raise SoundnessError(f"{len(data.violations)} certified radii exceed the attack radius; details in "
                             f"{files['md']}. This is a bug in certnn: please report it")
    return 0
