"""Issue 4 benchmark: certified radius of recurrent MNIST classifiers (Cert-RNN / POPQORN models).

    python benchmarks/rnn_mnist.py                        # all models, 28 frames, 100 images, L_inf and L2
    python benchmarks/rnn_mnist.py --quick                # 7 frames, 10 images, RNN-2-32, LSTM-1-32, GRU-1-32
    python benchmarks/rnn_mnist.py --models RNN-2-32 --frames 7 --norms inf,2,1 --perturb -1
    python benchmarks/rnn_mnist.py --quick --norms 2,f2        # f2: an L2 ball per frame (POPQORN's threat model)

Protocol: MNIST pixels in [0, 1], read as T frames (rows reshaped, 784 / T pixels a frame); the ball is
not clipped (as in POPQORN and Cert-RNN); the first N correctly classified test images among 0-999;
untargeted (every other class must be beaten; margins bounded as differences by the engines' C spec).
`--perturb` chooses the perturbed frames (default all; e.g. -1 = only the last frame). A norm `fq` (f2, f1)
is the per-frame ball: every perturbed frame in its own Lq ball of radius eps, the frames independent
(L-inf across frames), as POPQORN defines its threat model; `2` is one joint L2 ball over all perturbed
frames. Models are trained
briefly (Adam, 1 thread) on the 5k MNIST subset + test images 5,000-9,999 and cached in
benchmarks/out/models. Methods not registered in this build (e.g. certrnn before the zonotope engine is
merged) are recorded as 'n/a'. 'attack' is PGD's radius (an upper bound). Each run is a subprocess;
records go to benchmarks/out/rnn_mnist.jsonl and the table to benchmarks/out/rnn_mnist.md (recorded in docs/benchmarks.md).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import attack_radius_record, certified_radius_record, OUT, REPO, SHARED, append_jsonl, markdown_table, peak_rss_mb, read_jsonl, matrix_parser, run_child  # noqa: E402
from rnn_models import MODELS, build  # noqa: E402


def model_path(name: str, frames: int) -> Path:
    return OUT / "models" / f"mnist_{name}_t{frames}.pt"


def as_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    return x.reshape(x.shape[0], frames, 784 // frames)


def ensure_model(name: str, frames: int, epochs: int) -> dict:
    from certnn.data.mnist import mnist_train_test
    from certnn.train.simple import accuracy, train_classifier

    torch.set_num_threads(1)
    p = model_path(name, frames)
    xtr, ytr, xte, yte = mnist_train_test(SHARED)
    m = build(name, frames)
    train_s = None
    if not p.is_file():
        t0 = time.time()
        train_classifier(m, as_frames(xtr, frames), ytr, epochs=epochs, batch_size=64, lr=3e-3, seed=0)
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), p)
        train_s = time.time() - t0
    else:
        m.load_state_dict(torch.load(p, weights_only=True))
    return {"model": name, "frames": frames, "test_acc_0_999": accuracy(m, as_frames(xte[:1000], frames), yte[:1000]),
            "train_s": train_s}


def child(a) -> None:
    import certnn
    from certnn.data.mnist import load_mnist_test
    from certnn.engine.methods import METHODS
    from certnn.specs.frames import frame_scale, parse_frames

    torch.set_num_threads(a.threads)
    rec = {"model": a.model, "frames": a.frames, "method": a.method, "norm": a.norm, "perturb": a.perturb}
    norm, frame_norm = ("inf", a.norm[1:]) if a.norm.startswith("f") else (a.norm, None)
    if a.method != "attack" and a.method not in METHODS:
        rec["mean_radius"] = None
        rec["note"] = "n/a (method not registered)"
        print(json.dumps(rec))
        return
    m = build(a.model, a.frames)
    m.load_state_dict(torch.load(model_path(a.model, a.frames), weights_only=True))
    m.eval()
    x, y = load_mnist_test(SHARED)
    x, y = as_frames(x[:1000].double(), a.frames), y[:1000]
    graph = certnn.from_torch(m, (a.frames, 784 // a.frames))
    with torch.no_grad():
        ok = graph.forward(x).argmax(1) == y
    idx = torch.nonzero(ok).flatten()[: a.samples]
    x, y = x[idx], y[idx]
    frames = parse_frames(a.perturb)
    scale = None if frames is None else frame_scale(graph.input_shape, frames)
    rec["samples"] = len(y)
    t0 = time.perf_counter()
    if a.method == "attack":
        from certnn.attacks import PGDConfig, attack_radius

        r = attack_radius(graph, x, y, norm, PGDConfig(steps=50, restarts=2, seed=0), scale=scale,
                          eps_max={"inf": 1.0, "2": 10.0, "1": 50.0}[frame_norm or norm],
                          frame_norm=frame_norm).radius
        rec.update(attack_radius_record(r))
    else:
        cfg = certnn.CertifyConfig(method=a.method, norm=norm, batch_size=a.batch_size, frames=frames,
                                   frame_norm=frame_norm)
        rec.update(certified_radius_record(graph, x, y, cfg, a.bisection_steps))
    rec["seconds_per_sample"] = (time.perf_counter() - t0) / len(y)
    rec["peak_mb"] = peak_rss_mb()
    print(json.dumps(rec))


def main() -> None:
    p = matrix_parser(__doc__, models=",".join(MODELS), methods="certrnn,popqorn,crown,ibp,attack",
                      jsonl=str(OUT / "rnn_mnist.jsonl"), batch_size=100,
                      quick_help="7 frames, 10 images, RNN-2-32, LSTM-1-32, GRU-1-32")
    p.add_argument("--frames", type=int, default=28, choices=[4, 7, 14, 28], help="frames per image")
    p.add_argument("--perturb", default="all", help="perturbed frames: all, or e.g. -1 or 0,3")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--bisection-steps", type=int, default=8)
    p.add_argument("--md", default=str(REPO / "benchmarks" / "out" / "rnn_mnist.md"))
    a = p.parse_args()
    if a.child:
        child(a)
        return
    if a.quick:
        a.frames, a.samples, a.models = 7, 10, "RNN-2-32,LSTM-1-32,GRU-1-32"
    jsonl = Path(a.jsonl)
    if not a.table_only:
        for name in a.models.split(","):
            info = ensure_model(name, a.frames, a.epochs)
            print(f"model {name} ({a.frames} frames): test accuracy on 0-999 {info['test_acc_0_999']:.4f}", flush=True)
            append_jsonl(jsonl, {"kind": "model", **info})
            for norm in a.norms.split(","):
                for method in a.methods.split(","):
                    args = ["--model", name, "--frames", str(a.frames), "--method", method, "--norm", norm,
                            "--perturb", a.perturb, "--samples", str(a.samples), "--bisection-steps",
                            str(a.bisection_steps), "--batch-size", str(a.batch_size), "--threads", str(a.threads)]
                    rec = run_child(Path(__file__), args)
                    rec["kind"] = "run"
                    append_jsonl(jsonl, rec)
                    print(rec, flush=True)
    write_table(jsonl, Path(a.md))


def write_table(jsonl: Path, md: Path) -> None:
    recs = read_jsonl(jsonl)
    runs, accs = {}, {}
    for r in recs:
        if r.get("kind") == "run":
            runs[(r["model"], r["frames"], r.get("perturb", "all"), r["norm"], r["method"])] = r
        elif r.get("kind") == "model":
            accs[(r["model"], r["frames"])] = r["test_acc_0_999"]
    keys = sorted({k[:4] for k in runs}, key=lambda k: (list(MODELS).index(k[0]) if k[0] in MODELS else 99, *k[1:]))
    methods = ["certrnn", "popqorn", "crown", "ibp"]
    rows = []
    for k in keys:
        got = {m: runs.get(k + (m,)) for m in methods + ["attack"]}
        n = next((g.get("samples") for g in got.values() if g and g.get("samples")), None)
        row = [k[0], k[1], k[2], (f"L{k[3][1:]} per frame" if k[3].startswith("f") else "L" + k[3]),
               accs.get(k[:2]), n]
        for m in methods + ["attack"]:
            g = got[m]
            row.append("not run" if g is None else ("n/a" if g.get("mean_radius") is None else g["mean_radius"]))
        c, pq = got["certrnn"], got["popqorn"]
        ratio = (c["mean_radius"] / pq["mean_radius"] if c and pq and c.get("mean_radius") is not None
                 and pq.get("mean_radius") else "n/a")
        row.append(ratio)
        for m in methods:
            g = got[m]
            row.append(g["seconds_per_sample"] if g and "seconds_per_sample" in g else ("not run" if g is None else "n/a"))
        rows.append(row)
    cols = ["model", "T", "frames perturbed", "norm", "test acc", "n", "certrnn", "popqorn", "crown", "ibp",
            "attack (upper)", "certrnn/popqorn"] + [f"{m} s/sample" for m in methods]
    notes = sorted({f"{r['method']}: {r['code']}" for r in runs.values() if r.get("code")})
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("# Recurrent MNIST benchmark (issue 4)\n\nGenerated by `python benchmarks/rnn_mnist.py` "
                  "(see its docstring for the protocol). Mean certified radius (a proved lower bound) over the "
                  "correctly classified images; 'attack (upper)' is the mean PGD radius (an upper bound); "
                  "'n/a': method not registered in the measured build; 'not run': skipped for time. "
                  "Seconds per sample cover the whole radius search (bracketing + bisection, each step one "
                  "batched bound computation), on a shared 2-core CPU, 1 thread.\n\n"
                  + markdown_table(cols, rows) + "\n"
                  + ("\nMeasured with other code: " + "; ".join(notes) + "\n" if notes else ""))
    print(md.read_text())


if __name__ == "__main__":
    main()
