"""Issue 13's recurrent target: certnn `crown` against auto_LiRPA `CROWN` on the LSTM / GRU / RNN MNIST
classifiers of sshape_vs_autolirpa.py (certnn bounds the nn.LSTM / nn.GRU / nn.RNN module, auto_LiRPA its
explicitly unrolled twin: nn.Linear, torch.sigmoid / torch.tanh and products, the same weights, logits
checked equal to 1e-10). Target: certnn <= 1.0x auto_LiRPA's CPU time per sample at batch 1 and batch 100,
with bounds equal or tighter.

    # the full run (a quiet machine, one thread; ~10 min CPU):
    PYTHONPATH=src /work/peers/venv/bin/python benchmarks/recurrent_speed.py --label "$(git rev-parse --short HEAD)"
    # a smoke run (seconds per model):
    PYTHONPATH=src /work/peers/venv/bin/python benchmarks/recurrent_speed.py --samples 10 --batch1 2 \\
        --label smoke --jsonl /tmp/r.jsonl --md /tmp/r.md
    # only rewrite the Markdown from the JSONL:
    PYTHONPATH=src python benchmarks/recurrent_speed.py --table-only

`python` must have auto_LiRPA (the peer venv /work/peers/venv/bin/python); it is imported by this script only.

Protocol. Each model runs in its own child process (glibc's raised malloc thresholds, as the certnn CLI
sets them), `--threads` threads (default 1), float64 for both (auto_LiRPA built and run with the default
dtype float64), lower bounds only (auto_LiRPA `bound_upper=False`, no_grad; certnn
`bounds_for_spec(..., lower=True, upper=False)`), CPU time (time.process_time) around each call. Same
inputs (the first N MNIST test images as 4 frames of 196 pixels), the same L_inf ball (eps of the model,
no clip) and the same margin spec C (rows e_y - e_j, j != y, y the model's prediction). Batch N: the N
samples in calls of `--batch` samples, interleaved per call (certnn, auto_LiRPA), `--repeats` passes, the
least total kept. Batch 1: the first K (`--batch1`) samples one at a time, interleaved. One untimed sample
through both first.

Bounds: d = certnn - auto_LiRPA per margin (positive: certnn tighter): mean, worst, share >= -1e-9; pgd slack:
the smallest margin PGD finds in the ball minus certnn's bound (negative would be an unsound bound);
b1 gap: the largest |batch-1 bound - batch-N bound| of certnn (batch independence).

Written: benchmarks/out/recurrent_speed.jsonl (one record per model and run) and .md (latest per model and
label). Ratios are certnn / auto_LiRPA (< 1: certnn faster).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import alpha_vs_autolirpa as ava  # noqa: E402  (imports auto_LiRPA or exits with how to get it)
import sshape_vs_autolirpa as sshape  # noqa: E402
from common import (OUT, chosen_models, markdown_table, peak_rss_mb, peer_parser, read_jsonl,  # noqa: E402
                    record_models, run_child, stamp)

import certnn  # noqa: E402
from certnn.certify.bounds import bounds_for_spec, make_spec  # noqa: E402

JSONL = OUT / "recurrent_speed.jsonl"
MD = OUT / "recurrent_speed.md"
MODELS = {"lstm-1-32": 0.008, "gru-1-32": 0.01, "rnn-2-32": 0.008}  # name: L_inf eps


def certnn_lower(graph, x, eps: float, C, method: str = "crown"):
    spec = make_spec(graph, x, eps, "inf", None)
    lo, _, _ = bounds_for_spec(graph, spec, method, C, lower=True, upper=False)
    return lo


def timed(fn):
    c0 = time.process_time()
    out = fn()
    return out, time.process_time() - c0


def batch_pass(fns: dict, x, C, size: int) -> tuple[dict, dict]:
    """CPU seconds of each fn over x in calls of `size` samples (interleaved per call), and the bounds."""
    t = {k: 0.0 for k in fns}
    lbs = {k: [] for k in fns}
    for sl in ava.chunks(len(x), size):
        for k, fn in fns.items():
            lb, dt = timed(lambda: fn(x[sl], C[sl]))
            t[k] += dt
            lbs[k].append(lb)
    return t, {k: torch.cat(v) for k, v in lbs.items()}


def run_model(a) -> dict:
    name, eps = a.model, MODELS[a.model]
    m, twin, x, _, _, _ = sshape.load(name, a.samples)
    with torch.no_grad():
        y = m(x).argmax(1)
    C = sshape.margin_spec(y)
    graph = certnn.from_torch(m, tuple(x.shape[1:]))
    bm = sshape.alirpa_module(twin, x)
    fns = {"certnn": lambda xs, Cs: certnn_lower(graph, xs, eps, Cs, a.method),
           "alirpa": lambda xs, Cs: ava.alirpa_lower(bm, xs, eps, Cs, None, "CROWN", torch.float64)}
    batch_pass(fns, x[:1], C[:1], 1)  # warm-up
    load0 = os.getloadavg()
    best, lbs = None, None
    for _ in range(a.repeats):
        t, lbs = batch_pass(fns, x, C, a.batch)
        best = t if best is None else {k: min(best[k], t[k]) for k in t}
    k = min(a.batch1, a.samples)
    t1, lb1 = batch_pass(fns, x[:k], C[:k], 1)
    d = lbs["certnn"] - lbs["alirpa"]
    n = len(x)
    rec = {"model": name, "eps": eps, "samples": n, "batch": a.batch, "batch1_samples": k, "method": a.method,
           "repeats": a.repeats, "dtype": "float64 (both)",
           "certnn_mean_lb": float(lbs["certnn"].mean()), "alirpa_mean_lb": float(lbs["alirpa"].mean()),
           "diff_mean": float(d.mean()), "diff_worst": float(d.min()),
           "frac_certnn_ge": float((d >= -1e-9).double().mean()),
           "b1_gap": float((lb1["certnn"] - lbs["certnn"][:k]).abs().max()) if k else None,
           "cpu_s_per_sample": {"certnn_bN": best["certnn"] / n, "alirpa_bN": best["alirpa"] / n,
                                "certnn_b1": t1["certnn"] / max(k, 1), "alirpa_b1": t1["alirpa"] / max(k, 1)}}
    if a.pgd_steps:
        pm = ava.pgd_margin_min(m, x, C, eps, None, a.pgd_steps)
        rec["pgd_slack"] = float((pm - lbs["certnn"]).min())
    rec.update({"loadavg_before": list(load0), "loadavg_after": list(os.getloadavg()), "peak_rss_mb": peak_rss_mb()})
    return rec


def write_table(jsonl: Path, md: Path) -> str:
    latest = {}
    for r in read_jsonl(jsonl):
        latest[(r["model"], r["label"])] = r
    cols = ["model", "label", "n", "batch", "eps", "b1 certnn", "b1 aL", "b1 ratio", "bN certnn", "bN aL",
            "bN ratio", "mean lb certnn", "mean lb aL", "d mean", "d worst", "certnn >= aL", "pgd slack",
            "b1 gap", "threads", "load"]
    rows = []
    for (model, label), r in sorted(latest.items()):
        t = r["cpu_s_per_sample"]
        rows.append([model, label, r["samples"], r["batch"], r["eps"], t["certnn_b1"], t["alirpa_b1"],
                     t["certnn_b1"] / t["alirpa_b1"], t["certnn_bN"], t["alirpa_bN"], t["certnn_bN"] / t["alirpa_bN"],
                     r["certnn_mean_lb"], r["alirpa_mean_lb"], r["diff_mean"], r["diff_worst"],
                     f"{100 * r['frac_certnn_ge']:.0f}%", r.get("pgd_slack"), r.get("b1_gap"), r["threads"],
                     f"{r['loadavg_before'][0]:.1f}/{r['loadavg_after'][0]:.1f}"])
    text = ("certnn crown vs auto_LiRPA CROWN on recurrent nets (certnn: the nn module; auto_LiRPA: the unrolled "
            "twin), CPU seconds per sample, float64, lower bounds; ratio = certnn / auto_LiRPA\n\n"
            + markdown_table(cols, rows) + "\n")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    return text


def main() -> None:
    p = peer_parser(__doc__, MODELS, JSONL, MD)
    p.set_defaults(models="lstm-1-32,gru-1-32")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--batch", type=int, default=100, help="samples per call of the batch-N pass")
    p.add_argument("--batch1", type=int, default=10, help="samples timed one at a time (K)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--method", default="crown", help="certnn's method (auto_LiRPA runs CROWN)")
    p.add_argument("--pgd-steps", type=int, default=20, help="PGD steps of the soundness check (0: none)")
    a = p.parse_args()
    if a.child:
        torch.set_num_threads(a.threads)
        print(json.dumps(stamp(run_model(a), a, getattr(ava.auto_LiRPA, "__version__", "?"))), flush=True)
        return
    names = chosen_models(p, a, MODELS)
    if not a.table_only:
        def one(name: str) -> dict:
            return run_child(Path(__file__).resolve(), [
                "--model", name, "--samples", str(a.samples), "--batch", str(a.batch), "--batch1", str(a.batch1),
                "--repeats", str(a.repeats), "--threads", str(a.threads), "--method", a.method,
                "--pgd-steps", str(a.pgd_steps), "--label", a.label])
        record_models(names, one, Path(a.jsonl), a.label)
    print(write_table(Path(a.jsonl), Path(a.md)))


if __name__ == "__main__":
    main()
