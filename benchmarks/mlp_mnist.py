"""Issue 2 benchmark: certified radius of MNIST MLPs (CROWN paper shapes) per method, norm and target.

    python benchmarks/mlp_mnist.py                       # the default matrix, 100 images
    python benchmarks/mlp_mnist.py --quick               # 20 images, fewer configurations
    python benchmarks/mlp_mnist.py --models 3x1024_relu --methods crown,fastlin --norms inf --targets top2

Protocol (CROWN / Fast-Lin papers): inputs scaled to [-0.5, 0.5], ball not clipped, the first N correctly
classified test images among 0-999, targets runner-up (top2), random, least likely, and untargeted. With
--clip the [0, 1]-pixel convention other tools use (inputs in [0, 1], ball clipped to [0, 1]) is used.
Each configuration runs in a subprocess, so 'peak MB' is that run's peak resident memory. Models are
trained on the 5k MNIST subset + test images 5,000-9,999 and cached in benchmarks/out/models.
Writes benchmarks/out/mlp_mnist.jsonl (one record per run) and benchmarks/out/mlp_mnist.md (the table).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import attack_radius_record, certified_radius_record, OUT, SHARED, append_jsonl, markdown_table, peak_rss_mb, read_jsonl, matrix_parser, run_child  # noqa: E402

MODELS = {  # name: (hidden sizes, activation)
    "6x100_relu": ([100] * 6, "relu"),
    "9x200_relu": ([200] * 9, "relu"),  # alpha-CROWN paper shape (benchmarks/alpha_vs_autolirpa.py)
    "3x1024_relu": ([1024] * 3, "relu"),
    "4x1024_relu": ([1024] * 4, "relu"),
    "3x1024_tanh": ([1024] * 3, "tanh"),
    "3x1024_sigmoid": ([1024] * 3, "sigmoid"),
    "3x1024_arctan": ([1024] * 3, "arctan"),
}


class Atan(torch.nn.Module):
    def forward(self, x):
        return torch.atan(x)


def build(name: str) -> torch.nn.Sequential:
    from certnn.train.simple import mlp

    hidden, act = MODELS[name]
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "arctan": Atan}
    return torch.nn.Sequential(torch.nn.Flatten(), mlp([784, *hidden, 10], acts[act]))


def model_path(name: str) -> Path:
    return OUT / "models" / f"mnist_{name}.pt"


def ensure_model(name: str) -> dict:
    from certnn.data.mnist import mnist_train_test
    from certnn.train.simple import accuracy, train_classifier

    p = model_path(name)
    xtr, ytr, xte, yte = mnist_train_test(SHARED)
    m = build(name)
    if not p.is_file():
        t0 = time.time()
        train_classifier(m, xtr - 0.5, ytr, epochs=20, batch_size=128, lr=1e-3, seed=0)
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), p)
        train_s = time.time() - t0
    else:
        m.load_state_dict(torch.load(p, weights_only=True))
        train_s = None
    return {"model": name, "test_acc_0_999": accuracy(m, xte[:1000] - 0.5, yte[:1000]), "train_s": train_s}


def trained(name: str) -> torch.nn.Sequential:
    """The trained model `name` in eval mode (trained and cached on first use), as saved (float32)."""
    ensure_model(name)
    m = build(name)
    m.load_state_dict(torch.load(model_path(name), weights_only=True))
    return m.eval()


def child(a) -> None:
    import certnn
    from certnn.attacks import PGDConfig, attack_radius
    from certnn.data.mnist import load_mnist_test

    torch.set_num_threads(a.threads)
    m = build(a.model)
    m.load_state_dict(torch.load(model_path(a.model), weights_only=True))
    m.eval()
    x, y = load_mnist_test(SHARED)
    x, y = x[:1000].double(), y[:1000]
    clip = (0.0, 1.0) if a.clip else None
    if not a.clip:
        x = x - 0.5
    graph = certnn.from_torch(m, (1, 28, 28))
    with torch.no_grad():
        ok = graph.forward(x).argmax(1) == y
    idx = torch.nonzero(ok).flatten()[: a.samples]
    x, y = x[idx], y[idx]
    rec = {"model": a.model, "method": a.method, "norm": a.norm, "target": a.target, "clip": a.clip,
           "samples": len(y)}
    t0 = time.perf_counter()
    if a.method == "attack":
        from certnn.certify.targets import select_targets

        with torch.no_grad():
            t = select_targets(graph.forward(x), y, a.target, seed=0)
        r = attack_radius(graph, x, y, a.norm, PGDConfig(steps=100, restarts=3, seed=0), target=t, clip=clip,
                          eps_max=10.0 if a.norm != "inf" else 1.0).radius
        rec.update(attack_radius_record(r))
    else:
        cfg = certnn.CertifyConfig(method=a.method, norm=a.norm, target=a.target, clip=clip, batch_size=a.batch_size)
        rec.update(certified_radius_record(graph, x, y, cfg, a.bisection_steps))
    rec["seconds_per_sample"] = (time.perf_counter() - t0) / len(y)
    rec["peak_mb"] = peak_rss_mb()
    print(__import__("json").dumps(rec))


def main() -> None:
    default_models = ",".join(m for m in MODELS if m != "9x200_relu")  # 9x200: alpha_vs_autolirpa.py only
    p = matrix_parser(__doc__, models=default_models, methods="crown,fastlin,ibp,lipschitz,attack",
                      jsonl=str(OUT / "mlp_mnist.jsonl"), threads=2,
                      quick_help="20 images, models 6x100_relu and 3x1024_relu, top2")
    p.add_argument("--target")
    p.add_argument("--targets", default="top2,random,least,untargeted")
    p.add_argument("--bisection-steps", type=int, default=8)
    p.add_argument("--clip", action="store_true", help="[0,1] inputs with the ball clipped to [0,1]")
    a = p.parse_args()
    if a.child:
        child(a)
        return
    if a.quick:
        a.samples, a.models, a.targets = 20, "6x100_relu,3x1024_relu", "top2"
    jsonl = Path(a.jsonl)
    if not a.table_only:
        for name in a.models.split(","):
            info = ensure_model(name)
            print(f"model {name}: test accuracy on 0-999 {info['test_acc_0_999']:.4f}", flush=True)
            append_jsonl(jsonl, {"kind": "model", **info})
            for norm in a.norms.split(","):
                for target in a.targets.split(","):
                    for method in a.methods.split(","):
                        args = ["--model", name, "--method", method, "--norm", norm, "--target", target,
                                "--samples", str(a.samples), "--bisection-steps", str(a.bisection_steps),
                                "--batch-size", str(a.batch_size), "--threads", str(a.threads)]
                        if a.clip:
                            args.append("--clip")
                        rec = run_child(Path(__file__), args)
                        rec["kind"] = "run"
                        append_jsonl(jsonl, rec)
                        print(rec, flush=True)
    write_table(jsonl, Path(str(jsonl).replace(".jsonl", ".md")))


def write_table(jsonl: Path, md: Path) -> None:
    recs = read_jsonl(jsonl)
    runs = {}
    for r in recs:
        if r.get("kind") == "run":
            runs[(r["model"], r["norm"], r["target"], r.get("clip", False), r["method"])] = r
    keys = sorted({k[:4] for k in runs})
    methods = ["crown", "fastlin", "ibp", "lipschitz"]
    rows = []
    for k in keys:
        row = [k[0], "L" + k[1], k[2] + (" (clip)" if k[3] else ""), runs.get(k + ("crown",), {}).get("samples")]
        for m in methods + ["attack"]:
            row.append(runs.get(k + (m,), {}).get("mean_radius"))
        c, f = runs.get(k + ("crown",)), runs.get(k + ("fastlin",))
        row.append(c["mean_radius"] / f["mean_radius"] if c and f and f["mean_radius"] > 0 else None)
        for m in ("crown", "fastlin"):
            r = runs.get(k + (m,))
            row.append(r["seconds_per_sample"] if r else None)
        row.append(max([runs[k + (m,)]["peak_mb"] for m in methods if k + (m,) in runs], default=None))
        rows.append(row)
    cols = ["model", "norm", "target", "n", "CROWN", "Fast-Lin", "IBP", "Lipschitz", "attack (upper)",
            "CROWN/Fast-Lin", "CROWN s/sample", "Fast-Lin s/sample", "peak MB"]
    md.write_text("Mean certified radius (lower bounds) and mean attack radius (upper bound)\n\n"
                  + markdown_table(cols, rows) + "\n")
    print(md.read_text())


if __name__ == "__main__":
    main()
