"""`certnn radius`: certified radius per sample (one or several methods), optionally with attack radius.

Inputs: a model with --data D.npz (or --task mnist|digits for an image task's test split), or a text
model bundle (`certnn train`) with sentences of --task / --text, whose chosen --words are perturbed in
embedding space (cli/text_inputs.py).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, SoundnessError
from .sharded import add_worker_args, wants_sharding
from .precision_args import add_precision_args, environment_for, precision_kwargs
from .profile_args import add_profile_arg, show_profile
from .common import (Console, Stopwatch, add_alpha_args, add_complete_args, add_data_args, add_model_args,
                     add_output_args, add_spec_args, alpha_config, clamp_data, complete_config, frame_options,
                     input_settings, load_model_and_data, parse_methods, threat_model)
from .attack_options import add_attack_args, attack_config, attack_name
from .alpha_memory import fit_alpha_batch
from .budgets import add_memory_args, deadline, memory_plan
from .text_inputs import add_text_args, load_text_inputs, parse_words, text_bundle

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    import torch
    from ..certify.radius import CertifyConfig, Certifier, RadiusConfig
    from ..report.records import SampleRecord, environment, write_json


def register(sub) -> None:
    p = sub.add_parser("radius", help="certified radius per sample (largest eps proved robust)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    add_data_args(p, required=False)
    add_text_args(p)
    add_spec_args(p)
    add_alpha_args(p)
    add_complete_args(p)
    add_memory_args(p)
    g = p.add_argument_group("search")
    g.add_argument("--eps-init", type=float, help="first eps tried (none: 0.01 inf, 0.1 L2, 1 L1)")
    g.add_argument("--eps-max", type=float, default=1e3, help="largest eps tried (certified and attack radius)")
    g.add_argument("--bisection-steps", type=int, default=14,
                   help="precision of the certified radius: that of this many bisection steps after bracketing "
                        "it (log space)")
    g.add_argument("--search", choices=("itp", "bisection"), default="itp",
                   help="how the bracket is narrowed: itp (interpolation on the margin bounds, at most 2 steps "
                        "more than bisection, usually about half; alpha-crown and --complete always bisect) or "
                        "bisection")
    g.add_argument("--eps", type=float, nargs="+", help="also report certified accuracy at these radii")
    g.add_argument("--attack", action="store_true",
                   help="also find an attack radius (an upper bound, from a checked adversarial example)")
    add_attack_args(g)
    add_precision_args(p)
    add_profile_arg(p)
    add_output_args(p)
    add_worker_args(p)
    p.set_defaults(func=run)


def _image_task_data(args):
    import torch

    from .common import resolve_data_dir
    from .train import IMAGE_TASKS

    if args.task not in IMAGE_TASKS:
        raise ConfigError(f"--task {args.task!r} needs a text model bundle (from `certnn train`); with other models "
                          f"--task takes {', '.join(IMAGE_TASKS)}")
    if args.task == "mnist":
        from ..data.mnist import load_mnist_test

        x, y = load_mnist_test(resolve_data_dir(args))
    else:
        from ..data.digits import load_digits_split

        _, _, x, y = load_digits_split()
        x = x.reshape(-1, 1, 8, 8)
    end = x.shape[0] if args.samples is None else min(x.shape[0], args.start + args.samples)
    x, y = x[args.start:end].to(torch.float64), y[args.start:end]
    if args.input_shape:
        x = x.reshape((x.shape[0],) + tuple(args.input_shape))
    return x, y


def _inputs(args):
    """(model or graph, x, y, text inputs or None)."""
    doc = text_bundle(args)
    if doc is not None:
        inp = load_text_inputs(args, doc)
        return inp.graph, inp.x, inp.y, inp
    for flag in ("text", "words", "label"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag} is for text model bundles (written by "
                              "`certnn train --task mr|sst2|toxic|urls`)")
    if args.task is not None:
        if args.data:
            raise ConfigError("give either --data or --task")
        from .common import cli_load_model

        model = cli_load_model(args)
        x, y = _image_task_data(args)
        return model, clamp_data(args, x), y, None
    if not args.data:
        raise ConfigError("radius needs inputs: --data D.npz (or --task for a task's test split)")
    model, x, y = load_model_and_data(args)
    return model, x, y, None


def run(args) -> int:
    if wants_sharding(args):  # --workers / --address / --resume: docs/scaling.md
        from .shard_run import run_sharded

        return run_sharded(args, "radius")
    from ..certify.radius import RadiusConfig
    from ..report.records import write_json

    con = Console.for_args(args)
    methods = parse_methods(args.method)
    from ..certify.profile import Profile

    prof = Profile()
    with prof.phase("load"):
        model, x, y, text = _inputs(args)
    search = RadiusConfig(eps_init=args.eps_init, eps_max=args.eps_max, bisection_steps=args.bisection_steps,
                          strategy=args.search)
    clip = tuple(args.clip) if args.clip else None
    fopts = _frame_opts(args, text)
    if args.complete and text is not None:
        raise ConfigError("--complete is for --data / --task image inputs (text models use sigmoid/tanh cells)")
    batch_size, max_rows, plan = args.batch_size, 4096, None
    if text is None:
        from ..certify.bounds import to_graph

        model = to_graph(model, tuple(x.shape[1:]))
        plan = memory_plan(args, model, args.batch_size)
        batch_size, max_rows = plan.batch_size, plan.max_rows
    job = _Job(args, con, prof, methods, x, y, text, clip, plan)
    s = _search_all(job, model, search, fopts, batch_size, max_rows)
    attack, attack_time, acfg = _attack(job, s)
    samples = _samples(job, s, attack)
    summary = _summary(job, s, attack, attack_time)
    _show(job, s, samples, summary, attack, acfg)
    show_profile(con, args, prof)
    if args.json:
        write_json(args.json, "radius", _settings(job, s, search), samples, summary, environment_for(args))
        con.print(f"wrote {args.json}")
    return 0


@dataclass
class _Job:
    """What every step of `certnn radius` reads: arguments, console, profile, methods, inputs, clip box."""

    args: argparse.Namespace
    con: Console
    prof: object
    methods: list[str]
    x: object
    y: object
    text: object
    clip: tuple | None
    plan: object = None  # the memory plan (engine/memory.ChunkPlan) of image inputs


@dataclass
class _Searched:
    """Per method: certified radii, seconds, --complete's adversarial eps, --eps verdicts; which samples were
    searched (--timeout); the first method's graph, input scale, result and config."""

    radii: dict
    times: dict
    violated_at: dict
    certified: dict
    decided: object
    graph: object
    scale: object
    res: object
    cfg: object


def _frame_opts(args, text) -> dict:
    fopts = frame_options(args)
    if text is not None and fopts["frame_eps"] is not None and parse_words(args.words) is None:
        # every word of a sentence: one relative eps for all of them
        if len(fopts["frame_eps"]) != 1:
            raise ConfigError("--frame-eps with --words all takes one value (the same weight for every word)")
        fopts["frame_eps"] = fopts["frame_eps"][0]
    return fopts


def _search_all(job: _Job, model, search, fopts: dict, batch_size: int, max_rows: int) -> _Searched:
    """The radius search of every method, and its verdicts at --eps."""
    import torch

    from ..certify.radius import CertifyConfig

    args = job.args
    decided = torch.ones(job.x.shape[0], dtype=torch.bool)
    radii: dict[str, torch.Tensor] = {}
    times: dict[str, torch.Tensor] = {}
    violated_at: dict[str, torch.Tensor] = {}
    certified: dict[str, dict[float, torch.Tensor]] = {}
    base = None
    for m in job.methods:
        cfg = CertifyConfig(method=m, norm=args.norm, target=args.target, clip=job.clip, seed=args.seed,
                            batch_size=batch_size, max_rows=max_rows, alpha=alpha_config(args),
                            complete=complete_config(args), **fopts)
        res, cert, graph, scale = _search_one(job, m, model, cfg, search, decided)
        radii[m], times[m] = res.certified_radius, res.time_s
        if res.violated_at is not None:
            violated_at[m] = res.violated_at
        if args.eps:
            certified[m] = _certified_at(job, cert, cfg, res)
        base = base or (graph, scale, res, cfg)
    return _Searched(radii, times, violated_at, certified, decided, *base)


def _search_one(job: _Job, m: str, model, cfg, search, decided):
    """(result, certifier or None for text inputs, graph, input scale) of method m's radius search; samples
    left unsearched at --timeout are cleared in `decided`."""
    args, x, y, text = job.args, job.x, job.y, job.text
    with job.con.progress(f"{m} radius", x.shape[0]) as cb:
        if text is None:
            from ..certify.deadline import radius_in_time
            from ..certify.radius import Certifier

            cert = Certifier(model, cfg, tuple(x.shape[1:]), **precision_kwargs(args))
            if job.plan is not None:  # the probe's sets at 4x the search's first eps (cli/alpha_memory.py)
                fit_alpha_batch(args, cert, x, y, 4 * search.initial(cfg.frame_norm or cfg.norm), job.plan)
            res, done = radius_in_time(cert, x, y, search, deadline(args), progress=cb, on_step=cb.detail,
                                       index_offset=args.start)
            decided &= done
            graph, scale = cert.graph, cert.scale
            job.prof.merge(cert.profile, prefix=f"{m}/" if len(job.methods) > 1 else "")
            return res, cert, graph, scale
        from ..certify.per_sample_frames import frame_scales, radius_by_frames

        res = radius_by_frames(text.graph, x, y, text.frames, cfg, search, progress=cb)
        return res, None, text.graph, frame_scales(tuple(x.shape[1:]), text.frames, cfg.frame_eps)


def _certified_at(job: _Job, cert, cfg, res) -> dict:
    out = {}
    for e in job.args.eps:
        if job.text is None:
            direct = cert.certify(job.x, job.y, e).certified
        else:
            from ..certify.per_sample_frames import certify_by_frames

            direct = certify_by_frames(job.text.graph, job.x, job.y, job.text.frames, e, cfg)
        # both are proofs: the ball of radius e lies inside the certified ball when e <= radius
        out[e] = direct | (res.correct & (res.certified_radius >= e))
    return out


def _attack(job: _Job, s: _Searched):
    """--attack: (attack radius per sample, seconds, attack config), checked against every certified
    radius; (None, None, None) without it."""
    if not job.args.attack:
        return None, None, None
    import torch

    from ..attacks import attack_radius

    args = job.args
    sw = Stopwatch()
    acfg = attack_config(args)
    with job.con.progress(f"attack radius ({attack_name(acfg)})", None) as cb, job.prof.phase("attack"):
        ar = attack_radius(s.graph, job.x.to(torch.float64), job.y, args.norm, acfg,
                           target=s.res.target, clip=job.clip, scale=s.scale, eps_max=args.eps_max,
                           frame_norm=s.cfg.frame_norm, progress=cb.detail, device=args.device)
    attack = ar.radius.to(torch.float64)
    attack_time = sw()
    worst = torch.nonzero(torch.stack([s.radii[m] > attack * (1 + 1e-9) + 1e-12 for m in job.methods]).any(0)).flatten()
    if worst.numel():
        raise SoundnessError(f"certified radius above the attack radius for samples {worst.tolist()[:10]}: "
                             "this is a bug in certnn, please report it with the model and data")
    return attack, attack_time, acfg


def _samples(job: _Job, s: _Searched, attack) -> list:
    from ..report.records import SampleRecord

    args, methods, text, y, res = job.args, job.methods, job.text, job.y, s.res
    radii, times, certified = s.radii, s.times, s.certified
    samples = []
    for i in range(job.x.shape[0]):
        extra = {"time_s_by_method": {m: float(times[m][i]) for m in methods}} if len(methods) > 1 else {}
        if args.eps and len(methods) > 1:  # per method, as summary.certified_accuracy_by_method counts it
            extra["certified_by_method"] = {m: {str(e): bool(certified[m][e][i]) for e in args.eps} for m in methods}
        if s.violated_at:  # --complete: an upper bound, from a checked adversarial example
            extra["adversarial_found_at_eps"] = {m: float(s.violated_at[m][i]) for m in s.violated_at}
        if not s.decided[i]:  # --timeout: never searched; certified_radius 0 is no result
            extra["undecided"] = True
        if text is not None:
            extra.update({"text": text.texts[i], "words": text.words[i], "in_vocabulary": text.known[i],
                          "frames": list(text.frames[i]), "length": int(text.lengths[i])})
        samples.append(SampleRecord(
            index=text.indices[i] if text is not None else args.start + i, label=int(y[i]),
            predicted=int(res.predicted[i]),
            certified_radius=float(radii[methods[0]][i]), time_s=float(times[methods[0]][i]),
            target=None if res.target is None else int(res.target[i]),
            attack_radius=None if attack is None else float(attack[i]),
            certified_radius_by_method={m: float(radii[m][i]) for m in methods} if len(methods) > 1 else None,
            certified={str(e): bool(certified[methods[0]][e][i]) for e in args.eps} if args.eps else None,
            extra=extra))
    return samples


def _summary(job: _Job, s: _Searched, attack, attack_time) -> dict:
    import torch

    args, methods, res, decided, radii, certified = job.args, job.methods, s.res, s.decided, s.radii, s.certified
    correct = res.correct & decided
    summary = {"samples": job.x.shape[0], "correct": int((res.correct & decided).sum()),
               "undecided": int((~decided).sum()),
               "mean_certified_radius": {m: float(radii[m][correct].mean()) if correct.any() else 0.0 for m in methods},
               "seconds_per_sample": {m: float(s.times[m].mean()) for m in methods}, "timers": job.prof.to_dict()}
    if args.eps:
        summary["clean_accuracy"] = float(res.correct.double().mean())
        summary["certified_accuracy"] = {str(e): float(certified[methods[0]][e].double().mean()) for e in args.eps}
        summary["certified_accuracy_by_method"] = {m: {str(e): float(certified[m][e].double().mean())
                                                       for e in args.eps} for m in methods}
    if attack is not None:
        finite = correct & torch.isfinite(attack)
        summary["mean_attack_radius"] = float(attack[finite].mean()) if finite.any() else None
        summary["attack_seconds_per_sample"] = attack_time / max(1, job.x.shape[0])
    return summary


def _show(job: _Job, s: _Searched, samples: list, summary: dict, attack, acfg) -> None:
    """The table and the summary lines on the console."""
    args, con, methods, text, radii = job.args, job.con, job.methods, job.text, s.radii
    cols = (["index", "label", "pred"] + (["words"] if text is not None else []) +
            [f"certified[{m}]" for m in methods] +
            ([f"attack[{attack_name(acfg)}]"] if attack is not None else []))
    rows = [[r.index, r.label, r.predicted] + ([_short(" ".join(text.words[i]))] if text is not None else []) +
            [float(radii[m][i]) for m in methods] + ([float(attack[i])] if attack is not None else [])
            for i, r in enumerate(samples)]
    what = "" if text is None else f", perturbing words {args.words or 'all'} of {text.task or '--text'} sentences"
    con.table(f"certified radius ({threat_model(args.norm, s.cfg.frame_norm)}, target={args.target}{what})", cols, rows)
    con.print("mean certified radius over correctly classified samples: " +
              ", ".join(f"{m} {summary['mean_certified_radius'][m]:.4g}" for m in methods) +
              (f"; mean attack radius {summary['mean_attack_radius']:.4g}" if attack is not None and summary.get("mean_attack_radius") is not None else "") +
              (f" ({attack_name(acfg)}: {summary['attack_seconds_per_sample']:.3g} s / sample)" if attack is not None else ""))
    if args.eps:
        by = summary["certified_accuracy_by_method"]
        con.print(f"clean accuracy {summary['clean_accuracy']:.4g}; certified accuracy " +
                  "; ".join(f"{m}: " + ", ".join(f"{a:.4g} at eps {e}" for e, a in by[m].items()) for m in methods))


def _settings(job: _Job, s: _Searched, search) -> dict:
    """The JSON document's settings."""
    args, text, cfg, methods = job.args, job.text, s.cfg, job.methods
    settings = {**input_settings(args), "data": args.data, "norm": args.norm, "methods": methods,
                "method": methods[0], "target": args.target, "clip": job.clip, "seed": args.seed,
                "search": search.to_dict(), "attack": bool(args.attack),
                "attack_method": args.attack_method if args.attack else None, "complete": bool(args.complete),
                "complete_timeout": args.complete_timeout if args.complete else None,
                "frames": cfg.frames, "frame_eps": cfg.frame_eps, "frame_norm": cfg.frame_norm}
    if args.eps:
        settings["eps"] = list(args.eps)
    if args.task is not None or text is not None:
        settings["task"] = (text.task if text is not None else None) or args.task
    if text is not None:
        settings.update({"words": args.words or "all", "max_len": int(text.meta["max_len"]),
                         "padding": text.meta.get("padding", "left"), "space": "embedding"})
        settings["frames"] = None
    return settings


def _short(s: str, n: int = 30) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"
