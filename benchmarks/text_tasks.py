"""Issue 6 benchmark: certified robustness of LSTM text classifiers on the four text tasks.

    python benchmarks/text_tasks.py                          # defaults below (about 20 min on one thread)
    python benchmarks/text_tasks.py --tasks mr --samples 5 --popqorn-samples 1 --word-sentences 2

Protocol: per task (mr, sst2, toxic, urls) an LSTM-1-32 (T = 20 tokens, left padding, frozen GloVe 50d
for the word tasks, a learned 16-d character embedding for urls; 5 epochs, `certnn train` defaults) is
trained once and cached in benchmarks/out/models. On the first N non-empty test sentences (the same ones
for every method; the first `--popqorn-samples` of them for popqorn, which is slow on an LSTM), L2 balls in
embedding space perturbing (a) the last real word only, (b) every real word; untargeted. Reported per
(task, method, perturbation): clean accuracy on those sentences, certified accuracy at two eps, mean
certified radius over correctly classified sentences, seconds per sentence (certnn.apps.summarize_model).
Then sensitive words (certnn.apps.word_sensitivity, certrnn): on the first `--word-sentences` sentences,
Spearman's rho between the certified-radius ranking and the gradient-saliency ranking, and how often the
most sensitive word agrees (correctly classified sentences only). Records go to
benchmarks/out/text_tasks.jsonl (one line per run), the tables to benchmarks/out/text_tasks.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, append_jsonl, markdown_table, read_jsonl  # noqa: E402

TASKS = ("mr", "sst2", "toxic", "urls")
JSONL = OUT / "text_tasks.jsonl"


def model_path(task: str) -> Path:
    return OUT / "models" / f"text_{task}_lstm1x32_T20.pt"


def ensure_model(task: str, data: Path) -> Path:
    from certnn.cli.main import main

    p = model_path(task)
    if not p.is_file():
        rc = main(["train", "--task", task, "--data-dir", str(data), "--cell", "lstm", "--hidden", "32",
                   "--max-len", "20", "--quiet", "--out", str(p)])
        if rc != 0:
            raise RuntimeError(f"training {task} failed (exit {rc})")
    return p


def sentences(task: str, path: Path, data: Path, n: int):
    """(graph, x (n, T, E), y, lengths, texts, test indices) of the first n non-empty test sentences."""
    from certnn.data.text import load_text_task
    from certnn.graph.recurrent import embed_tokens
    from certnn.models import TextEncoder, load_text_model, text_graph

    model, vocab, meta = load_text_model(path)
    t = load_text_task(task, data, seed=int(meta.get("split_seed", 0)), test_fraction=float(meta.get("test_fraction", 0.1)))
    enc = TextEncoder.from_meta(vocab, meta)
    e = enc.encode(list(t.test.texts))
    keep = torch.nonzero(e.lengths > 0).flatten()[:n]
    return (text_graph(model, enc.max_len), embed_tokens(model, e.tokens[keep]), t.test.labels[keep],
            e.lengths[keep], [t.test.texts[i] for i in keep.tolist()], keep.tolist(), meta)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--data-dir", default=str(SHARED))
    ap.add_argument("--samples", type=int, default=10, help="sentences for certrnn")
    ap.add_argument("--popqorn-samples", type=int, default=3, help="sentences for popqorn, last word")
    ap.add_argument("--popqorn-all-samples", type=int, default=1, help="sentences for popqorn, all words")
    ap.add_argument("--word-sentences", type=int, default=4, help="sentences for the sensitive-words comparison")
    ap.add_argument("--eps", type=float, nargs=2, default=[0.1, 0.5])
    ap.add_argument("--bisection-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fresh", action="store_true", help="delete the jsonl first")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from certnn.apps import ranking_agreement, summarize_model, word_sensitivity
    from certnn.certify.radius import CertifyConfig, RadiusConfig
    from certnn.data.text import word_frames

    data = Path(args.data_dir)
    tasks = [t for t in args.tasks.split(",") if t]
    if args.fresh and JSONL.is_file():
        JSONL.unlink()
    search = RadiusConfig(bisection_steps=args.bisection_steps)
    plans = [("certrnn", "last word", args.samples), ("certrnn", "all words", args.samples),
             ("popqorn", "last word", args.popqorn_samples), ("popqorn", "all words", args.popqorn_all_samples)]
    for method, perturb, n in plans:  # one stage over every task before the next (slow ones last)
        for task in tasks:
            if n < 1:
                continue
            path = ensure_model(task, data)
            graph, x, y, lengths, _, idx, meta = sentences(task, path, data, max(args.samples, n))
            x, y, lengths = x[:n], y[:n], lengths[:n]
            T = int(meta["max_len"])
            fr, _ = word_frames(lengths, T, [-1] if perturb == "last word" else None)
            frames = [tuple(int(f) for f in row if f >= 0) for row in fr.tolist()]
            cfg = CertifyConfig(method=method, norm="2")
            t0 = time.perf_counter()
            s = summarize_model(graph, x, y, frames, cfg, search, args.eps)
            rec = {"kind": "radius", "task": task, "method": method, "perturb": perturb, "sentences": n,
                   "test_indices": idx[:n], "correct": s.correct, "clean_accuracy": s.clean_accuracy,
                   "certified_accuracy": {str(e): a for e, a in s.certified_accuracy.items()},
                   "mean_certified_radius_correct": s.mean_certified_radius_correct,
                   "seconds_per_sentence": (time.perf_counter() - t0) / n, "model_test_accuracy": meta["test_accuracy"],
                   "bisection_steps": args.bisection_steps, "threads": args.threads, "norm": "2"}
            append_jsonl(JSONL, rec)
            print(f"{task} {method} {perturb}: {n} sentences, {s.correct} correct, radius "
                  f"{s.mean_certified_radius_correct}, {rec['seconds_per_sentence']:.1f} s/sentence", flush=True)
    for task in tasks:
        if args.word_sentences < 1:
            break
        graph, x, y, lengths, _, idx, meta = sentences(task, ensure_model(task, data), data, args.word_sentences)
        t0 = time.perf_counter()
        ws = word_sensitivity(graph, x, lengths, y, CertifyConfig(method="certrnn", norm="2"), search)
        ag = ranking_agreement(ws)
        rec = {"kind": "words", "task": task, "method": "certrnn", "sentences": len(idx), "correct": int(ws.correct.sum()),
               "pairs": int(lengths.sum()), "mean_spearman": ag["mean_spearman"], "top1_agreement": ag["top1_agreement"],
               "seconds_per_word": (time.perf_counter() - t0) / int(lengths.sum()),
               "bisection_steps": args.bisection_steps, "threads": args.threads}
        append_jsonl(JSONL, rec)
        print(f"{task} words: spearman {ag['mean_spearman']:.3f}, top-1 {ag['top1_agreement']:.3f}, "
              f"{rec['seconds_per_word']:.2f} s/word", flush=True)
    write_md()
    return 0


def write_md() -> None:
    recs = read_jsonl(JSONL)
    rad = [r for r in recs if r["kind"] == "radius"]
    eps = sorted({e for r in rad for e in r["certified_accuracy"]}, key=float)
    cols = ["task", "model test acc", "method", "perturbed", "sentences (correct)", "clean acc"] + \
        [f"cert acc @{e}" for e in eps] + ["mean cert radius (correct)", "s / sentence"]
    rows = [[r["task"], r["model_test_accuracy"], r["method"], r["perturb"], f"{r['sentences']} ({r['correct']})",
             r["clean_accuracy"]] + [r["certified_accuracy"].get(e) for e in eps] +
            [r["mean_certified_radius_correct"], r["seconds_per_sentence"]] for r in rad]
    words = [r for r in recs if r["kind"] == "words"]
    wcols = ["task", "sentences (correct)", "(sentence, word) pairs", "mean Spearman rho", "top-1 agreement",
             "s / word"]
    wrows = [[r["task"], f"{r['sentences']} ({r['correct']})", r["pairs"], r["mean_spearman"], r["top1_agreement"],
              r["seconds_per_word"]] for r in words]
    text = ("## Certified radius (L2, embedding space, untargeted)\n\n" + markdown_table(cols, rows) +
            "\n\n## Sensitive words: certified-radius ranking vs gradient saliency (certrnn)\n\n" +
            markdown_table(wcols, wrows) + "\n")
    (OUT / "text_tasks.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
