"""`certnn words`: which words of a sentence is a text classifier most sensitive to?

For every real word of each sentence, the certified radius of that word's embedding alone (only its frame
moves; a proved lower bound, certnn.apps.words) ranks the words: the smallest radius is the most sensitive
word (rank 1). A gradient-saliency baseline (||d margin / d embedding||, no guarantee) is shown beside it.
Sentences come from --text (repeatable) or from a task's test split (--task, --samples, --start: batch
mode, which also aggregates over the correctly classified sentences: which word types are most often the
most sensitive word, and the mean radius per word type).
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from typing import TYPE_CHECKING

from ..errors import ConfigError, DataError, SoundnessError
from .attack_options import add_attack_args, attack_config
from .common import Console, add_output_args
from .precision_args import add_precision_args, environment_for, precision_kwargs
from .text_inputs import _labels, task_test_split, text_bundle

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    import torch
    from ..certify.radius import CertifyConfig, RadiusConfig
    from ..report.records import environment, write_document


def register(sub) -> None:
    p = sub.add_parser("words", help="certified radius of each word alone: the most sensitive words of sentences",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="a text model bundle written by `certnn train`")
    g = p.add_argument_group("sentences")
    g.add_argument("--text", action="append", help="a sentence (repeatable)")
    g.add_argument("--label", help="labels of the --text sentences, e.g. 1 or 1,0 (default: the model's prediction)")
    g.add_argument("--task", help="batch mode: the test split of this task (default: the bundle's own task)")
    g.add_argument("--data-dir", help="folder holding text/ and embeddings/ (default: $CERTNN_DATA_DIR)")
    g.add_argument("--samples", type=int, default=20, help="batch mode: number of test sentences (non-empty ones)")
    g.add_argument("--start", type=int, default=0, help="batch mode: first test-split index")
    g = p.add_argument_group("perturbation, method and search")
    g.add_argument("--method", default="certrnn", help="certification method (certrnn, popqorn, crown, ibp, ...)")
    g.add_argument("--norm", default="2", choices=["inf", "2", "1"], help="Lp norm of the ball around a word")
    g.add_argument("--target", default="untargeted", choices=["untargeted", "top2", "random", "least"],
                   help="which classes the prediction must beat")
    g.add_argument("--seed", type=int, default=0, help="random seed (targets 'random', attacks)")
    g.add_argument("--batch-size", type=int, default=32, help="(sentence, word) pairs per bound computation")
    g.add_argument("--eps-init", type=float, help="first eps tried (none: 0.01 inf, 0.1 L2, 1 L1)")
    g.add_argument("--eps-max", type=float, default=1e3, help="largest eps tried")
    g.add_argument("--bisection-steps", type=int, default=14, help="bisection steps of the radius search")
    g.add_argument("--attack", action="store_true", help="also attack each word (attack radius, upper bound)")
    add_attack_args(g)
    p.add_argument("--top", type=int, default=10, help="batch mode: word types listed in the aggregate tables")
    p.add_argument("--no-color", action="store_true", help="plain text, each word followed by its radius")
    add_precision_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def _sentences(args, doc):
    """(model, vocab, meta, texts, labels or None, indices, task name or None)."""
    from ..models.text import text_model_from_bundle

    if doc is None:
        raise ConfigError(f"--model {args.model}: certnn words needs a text model bundle (written by "
                          "`certnn train --task mr|sst2|toxic|urls`)")
    model, vocab, meta = text_model_from_bundle(doc, args.model)
    if args.text is not None:
        if args.task:
            raise ConfigError("give either --text or --task, not both")
        texts = list(args.text)
        return model, vocab, meta, texts, _labels(args.label, len(texts), model.config.num_classes), \
            list(range(len(texts))), None
    if args.label is not None:
        raise ConfigError("--label is for --text sentences; a task's test split has its labels")
    if args.samples < 1 or args.start < 0:
        raise ConfigError("--samples must be >= 1 and --start >= 0")
    texts, labels, name = task_test_split(args, meta, model.config.num_classes)
    return model, vocab, meta, texts, labels, list(range(len(texts))), name


def _style(rank: int, n: int) -> str:
    """Colour by rank within the sentence: the most sensitive word bold red, then red / yellow / green."""
    if rank == 1:
        return "bold white on red"
    f = (rank - 1) / max(1, n - 1)
    return "red" if f < 1 / 3 else ("yellow" if f < 2 / 3 else "green")


def run(args) -> int:
    from ..certify.radius import CertifyConfig, RadiusConfig
    from ..report.records import write_document

    from ..graph.recurrent import embed_tokens
    from ..models.text import TextEncoder, text_graph
    from ..apps.words import ranking_agreement, word_sensitivity

    con = Console.for_args(args)
    if args.no_color:
        con.out.no_color = True
    model, vocab, meta, texts, labels, indices, task_name = _sentences(args, text_bundle(args))
    enc = TextEncoder.from_meta(vocab, meta)
    encoded = enc.encode(texts)
    kept = [enc.kept_tokens(t) for t in texts]
    keep = _kept_sentences(args, encoded.lengths, kept, vocab)
    tokens, lengths = encoded.tokens[keep], encoded.lengths[keep]
    x = embed_tokens(model, tokens)
    graph = text_graph(model, enc.max_len)
    y = None if labels is None else labels[keep]
    cfg = CertifyConfig(method=args.method, norm=args.norm, target=args.target, seed=args.seed,
                        batch_size=args.batch_size)
    search = RadiusConfig(eps_init=args.eps_init, eps_max=args.eps_max, bisection_steps=args.bisection_steps)
    with con.progress(f"{args.method} radius per word", int(lengths.sum())) as cb:
        ws = word_sensitivity(graph, x, lengths, y, cfg, search, padding=enc.padding, progress=cb,
                              **precision_kwargs(args))
    attack = _attack_words(args, con, graph, x, ws) if args.attack else None
    agree = ranking_agreement(ws)
    samples = [_sentence_record(i, int(keep[i]), ws, agree, kept, vocab, attack, indices, texts, enc, int(lengths[i]))
               for i in range(keep.numel())]
    summary = {"sentences": len(samples), "correct": int(ws.correct.sum()), "pairs": int(lengths.sum()),
               "mean_spearman": agree["mean_spearman"], "top1_agreement": agree["top1_agreement"],
               "seconds_per_word": float(ws.time_s.mean()), "conventions":
               "rank 1 = smallest certified radius (most sensitive); saliency_rank 1 = largest gradient norm; "
               "agreement and aggregates over correctly classified sentences only"}
    if args.text is None:
        summary["aggregate"] = _aggregate(samples)
    _show(con, args, samples, summary, attack is not None)
    if args.json:
        settings = {"model": args.model, "task": task_name, "method": args.method, "norm": args.norm,
                    "target": args.target, "seed": args.seed, "search": search.to_dict(),
                    "attack": bool(args.attack), "max_len": enc.max_len, "padding": enc.padding,
                    "space": "embedding", "perturbed": "one word at a time"}
        write_document(args.json, "words", settings, environment_for(args), summary=summary, samples=samples)
        con.print(f"wrote {args.json}")
    return 0


def _kept_sentences(args, lengths, kept: list, vocab):
    """Indices of the sentences to rank: every --text sentence (each must have a known word), or the
    non-empty test sentences from --start (at most --samples)."""
    import torch

    if args.text is not None:
        empty = [i for i in range(len(kept)) if int(lengths[i]) == 0]
        if empty:
            raise DataError(f"--text sentence(s) {empty} have no words (nothing to certify)")
        unknown = [i for i, toks in enumerate(kept) if not any(w in vocab for w in toks)]
        if unknown:
            raise DataError(f"--text sentence(s) {unknown} have no word in the model's vocabulary (every token "
                            "would be <unk>); nothing meaningful to rank")
        return torch.arange(len(kept))
    keep = torch.nonzero(lengths > 0).flatten()
    keep = keep[keep >= args.start][:args.samples]
    if keep.numel() == 0:
        raise DataError(f"no non-empty test sentence from index {args.start}")
    return keep


def _attack_words(args, con, graph, x, ws):
    """--attack: the attack radius of every (sentence, word) pair, checked against the certified radii."""
    import torch

    from ..attacks import attack_radius
    from ..certify.per_sample_frames import frame_scales

    frames = [(int(f),) for f in ws.frame.tolist()]
    with con.progress("attack radius per word", None) as acb:
        ar = attack_radius(graph, x[ws.sentence], ws.label[ws.sentence], args.norm, attack_config(args),
                           target=ws.target, scale=frame_scales(tuple(x.shape[1:]), frames),
                           eps_max=args.eps_max, progress=acb.detail, device=args.device)
    attack = ar.radius.to(torch.float64)
    bad = torch.nonzero(ws.certified_radius > attack * (1 + 1e-9) + 1e-12).flatten()
    if bad.numel():
        raise SoundnessError(f"certified radius above the attack radius for (sentence, word) pairs "
                             f"{[(int(ws.sentence[b]), int(ws.position[b])) for b in bad[:10]]}: this is a "
                             "bug in certnn, please report it with the model and sentence")
    return attack


def _sentence_record(i: int, j: int, ws, agree: dict, kept: list, vocab, attack, indices, texts, enc, L: int) -> dict:
    """The JSON record of ranked sentence i (sentence j of the input), its words in position order."""
    words = []
    for p in ws.pairs_of(i).tolist():
        w = kept[j][int(ws.position[p])]
        rec = {"word": w, "position": int(ws.position[p]), "frame": int(ws.frame[p]), "in_vocabulary": w in vocab,
               "certified_radius": float(ws.certified_radius[p]), "saliency": float(ws.saliency[p]),
               "rank": int(ws.rank[p]), "saliency_rank": int(ws.saliency_rank[p])}
        if attack is not None:
            rec["attack_radius"] = float(attack[p])
        words.append(rec)
    k = agree["sentences"].index(i) if i in agree["sentences"] else None
    return {"index": indices[j], "text": texts[j], "label": int(ws.label[i]),
            "predicted": int(ws.predicted[i]), "correct": bool(ws.correct[i]),
            "margin": float(ws.margin[i]), "length": L,
            "truncated_tokens": max(0, len(enc.tokenizer(texts[j])) - L),
            "spearman": None if k is None else agree["spearman"][k],
            "top1_agree": None if k is None else agree["top1"][k], "words": words}


def _aggregate(samples: list[dict]) -> dict:
    """Over correctly classified sentences: how often each word type is the most sensitive word, and the
    mean certified radius (and count) of each word type."""
    top: dict[str, int] = defaultdict(int)
    radii: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        if not s["correct"]:
            continue
        for w in s["words"]:
            radii[w["word"]].append(w["certified_radius"])
            if w["rank"] == 1:
                top[w["word"]] += 1
    most = sorted(top.items(), key=lambda kv: (-kv[1], kv[0]))
    by = sorted(((w, len(r), sum(r) / len(r)) for w, r in radii.items()), key=lambda t: (t[2], -t[1], t[0]))
    return {"most_sensitive": [{"word": w, "count": c} for w, c in most],
            "by_word": [{"word": w, "count": c, "mean_certified_radius": m} for w, c, m in by]}


def _show(con: Console, args, samples: list[dict], summary: dict, attack: bool) -> None:
    if con.quiet:
        return
    from rich.text import Text

    con.print(f"certified radius of each word alone ({args.method}, L{args.norm}); rank 1 = most sensitive")
    for s in samples:
        head = f"[{s['index']}] label {s['label']}, predicted {s['predicted']}" + ("" if s["correct"] else
                                                                                  " (misclassified: radius 0)")
        con.out.print(head, markup=False)
        n = len(s["words"])
        if args.no_color:
            line = " ".join(f"{w['word']}({w['certified_radius']:.3g})" for w in s["words"])
            con.out.print(line, markup=False)
        else:
            t = Text()
            for w in s["words"]:
                t.append(w["word"], style=_style(w["rank"], n))
                t.append(" ")
            con.out.print(t)
        if s["correct"]:
            best = min(s["words"], key=lambda w: w["rank"])
            sal = min(s["words"], key=lambda w: w["saliency_rank"])
            con.out.print(f"  most sensitive: {best['word']!r} (radius {best['certified_radius']:.4g}); "
                          f"largest saliency: {sal['word']!r}" +
                          (f"; spearman {s['spearman']:.3f}" if s["spearman"] is not None and s["spearman"] == s["spearman"] else "")
                          + (f"; {s['truncated_tokens']} tokens beyond T not seen" if s["truncated_tokens"] else ""),
                          markup=False)
    if "aggregate" in summary:
        agg = summary["aggregate"]
        con.table(f"most often the most sensitive word ({summary['correct']} correct sentences)", ["word", "count"],
                  [[d["word"], d["count"]] for d in agg["most_sensitive"][:args.top]])
        con.table("smallest mean certified radius per word type", ["word", "count", "mean radius"],
                  [[d["word"], d["count"], d["mean_certified_radius"]] for d in agg["by_word"][:args.top]])
    con.print(f"ranking agreement with gradient saliency: mean spearman {summary['mean_spearman']:.3g}, "
              f"top-1 agreement {summary['top1_agreement']:.3g}; {summary['seconds_per_word']:.3g} s per word"
              + ("; attack radii checked (certified <= attack everywhere)" if attack else ""))
