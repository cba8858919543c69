"""`certnn compare`: several models (e.g. an undefended one and verified-robust trained ones) certified on
the SAME samples, one row per model: clean accuracy, certified accuracy at each --eps, mean certified
radius, optionally the mean attack radius (an upper bound, its own column).

Samples: the first --samples test examples of --task (text: the first ones that have the --words positions
under every model's encoding, the same sentences for every model; images: mnist / digits test images).
Conventions (certnn.apps.compare): a sample counts for a model only if that model classifies it
correctly; the mean certified radius is over all N samples with 0 for misclassified ones (and, separately,
over the correctly classified ones).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, DataError
from .attack_options import add_attack_args, attack_config
from .common import Console, add_output_args, fmt, parse_methods
from .precision_args import add_precision_args, environment_for, precision_kwargs

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    import torch
    from ..certify.radius import CertifyConfig, RadiusConfig
    from ..report.records import environment, write_document


def register(sub) -> None:
    p = sub.add_parser("compare", help="certify several models (defences) on the same samples, one row per model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="model bundles written by `certnn train`")
    p.add_argument("--task", help="text (mr, sst2, toxic, urls) or image (mnist, digits) task; default: the first "
                                  "model's own task")
    p.add_argument("--data-dir", help="folder holding text/, embeddings/, mnist/ (default: $CERTNN_DATA_DIR)")
    p.add_argument("--samples", type=int, default=20, help="the first N test examples")
    p.add_argument("--start", type=int, default=0, help="index of the first test example considered")
    p.add_argument("--words", default="all", help="text models: perturbed word positions (3,5 or -1) or all")
    p.add_argument("--method", default="certrnn", help="certification method (one)")
    p.add_argument("--norm", default="2", choices=["inf", "2", "1"], help="Lp norm of the ball")
    p.add_argument("--target", default="untargeted", choices=["untargeted", "top2", "random", "least"],
                   help="which classes the prediction must beat")
    p.add_argument("--clip", nargs=2, type=float, metavar=("LO", "HI"), help="image tasks: e.g. 0 1 for pixels")
    p.add_argument("--eps", type=float, nargs="+", default=[], help="certified accuracy at these radii")
    p.add_argument("--seed", type=int, default=0, help="random seed (targets 'random', attacks)")
    p.add_argument("--batch-size", type=int, default=32, help="samples bounded together")
    p.add_argument("--eps-init", type=float, help="first eps tried (none: 0.01 inf, 0.1 L2, 1 L1)")
    p.add_argument("--eps-max", type=float, default=1e3, help="largest eps tried")
    p.add_argument("--bisection-steps", type=int, default=14, help="bisection steps of the radius search")
    p.add_argument("--attack", action="store_true", help="also the mean attack radius (upper bound)")
    add_attack_args(p)
    p.add_argument("--md", metavar="OUT.md", help="write the table as Markdown")
    add_precision_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def _bundle(path: str) -> dict:
    from ..models.bundle import read_bundle
    from ..errors import ModelImportError

    if not Path(path).is_file():
        raise ModelImportError(f"model file {path} not found (compare takes model bundles written by "
                               "`certnn train`)")
    doc = read_bundle(path)
    if doc is None:
        raise ModelImportError(f"{path} is not a certnn model bundle (written by `certnn train`)")
    return doc


def _text_inputs(args, docs: list[dict]):
    """Per model (graph, x, y, frames) on the same sentences, and the sentences' test indices."""
    import torch

    from ..data.text import word_frames
    from ..graph.recurrent import embed_tokens
    from ..models.text import TextEncoder, text_graph, text_model_from_bundle
    from .text_inputs import parse_words, task_test_split

    loaded = [text_model_from_bundle(d, p) for d, p in zip(docs, args.models)]
    meta0 = loaded[0][2]
    task = args.task or meta0["task"]
    for (m, _, meta), p in zip(loaded, args.models):
        if meta["task"] != task:
            raise ConfigError(f"{p} was trained on {meta['task']!r}, not {task!r}: compare needs models of one task")
        for k in ("split_seed", "test_fraction"):
            if meta.get(k) != meta0.get(k):
                raise ConfigError(f"{p} has {k} {meta.get(k)!r}, {args.models[0]} {meta0.get(k)!r}: the models "
                                  "were trained on different splits")
    texts, labels, _ = task_test_split(args, meta0, loaded[0][0].config.num_classes, task)
    words = parse_words(args.words)
    per_model, valid = [], torch.ones(len(texts), dtype=torch.bool)
    for model, vocab, meta in loaded:
        enc = TextEncoder.from_meta(vocab, meta)
        e = enc.encode(texts)
        fr, ok = word_frames(e.lengths, enc.max_len, words, e.padding)
        per_model.append((model, enc, e, fr))
        valid &= ok
    valid[:args.start] = False
    keep = torch.nonzero(valid).flatten()[:args.samples]
    if keep.numel() == 0:
        raise DataError(f"no test sentence (from index {args.start}) has the word positions --words {args.words}")
    out = []
    for model, enc, e, fr in per_model:
        x = embed_tokens(model, e.tokens[keep])
        frames = [tuple(int(f) for f in row if f >= 0) for row in fr[keep].tolist()]
        out.append((text_graph(model, enc.max_len), x, labels[keep], frames))
    return out, keep.tolist(), task


def _image_inputs(args, docs: list[dict]):
    import torch

    from ..graph.from_torch import from_torch
    from ..models.bundle import bundle_module

    task = args.task or docs[0]["meta"].get("task")
    if task not in ("mnist", "digits"):
        raise ConfigError(f"image bundles compare on --task mnist or digits, got {task!r}")
    if args.words != "all":
        raise ConfigError("--words is for text models")
    for d, p in zip(docs, args.models):
        if d["meta"].get("task") != task:
            raise ConfigError(f"{p} was trained on {d['meta'].get('task')!r}, not {task!r}: compare needs models "
                              "of one task")
    if task == "mnist":
        from ..data.mnist import load_mnist_test
        from .common import resolve_data_dir

        x, y = load_mnist_test(resolve_data_dir(args))
    else:
        from ..data.digits import load_digits_split

        _, _, x, y = load_digits_split()
    x = x[args.start:args.start + args.samples].to(torch.float64)
    y = y[args.start:args.start + args.samples]
    out = []
    for d, p in zip(docs, args.models):
        shape = tuple(d["meta"].get("input_shape") or d["config"].get("input_shape"))
        graph = from_torch(bundle_module(d, p), shape)
        out.append((graph, x.reshape(x.shape[0], *shape), y, None))
    return out, list(range(args.start, args.start + x.shape[0])), task


def run(args) -> int:
    from ..certify.radius import CertifyConfig, RadiusConfig
    from ..report.records import environment, write_document

    from ..apps.compare import summarize_model

    con = Console.for_args(args)
    method = parse_methods(args.method)
    if len(method) != 1:
        raise ConfigError("compare takes one --method (run it once per method)")
    if args.samples < 1 or args.start < 0:
        raise ConfigError("--samples must be >= 1 and --start >= 0")
    docs = [_bundle(p) for p in args.models]
    kinds = {d["kind"] for d in docs}
    if len(kinds) != 1:
        raise ConfigError("compare needs models of one kind (all text or all image bundles)")
    text = kinds == {"text"}
    inputs, indices, task = _text_inputs(args, docs) if text else _image_inputs(args, docs)
    cfg = CertifyConfig(method=method[0], norm=args.norm, target=args.target, seed=args.seed,
                        batch_size=args.batch_size, clip=tuple(args.clip) if args.clip else None)
    search = RadiusConfig(eps_init=args.eps_init, eps_max=args.eps_max, bisection_steps=args.bisection_steps)
    attack = None
    if args.attack:
        attack = attack_config(args)
    rows = []
    for path, (graph, x, y, frames) in zip(args.models, inputs):
        with con.progress(f"{Path(path).name}: {method[0]} radius", x.shape[0]) as cb:
            s = summarize_model(graph, x, y, frames, cfg, search, args.eps, attack, args.eps_max, progress=cb,
                                **precision_kwargs(args))
        rows.append({"model": path, **s.to_dict(),
                     "certified_radius": s.certified_radius.tolist(),
                     **({"attack_radius": s.attack_radius.tolist()} if s.attack_radius is not None else {})})
    cols, table = _table(args, rows, attack is not None)
    what = f"words {args.words}" if text else "whole image"
    title = (f"{task}: {len(indices)} test samples, {method[0]}, L{args.norm}, {what} "
             "(mean cert radius: 0 for misclassified samples)")
    con.table(title, cols, table)
    settings = {"models": list(args.models), "task": task, "samples": len(indices), "start": args.start,
                "words": args.words if text else None, "method": method[0], "norm": args.norm, "target": args.target,
                "clip": cfg.clip, "eps": list(args.eps), "seed": args.seed, "search": search.to_dict(),
                "attack": bool(args.attack), "indices": indices,
                "conventions": "a sample counts only if the model classifies it correctly; mean_certified_radius "
                               "averages over all samples with 0 for misclassified ones; "
                               "mean_certified_radius_correct over correctly classified ones; mean_attack_radius "
                               "(upper bound) over correct samples where the attack found an example"}
    if args.json:
        write_document(args.json, "compare", settings, environment_for(args), models=rows)
        con.print(f"wrote {args.json}")
    if args.md:
        _write_md(args.md, con, title, cols, table)
    return 0


def _table(args, rows: list[dict], attack: bool) -> tuple[list[str], list[list]]:
    """The columns and rows of the console / Markdown table, one row per model."""
    cols = ["model", "clean acc"] + [f"cert acc @{e:g}" for e in args.eps] + ["mean cert radius",
                                                                              "mean cert radius (correct)"] + \
        (["mean attack radius"] if attack else []) + ["s / sample"]
    table = [[Path(r["model"]).name, r["clean_accuracy"]] + [r["certified_accuracy"][str(float(e))] for e in args.eps]
             + [r["mean_certified_radius"], r["mean_certified_radius_correct"]]
             + ([r["mean_attack_radius"]] if attack else []) + [r["seconds_per_sample"]] for r in rows]
    return cols, table


def _write_md(path: str, con, title: str, cols: list[str], table: list[list]) -> None:
    from ..report.atomic import write_or_keep

    lines = [f"**{title}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in table]
    write_or_keep(path, "\n".join(lines) + "\n", "--md")
    con.print(f"wrote {path}")
