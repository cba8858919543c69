"""Issue 6 benchmark: verified robust training (IBP, CROWN-IBP, Cert-RNN) against natural training.

    python benchmarks/robust_training.py                    # the default matrix (~17 min, one shared core)
    python benchmarks/robust_training.py --quick            # tiny: 1k train images, 2 epochs, 50 test images
    python benchmarks/robust_training.py --runs mlp:natural,mlp:ibp --retrain
    python benchmarks/robust_training.py --table-only       # rebuild the table from the jsonl

Protocol: MNIST pixels in [0, 1]; training on the 5k MNIST subset (`mnist_train_test(...)[0][:5000]`,
sorted by class there; `--train-samples` below 5000 takes a seeded random part of it),
evaluation on test images 0..N-1. Every training run uses `certnn.train_robust` with the same optimiser
(Adam, lr, batch size, seed, epochs) per model; "natural" is the same loop with eps = 0 (clean loss
only), so the runs of one model share the budget and differ only in the loss. Robust runs: one clean
warm-up epoch, then eps ramps linearly 0 -> eps_train (L∞, ball clipped to [0, 1]) over `ramp` epochs,
kappa (clean-loss weight) 1 -> 0.5, CROWN-IBP's beta 1 -> 0 (Zhang et al.'s default).

Models: `mlp` 784-100-100-10 ReLU; `cnn` conv(16, 4x4, stride 2) - conv(32, 4x4, stride 2) - 100 - 10
ReLU (Wong & Kolter's small CNN); `rnn` / `lstm`: one layer of 32 units on the image read as 7 frames of
112 pixels, linear head on the last state (benchmarks/rnn_models.py). Trainings: natural, ibp, crown-ibp
(MLP, CNN), certrnn (RNN; on the LSTM it is differentiable too but costs ~3 s per batch of 64 on one
thread, see docs/training.md, so it is not in the default matrix).

Evaluation (all certificates from the float64 certification path `certnn.Certifier`, ball clipped to
[0, 1]): clean accuracy on N test images; certified accuracy at two eps by IBP and by the tighter method
of the architecture (CROWN for MLP / CNN, Cert-RNN for RNN / LSTM) on the first `--cert-samples` of them;
PGD accuracy at the larger eps (20 steps, 2 restarts; an upper bound on robust accuracy); mean certified
radius of the tighter method over the first `--radius-samples` test images (0 for misclassified ones).
Each run is a subprocess; models are cached in benchmarks/out/models (delete or --retrain to redo).
Writes benchmarks/out/robust_training.jsonl and benchmarks/out/robust_training.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, append_jsonl, markdown_table, peak_rss_mb, read_jsonl, run_child  # noqa: E402
from rnn_models import SeqClassifier  # noqa: E402

FRAMES = 7
#: model: (input shape, epochs, ramp epochs, batch size, lr, tighter certification method)
MODELS = {
    "mlp": ((1, 28, 28), 20, 10, 64, 1e-3, "crown"),
    "cnn": ((1, 28, 28), 12, 6, 64, 1e-3, "crown"),
    "rnn": ((FRAMES, 784 // FRAMES), 10, 5, 64, 3e-3, "certrnn"),
    "lstm": ((FRAMES, 784 // FRAMES), 12, 6, 64, 3e-3, "certrnn"),
}
DEFAULT_RUNS = ("mlp:natural,mlp:ibp,mlp:crown-ibp,cnn:natural,cnn:ibp,cnn:crown-ibp,"
                "rnn:natural,rnn:ibp,rnn:certrnn,lstm:natural,lstm:ibp")


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                             nn.Linear(100, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))
    cell = {"rnn": "RNN", "lstm": "LSTM"}[name]
    return SeqClassifier(cell, 1, 32, FRAMES)


def as_input(name: str, x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], *MODELS[name][0])


def paths(name: str, training: str, tag: str) -> tuple[Path, Path]:
    stem = OUT / "models" / f"robust_{name}_{training}{tag}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def train(a, name: str, training: str) -> tuple[nn.Module, dict]:
    import certnn
    from certnn.data.mnist import mnist_train_test

    shape, epochs, ramp, bs, lr, _ = MODELS[name]
    if a.epochs:
        epochs, ramp = a.epochs, max(0, min(ramp, a.epochs - 1))
    xtr, ytr, _, _ = mnist_train_test(SHARED)
    # the 5k subset is sorted by class: a smaller training set is a seeded random part of it
    idx = torch.randperm(5000, generator=torch.Generator().manual_seed(0))[: a.train_samples]
    x, y = as_input(name, xtr[idx].float()), ytr[idx]
    m = build(name)
    method = "ibp" if training == "natural" else training
    eps = 0.0 if training == "natural" else a.eps_train
    cfg = certnn.RobustTrainConfig(method=method, eps=eps, norm="inf", epochs=epochs, lr=lr, batch_size=bs,
                                   warmup_epochs=1 if ramp < epochs else 0, ramp_epochs=ramp, kappa_final=0.5,
                                   beta_final=0.0, seed=0, clip=(0.0, 1.0))

    def progress(k, n, rec):
        print(f"  {name}:{training} epoch {k}/{n} eps {rec.eps:.3f} clean acc {rec.clean_acc:.3f} "
              f"verified err {rec.verified_err} {rec.seconds:.1f}s", file=sys.stderr, flush=True)

    log = certnn.train_robust(m, x, y, shape, cfg, progress=progress)
    last = log.epochs[-1]
    info = {"train_s": log.seconds, "epochs": epochs, "ramp_epochs": ramp, "train_samples": int(x.shape[0]),
            "train_clean_acc": last.clean_acc, "train_verified_err": last.verified_err, "config": cfg.to_dict()}
    return m, info


def child(a) -> None:
    import certnn
    from certnn.attacks import PGDConfig, pgd_attack
    from certnn.data.mnist import mnist_train_test

    torch.set_num_threads(a.threads)
    name, training = a.run.split(":")
    pt, meta = paths(name, training, a.tag)
    if pt.is_file() and meta.is_file() and not a.retrain:
        m = build(name)
        m.load_state_dict(torch.load(pt, weights_only=True))
        info = json.loads(meta.read_text())
    else:
        m, info = train(a, name, training)
        pt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), pt)
        meta.write_text(json.dumps(info))
    m.eval()
    shape, tight = MODELS[name][0], MODELS[name][5]
    _, _, xte, yte = mnist_train_test(SHARED)
    x, y = as_input(name, xte[: a.samples].double()), yte[: a.samples]
    rec = {"kind": "run", "model": name, "training": training, "eps_train": 0.0 if training == "natural" else a.eps_train,
           "samples": int(y.shape[0]), **info}
    graph = certnn.from_torch(m, shape)  # float64, parity-checked
    with torch.no_grad():
        rec["clean_acc"] = (graph.forward(x).argmax(1) == y).double().mean().item()
    eps_list = [float(e) for e in a.eps_eval.split(",")]
    t0 = time.perf_counter()
    nc = min(a.cert_samples, a.samples)
    for method in ("ibp", tight):
        cert = certnn.Certifier(graph, certnn.CertifyConfig(method=method, norm="inf", clip=(0.0, 1.0),
                                                            batch_size=a.batch_size))
        for e in eps_list:
            t1 = time.perf_counter()
            r = cert.certify(x[:nc], y[:nc], e)
            rec[f"cert_{method}_{e:g}"] = r.certified.double().mean().item()
            rec[f"cert_{method}_{e:g}_s"] = time.perf_counter() - t1
    rec["cert_samples"] = nc
    e_max = max(eps_list)
    res = pgd_attack(m, x, y, e_max, "inf", PGDConfig(steps=20, restarts=2, seed=0), clip=(0.0, 1.0))
    with torch.no_grad():
        correct = graph.forward(x).argmax(1) == y
    rec[f"pgd_acc_{e_max:g}"] = (correct & ~res.success).double().mean().item()
    nr = min(a.radius_samples, a.samples)
    cert = certnn.Certifier(graph, certnn.CertifyConfig(method=tight, norm="inf", clip=(0.0, 1.0),
                                                        batch_size=a.batch_size))
    t1 = time.perf_counter()
    rad = cert.radius(x[:nr], y[:nr], certnn.RadiusConfig(eps_init=0.01, eps_max=1.0, bisection_steps=a.bisection_steps))
    rec["radius_method"], rec["radius_samples"] = tight, nr
    rec["mean_radius"] = float(rad.certified_radius.mean())
    rec["radius_s"] = time.perf_counter() - t1
    rec["eval_s"] = time.perf_counter() - t0
    rec["peak_mb"] = peak_rss_mb()
    print(json.dumps(rec))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run", help=argparse.SUPPRESS)
    p.add_argument("--runs", default=DEFAULT_RUNS, help="model:training pairs, comma separated")
    p.add_argument("--eps-train", type=float, default=0.1)
    p.add_argument("--eps-eval", default="0.05,0.1")
    p.add_argument("--train-samples", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=0, help="override every model's epochs (0: the table's)")
    p.add_argument("--samples", type=int, default=1000, help="test images for clean and PGD accuracy")
    p.add_argument("--cert-samples", type=int, default=500, help="test images certified at each eps")
    p.add_argument("--radius-samples", type=int, default=50)
    p.add_argument("--bisection-steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=100, help="certification batch size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--tag", default="", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="1k train images, 2 epochs, 50 test images")
    p.add_argument("--jsonl", default=str(OUT / "robust_training.jsonl"))
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.train_samples, a.epochs, a.samples, a.cert_samples, a.radius_samples, a.tag = 1000, 2, 50, 50, 10, "_quick"
        a.jsonl = str(OUT / "robust_training_quick.jsonl")
    if a.child:
        child(a)
        return
    jsonl = Path(a.jsonl)
    if not a.table_only:
        for run in a.runs.split(","):
            args = ["--run", run, "--eps-train", str(a.eps_train), "--eps-eval", a.eps_eval, "--train-samples",
                    str(a.train_samples), "--epochs", str(a.epochs), "--samples", str(a.samples), "--cert-samples",
                    str(a.cert_samples), "--radius-samples", str(a.radius_samples), "--bisection-steps",
                    str(a.bisection_steps), "--batch-size", str(a.batch_size), "--threads", str(a.threads),
                    "--tag", a.tag] + (["--retrain"] if a.retrain else [])
            t0 = time.time()
            rec = run_child(Path(__file__), args)
            rec["wall_s"] = time.time() - t0
            append_jsonl(jsonl, rec)
            print(json.dumps(rec), flush=True)
    write_table(jsonl, Path(str(jsonl).replace(".jsonl", ".md")), a.eps_eval)


def write_table(jsonl: Path, md: Path, eps_eval: str) -> None:
    runs = {}
    for r in read_jsonl(jsonl):
        if r.get("kind") == "run":
            runs[(r["model"], r["training"])] = r  # the last record of a run wins
    order = [tuple(s.split(":")) for s in DEFAULT_RUNS.split(",")]
    keys = [k for k in order if k in runs] + sorted(k for k in runs if k not in order)
    eps = [float(e) for e in eps_eval.split(",")]
    rows = []
    for k in keys:
        r = runs[k]
        tight = MODELS[k[0]][5]
        row = [k[0], k[1], r["eps_train"], r["epochs"], r["clean_acc"]]
        for method in ("ibp", tight):
            for e in eps:
                row.append(r.get(f"cert_{method}_{e:g}"))
        row += [r.get(f"pgd_acc_{max(eps):g}"), r.get("mean_radius"), r["radius_method"], r["train_s"], r.get("eval_s")]
        rows.append(row)
    cols = ["model", "training", "train eps", "epochs", "clean acc"]
    cols += [f"IBP cert @{e:g}" for e in eps] + [f"CROWN/Cert-RNN cert @{e:g}" for e in eps]
    cols += [f"PGD acc @{max(eps):g}", "mean cert radius", "radius by", "train s", "eval s"]
    first = next(iter(runs.values()), {})
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(
        "# Verified robust training (issue 6)\n\nGenerated by `python benchmarks/robust_training.py` (protocol in "
        f"its docstring). Clean and PGD accuracy on {first.get('samples')} test images, certified accuracy "
        f"(float64 certification, L∞ ball clipped to [0, 1]) on the first {first.get('cert_samples')}, mean "
        f"certified radius on the first {first.get('radius_samples')}; 'CROWN/Cert-RNN' is CROWN for the MLP and "
        "CNN, Cert-RNN for the recurrent nets. Train seconds on one thread of a shared 2-core CPU.\n\n"
        + markdown_table(cols, rows) + "\n")
    print(md.read_text())


if __name__ == "__main__":
    main()
