"""Zonotope engine (certrnn, deepz) on MNIST sequence models: certified radius, seconds per sample, noise
symbols, and the effect of symbol consolidation; IBP (and CROWN where it runs) for reference.

    python benchmarks/zonotope_rnn_speed.py                 # default matrix, 30 images
    python benchmarks/zonotope_rnn_speed.py --quick         # 10 images, two models, L-inf only
    python benchmarks/zonotope_rnn_speed.py --models lstm-1-32-f7 --norms inf,2 --samples 100

MNIST images (in [0, 1], ball not clipped) are read as T frames of 784/T pixels. Models (small, trained
here for 3 epochs on the 5k subset + test images 5,000-9,999, cached in benchmarks/out/models) are named
kind-layers-hidden-fT. For each model and norm: the first N correctly classified test images among 0-199,
all frames perturbed ("all") and one frame perturbed ("one": frame T // 2); the radius search uses 8
bisection steps. Consolidation rows report the mean lower bound of the margins (untargeted) at a fixed eps
with a cap on the number of noise symbols per node (order reduction, sound) and the seconds per bound
computation. Each configuration runs in a subprocess ('peak MB' is its peak resident memory).
Writes benchmarks/out/zonotope_rnn_speed.jsonl and .md.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import attack_radius_record, certified_radius_record, OUT, SHARED, append_jsonl, markdown_table, peak_rss_mb, read_jsonl, matrix_parser, run_child  # noqa: E402

MODELS = ["rnn-2-32-f7", "lstm-1-32-f7", "gru-1-32-f7", "rnn-2-32-f28", "lstm-1-32-f28"]


class SeqNet(nn.Module):
    def __init__(self, kind: str, layers: int, hidden: int, frames: int):
        super().__init__()
        self.frames = frames
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = cls(784 // frames, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def parse(name: str) -> tuple[str, int, int, int]:
    kind, layers, hidden, f = name.split("-")
    return kind, int(layers), int(hidden), int(f[1:])


def ensure_model(name: str) -> tuple[SeqNet, dict]:
    from certnn.data.mnist import mnist_train_test
    from certnn.train.simple import accuracy, train_classifier

    kind, layers, hidden, T = parse(name)
    m = SeqNet(kind, layers, hidden, T)
    p = OUT / "models" / f"zono_{name}.pt"
    xtr, ytr, xte, yte = mnist_train_test(SHARED)
    info = {"model": name}
    if not p.is_file():
        t0 = time.time()
        train_classifier(m, xtr.reshape(-1, T, 784 // T), ytr, epochs=3, batch_size=128, lr=3e-3, seed=0)
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), p)
        info["train_s"] = time.time() - t0
    m.load_state_dict(torch.load(p, weights_only=True))
    info["test_acc_0_999"] = accuracy(m, xte[:1000].reshape(-1, T, 784 // T), yte[:1000])
    return m.double().eval(), info


def child(a) -> None:
    import certnn
    from certnn.certify.bounds import make_spec
    from certnn.certify.targets import margin_matrix
    from certnn.data.mnist import load_mnist_test
    from certnn.engine.context import RunContext
    from certnn.engine.zonotope import zonotope_bounds

    torch.set_num_threads(a.threads)
    kind, layers, hidden, T = parse(a.model)
    m = SeqNet(kind, layers, hidden, T)
    m.load_state_dict(torch.load(OUT / "models" / f"zono_{a.model}.pt", weights_only=True))
    m = m.double().eval()
    graph = certnn.from_torch(m, (T, 784 // T))
    x, y = load_mnist_test(SHARED)
    x, y = x[:200].reshape(-1, T, 784 // T).double(), y[:200]
    with torch.no_grad():
        ok = graph.forward(x).argmax(1) == y
    idx = torch.nonzero(ok).flatten()[: a.samples]
    x, y = x[idx], y[idx]
    scale = None
    if a.frames == "one":
        scale = torch.zeros(T, 784 // T, dtype=torch.float64)
        scale[T // 2] = 1.0
    rec = {"model": a.model, "method": a.method, "norm": a.norm, "frames": a.frames, "samples": len(y),
           "max_symbols": a.max_symbols}
    t0 = time.perf_counter()
    if a.max_symbols is not None or a.fixed_eps is not None:
        eps = a.fixed_eps
        spec = make_spec(graph, x, eps, a.norm, None, scale)
        ctx = RunContext(graph, spec, certnn.get_method(a.method))
        with torch.no_grad():
            lo, _ = zonotope_bounds(ctx, margin_matrix(y, 10), upper=False,
                                    max_symbols=None if a.max_symbols < 0 else a.max_symbols)
        rec.update(eps=eps, mean_margin_lower=float(lo.min(1).values.mean()),
                   certified=float((lo > 0).all(1).double().mean()), peak_symbols=ctx.timers["peak_symbols"],
                   seconds_per_eval=time.perf_counter() - t0)
    else:
        cfg = certnn.CertifyConfig(method=a.method, norm=a.norm, batch_size=a.batch_size)
        rec.update(certified_radius_record(graph, x, y, cfg, 8, scale=scale))
        rec["seconds_per_sample"] = (time.perf_counter() - t0) / len(y)
    rec["peak_mb"] = peak_rss_mb()
    print(json.dumps(rec))


def main() -> None:
    p = matrix_parser(__doc__, models=",".join(MODELS), methods="certrnn,deepz,ibp",
                      jsonl=str(OUT / "zonotope_rnn_speed.jsonl"), samples=30, batch_size=100)
    p.add_argument("--frames", default="all")
    p.add_argument("--max-symbols", type=int)
    p.add_argument("--fixed-eps", type=float)
    p.add_argument("--frame-modes", default="all,one")
    p.add_argument("--caps", default="-1,512,256,128", help="consolidation caps (-1: none); '' to skip")
    a = p.parse_args()
    if a.child:
        child(a)
        return
    if a.quick:
        a.samples, a.models, a.norms, a.caps = 10, "rnn-2-32-f7,lstm-1-32-f7", "inf", "-1,256"
    jsonl = Path(a.jsonl)
    if not a.table_only:
        for name in a.models.split(","):
            _, info = ensure_model(name)
            append_jsonl(jsonl, {"kind": "model", **info})
            print(info, flush=True)
            common = ["--model", name, "--samples", str(a.samples), "--batch-size", str(a.batch_size),
                      "--threads", str(a.threads)]
            for norm in a.norms.split(","):
                for frames in a.frame_modes.split(","):
                    for method in a.methods.split(","):
                        try:
                            rec = run_child(Path(__file__), common + ["--method", method, "--norm", norm,
                                                                      "--frames", frames])
                        except RuntimeError as exc:  # e.g. a method without rules for the fused products
                            print(f"{name} {norm} {frames} {method}: failed: {str(exc)[-300:]}", flush=True)
                            continue
                        append_jsonl(jsonl, {"kind": "radius", **rec})
                        print(rec, flush=True)
                eps = {"inf": 0.005, "2": 0.1, "1": 0.5}[norm]
                for cap in [c for c in a.caps.split(",") if c]:
                    rec = run_child(Path(__file__), common + ["--method", "certrnn", "--norm", norm,
                                                              "--max-symbols", cap, "--fixed-eps", str(eps)])
                    append_jsonl(jsonl, {"kind": "cap", **rec})
                    print(rec, flush=True)
    write_table(jsonl, Path(str(jsonl).replace(".jsonl", ".md")))


def write_table(jsonl: Path, md: Path) -> None:
    recs = read_jsonl(jsonl)
    acc = {r["model"]: r.get("test_acc_0_999") for r in recs if r.get("kind") == "model"}
    runs, caps = {}, {}
    for r in recs:
        if r.get("kind") == "radius":
            runs[(r["model"], r["norm"], r["frames"], r["method"])] = r
        elif r.get("kind") == "cap":
            caps[(r["model"], r["norm"], r["max_symbols"])] = r
    methods = ["certrnn", "deepz", "ibp", "crown"]
    rows = []
    for k in sorted({k[:3] for k in runs}):
        row = [k[0], acc.get(k[0]), "L" + k[1], k[2], next((runs[k + (m,)]["samples"] for m in methods
                                                             if k + (m,) in runs), None)]
        row += [runs.get(k + (m,), {}).get("mean_radius") for m in methods]
        row += [runs.get(k + (m,), {}).get("seconds_per_sample") for m in ("certrnn", "deepz")]
        row.append(max([runs[k + (m,)]["peak_mb"] for m in methods if k + (m,) in runs], default=None))
        rows.append(row)
    cols = ["model", "test acc", "norm", "frames", "n"] + [f"{m} radius" for m in methods] + \
           ["certrnn s/sample", "deepz s/sample", "peak MB"]
    crow = []
    for k in sorted(caps, key=lambda k: (k[0], k[1], -(k[2] if k[2] and k[2] > 0 else 10 ** 9))):
        r = caps[k]
        crow.append([k[0], "L" + k[1], r["eps"], "none" if (k[2] is None or k[2] < 0) else k[2],
                     r["peak_symbols"], r["mean_margin_lower"], r["certified"], r["seconds_per_eval"] / r["samples"],
                     r["peak_mb"]])
    ccols = ["model", "norm", "eps", "symbol cap", "peak symbols", "mean min margin lower", "certified",
             "s/sample (one bound)", "peak MB"]
    md.write_text("Certified radius (mean over correctly classified images; lower bounds)\n\n"
                  + markdown_table(cols, rows) + "\n\nSymbol consolidation (certrnn, all frames, fixed eps)\n\n"
                  + markdown_table(ccols, crow) + "\n")
    print(md.read_text())


if __name__ == "__main__":
    main()
