"""Issue 3 benchmark (CNN-Cert): certified radius of CNNs per model and method, conv form vs dense form.

    python benchmarks/cnn_mnist.py                 # the default matrix, 100 images
    python benchmarks/cnn_mnist.py --quick         # 10 images, a few models, L∞ and L2, random target
    python benchmarks/cnn_mnist.py --speed-only    # only the conv-vs-dense speed / memory rows
    python benchmarks/cnn_mnist.py --models cnn4_5_relu --methods cnncert,attack --norms inf --targets random

Protocol (CNN-Cert paper): MNIST inputs scaled to [-0.5, 0.5], ball not clipped, the first N correctly
classified test images among 0-999, a random target class (seed 0) and untargeted, L∞/L2/L1, certified
radius by bracketing + bisection in log space (certnn.Certifier.radius). The CIFAR ConvSmall nets of
../shared/data/models take [0, 1] pixels normalised inside the model; their ball is in [0, 1]-pixel units,
not clipped, on the first correctly classified CIFAR-10 test images of cifar10_test_first100_eran.npz.
"dense" runs the same engine on `certnn.graph.passes.unroll_convs(graph)` (every conv / pool unrolled
into its Jacobian), so both forms must give the same radius.

Speed / memory rows (random weights, not trained: only the bound computation is timed): a CIFAR-sized
(3x32x32) 7-layer CNN with 5 filters (6 convs 3x3 + linear), one CNN-Cert bound computation per form;
and a 4-block ResNet with batch norm on 3x32x32 (conv form only: its dense form would need several GB of
Jacobians). Each configuration runs in a subprocess, so 'peak MB' is that run's peak resident memory.
Models are trained briefly (few epochs, 1 thread) on the 5k MNIST subset + test images 5,000-9,999 and
cached in benchmarks/out/models. Writes benchmarks/out/cnn_mnist.jsonl and benchmarks/out/cnn_mnist.md.
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
from common import attack_radius_record, certified_radius_record, OUT, SHARED, append_jsonl, markdown_table, peak_rss_mb, read_jsonl, matrix_parser, run_child  # noqa: E402


class Atan(nn.Module):
    def forward(self, x):
        return torch.atan(x)


ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "arctan": Atan}


class ResBlock(nn.Module):
    """act(x + bn(conv(act(bn(conv(x))))))"""

    def __init__(self, c: int, act: str):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.a1, self.a2 = ACTS[act](), ACTS[act]()

    def forward(self, x):
        return self.a2(x + self.b2(self.c2(self.a1(self.b1(self.c1(x))))))


def pure_cnn(layers: int, filters: int, act: str, cin: int = 1, side: int = 28, classes: int = 10) -> nn.Sequential:
    """CNN-Cert's pure CNNs: (layers - 1) convs 3x3 with `filters` filters, no padding, then a linear."""
    mods: list[nn.Module] = []
    c, h = cin, side
    for _ in range(layers - 1):
        mods += [nn.Conv2d(c, filters, 3), ACTS[act]()]
        c, h = filters, h - 2
    mods += [nn.Flatten(), nn.Linear(c * h * h, classes)]
    return nn.Sequential(*mods)


def lenet(act: str) -> nn.Sequential:
    a = ACTS[act]
    return nn.Sequential(nn.Conv2d(1, 6, 5), a(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), a(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(256, 100), a(), nn.Linear(100, 10))


def resnet(blocks: int, act: str, cin: int = 1, side: int = 28, c: int = 8, classes: int = 10) -> nn.Sequential:
    """Stem conv (stride 2) + BN + act, `blocks` residual blocks with BN, global-free flatten + linear."""
    s = (side + 2 - 3) // 2 + 1
    return nn.Sequential(nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), ACTS[act](),
                         *[ResBlock(c, act) for _ in range(blocks)], nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(c * (s // 2) ** 2, classes))


MNIST_MODELS = {
    "cnn4_5_relu": lambda: pure_cnn(4, 5, "relu"),
    "cnn4_5_tanh": lambda: pure_cnn(4, 5, "tanh"),
    "cnn7_5_relu": lambda: pure_cnn(7, 5, "relu"),
    "cnn7_5_arctan": lambda: pure_cnn(7, 5, "arctan"),
    "lenet_relu": lambda: lenet("relu"),
    "lenet_sigmoid": lambda: lenet("sigmoid"),
    "resnet2_relu": lambda: resnet(2, "relu"),
    "resnet2_tanh": lambda: resnet(2, "tanh"),
}
CIFAR_MODELS = {
    "cifar_convsmall_relu": ("abcrown_eran/cifar_conv_small_pgd.pt", nn.ReLU),
    "cifar_convsmall_sigmoid": ("abcrown_misc/cifar_conv_small_sigmoid.pt", nn.Sigmoid),
}
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).reshape(3, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def cifar_convsmall(name: str) -> nn.Sequential:
    path, act = CIFAR_MODELS[name]
    net = nn.Sequential(nn.Conv2d(3, 16, 4, stride=2), act(), nn.Conv2d(16, 32, 4, stride=2), act(), nn.Flatten(),
                        nn.Linear(1152, 100), act(), nn.Linear(100, 10))
    net.load_state_dict(torch.load(SHARED / "models" / path, weights_only=True))
    return nn.Sequential(Normalize(CIFAR_MEAN, CIFAR_STD), net).eval()


def model_path(name: str) -> Path:
    return OUT / "models" / f"mnist_{name}.pt"


def ensure_model(name: str, epochs: int) -> dict:
    if name in CIFAR_MODELS:
        m = cifar_convsmall(name)
        x, y = load_cifar()
        return {"model": name, "test_acc": _acc(m, x, y), "train_s": None, "data": "cifar10 first 100"}
    from certnn.data.mnist import mnist_train_test
    from certnn.train.simple import train_classifier

    torch.set_num_threads(1)
    p = model_path(name)
    m = MNIST_MODELS[name]()
    xtr, ytr, xte, yte = mnist_train_test(SHARED)
    train_s = None
    if not p.is_file():
        t0 = time.time()
        train_classifier(m, xtr - 0.5, ytr, epochs=epochs, batch_size=128, lr=2e-3, seed=0)
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), p)
        train_s = time.time() - t0
    else:
        m.load_state_dict(torch.load(p, weights_only=True))
    return {"model": name, "test_acc": _acc(m.eval(), xte[:1000] - 0.5, yte[:1000]), "train_s": train_s,
            "data": "mnist test 0-999"}


def _acc(m, x, y) -> float:
    with torch.no_grad():
        return (m(x.float()).argmax(1) == y).double().mean().item()


def load_cifar() -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    d = np.load(SHARED / "cifar10" / "cifar10_test_first100_eran.npz")
    x = torch.as_tensor(d["x"]).permute(0, 3, 1, 2).double() / 255.0
    return x, torch.as_tensor(d["y"]).long()


def load_model_and_data(name: str):
    if name in CIFAR_MODELS:
        m = cifar_convsmall(name)
        x, y = load_cifar()
        return m.double(), x, y, (3, 32, 32)
    from certnn.data.mnist import load_mnist_test

    m = MNIST_MODELS[name]()
    m.load_state_dict(torch.load(model_path(name), weights_only=True))
    x, y = load_mnist_test(SHARED)
    return m.double().eval(), x[:1000].double() - 0.5, y[:1000].long(), (1, 28, 28)


def child_radius(a) -> dict:
    import certnn
    from certnn.attacks import PGDConfig, attack_radius
    from certnn.certify.targets import select_targets
    from certnn.graph.passes import unroll_convs

    m, x, y, shape = load_model_and_data(a.model)
    graph = certnn.from_torch(m, shape)
    with torch.no_grad():
        ok = graph.forward(x).argmax(1) == y
    idx = torch.nonzero(ok).flatten()[: a.samples]
    x, y = x[idx], y[idx]
    rec = {"model": a.model, "method": a.method, "norm": a.norm, "target": a.target, "form": a.form,
           "samples": len(y)}
    if a.form == "dense":
        graph = unroll_convs(graph)
    t0, c0 = time.perf_counter(), time.process_time()
    if a.method == "attack":
        with torch.no_grad():
            t = select_targets(graph.forward(x), y, a.target, seed=0)
        r = attack_radius(graph, x, y, a.norm, PGDConfig(steps=100, restarts=2, seed=0), target=t,
                          eps_max=10.0 if a.norm != "inf" else 1.0).radius
        rec.update(attack_radius_record(r))
    else:
        cfg = certnn.CertifyConfig(method=a.method, norm=a.norm, target=a.target, batch_size=a.batch_size)
        rec.update(certified_radius_record(graph, x, y, cfg, a.bisection_steps))
    rec["seconds_per_sample"] = (time.perf_counter() - t0) / len(y)
    rec["cpu_s_per_sample"] = (time.process_time() - c0) / len(y)
    return rec


def speed_graph(name: str):
    """Random-weight CIFAR-sized nets for the speed / memory rows (weights scaled so that a fair share of
    ReLUs is unstable at the benchmark eps)."""
    import certnn

    torch.manual_seed(0)
    if name == "cifar_cnn7_5_relu":
        m, shape = pure_cnn(7, 5, "relu", cin=3, side=32), (3, 32, 32)
    elif name == "cifar_resnet4_relu":
        m, shape = resnet(4, "relu", cin=3, side=32, c=8), (3, 32, 32)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    else:
        raise ValueError(name)
    return certnn.from_torch(m.double().eval(), shape), shape


def child_speed(a) -> dict:
    import certnn
    from certnn.certify.bounds import make_spec
    from certnn.certify.targets import margin_matrix
    from certnn.engine.backward import bound_output
    from certnn.engine.context import RunContext
    from certnn.graph.passes import unroll_convs

    graph, shape = speed_graph(a.model)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((a.samples,) + shape, generator=g, dtype=torch.float64) - 0.5
    t_unroll = 0.0
    if a.form == "dense":
        t0 = time.perf_counter()
        graph = unroll_convs(graph)
        t_unroll = time.perf_counter() - t0
    with torch.no_grad():
        y = graph.forward(x).argmax(1)
    C = margin_matrix(y, 10)
    spec = make_spec(graph, x, a.eps, a.norm)
    ctx = RunContext(graph, spec, certnn.get_method(a.method), patches=a.form != "conv-full")
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        lo, hi = bound_output(ctx, C, True, False)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"model": a.model, "method": a.method, "norm": a.norm, "eps": a.eps, "form": a.form,
            "samples": a.samples, "seconds_per_sample": sec / a.samples, "cpu_s_per_sample": cpu / a.samples,
            "unroll_s": t_unroll,
            "min_margin_lower": float(lo.min()), "mean_margin_lower": float(lo.mean())}


def child(a) -> None:
    torch.set_num_threads(a.threads)
    rec = child_speed(a) if a.kind == "speed" else child_radius(a)
    rec["peak_mb"] = peak_rss_mb()
    print(json.dumps(rec))


def main() -> None:
    p = matrix_parser(__doc__, models=",".join(list(MNIST_MODELS) + list(CIFAR_MODELS)),
                      methods="cnncert,crown,fastlin,ibp,attack", jsonl=str(OUT / "cnn_mnist.jsonl"),
                      quick_help="10 images, 8 models, cnncert/fastlin/ibp/attack, random target")
    p.add_argument("--kind", default="radius", help=argparse.SUPPRESS)
    p.add_argument("--target", default="random")
    p.add_argument("--form", default="conv", help="conv (patches), conv-full (full-size coefficients) or dense")
    p.add_argument("--eps", type=float, default=0.002)
    p.add_argument("--targets", default="random,untargeted")
    p.add_argument("--dense-models", default="cnn4_5_relu", help="models also certified in dense form")
    p.add_argument("--bisection-steps", type=int, default=8)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--speed-samples", type=int, default=1)
    p.add_argument("--speed-only", action="store_true")
    p.add_argument("--no-speed", action="store_true")
    a = p.parse_args()
    if a.child:
        child(a)
        return
    if a.quick:
        a.samples, a.targets, a.methods = 10, "random", "cnncert,fastlin,ibp,attack"
        a.models = ("cnn4_5_relu,cnn4_5_tanh,lenet_relu,lenet_sigmoid,resnet2_relu,resnet2_tanh,"
                    "cifar_convsmall_relu,cifar_convsmall_sigmoid")
        a.bisection_steps, a.batch_size = 6, 10
    jsonl = Path(a.jsonl)
    common = ["--threads", str(a.threads)]
    if not a.table_only and not a.speed_only:
        for name in a.models.split(","):
            info = ensure_model(name, a.epochs)
            print(f"model {name}: accuracy {info['test_acc']:.4f} on {info['data']}", flush=True)
            append_jsonl(jsonl, {"kind": "model", **info})
            for norm in a.norms.split(","):
                for target in a.targets.split(","):
                    forms = [(m, "conv") for m in a.methods.split(",")]
                    if name in a.dense_models.split(","):
                        forms.append(("cnncert", "dense"))
                    for method, form in forms:
                        args = ["--model", name, "--method", method, "--norm", norm, "--target", target,
                                "--form", form, "--samples", str(a.samples), "--bisection-steps",
                                str(a.bisection_steps), "--batch-size", str(a.batch_size), *common]
                        rec = run_child(Path(__file__), args)
                        rec["kind"] = "run"
                        append_jsonl(jsonl, rec)
                        print(rec, flush=True)
    if not a.table_only and not a.no_speed:
        speed = [("cifar_cnn7_5_relu", "cnncert", "inf", 0.002, "conv"),
                 ("cifar_cnn7_5_relu", "cnncert", "inf", 0.002, "conv-full"),
                 ("cifar_cnn7_5_relu", "cnncert", "inf", 0.002, "dense"),
                 ("cifar_cnn7_5_relu", "cnncert", "2", 0.1, "conv"), ("cifar_cnn7_5_relu", "cnncert", "2", 0.1, "dense"),
                 ("cifar_resnet4_relu", "cnncert", "inf", 0.001, "conv"),
                 ("cifar_resnet4_relu", "cnncert", "inf", 0.001, "conv-full")]
        for model, method, norm, eps, form in speed:
            args = ["--kind", "speed", "--model", model, "--method", method, "--norm", norm, "--eps", str(eps),
                    "--form", form, "--samples", str(a.speed_samples), *common]
            rec = run_child(Path(__file__), args)
            rec["kind"] = "speed"
            append_jsonl(jsonl, rec)
            print(rec, flush=True)
    write_table(jsonl, Path(str(jsonl).replace(".jsonl", ".md")))


def _form(r: dict) -> str:
    return {"dense": "dense (unrolled Jacobians)", "conv": "conv, patches",
            "conv-full": "conv, full-size coefficients"}.get(r["form"], r["form"])


def write_table(jsonl: Path, md: Path) -> None:
    recs = read_jsonl(jsonl)
    models = {r["model"]: r for r in recs if r.get("kind") == "model"}
    runs = {}
    for r in recs:
        if r.get("kind") == "run":
            runs[(r["model"], r["norm"], r["target"], r["method"], r.get("form", "conv"))] = r
    keys = sorted({k[:3] for k in runs})
    methods = ["cnncert", "crown", "fastlin", "ibp"]
    rows = []
    for k in keys:
        acc = models.get(k[0], {}).get("test_acc")
        n = next((runs[k + (m, "conv")]["samples"] for m in methods + ["attack"] if k + (m, "conv") in runs), None)
        row = [k[0], acc, "L" + k[1], k[2], n]
        for m in methods + ["attack"]:
            row.append(runs.get(k + (m, "conv"), {}).get("mean_radius"))
        row.append(runs.get(k + ("cnncert", "dense"), {}).get("mean_radius"))
        for m, f in (("cnncert", "conv"), ("fastlin", "conv"), ("cnncert", "dense")):
            r = runs.get(k + (m, f))
            row.append(r["seconds_per_sample"] if r else None)
            row.append(r.get("cpu_s_per_sample") if r else None)
        row.append(max([runs[k + (m, "conv")]["peak_mb"] for m in methods if k + (m, "conv") in runs], default=None))
        row.append(runs.get(k + ("cnncert", "dense"), {}).get("peak_mb"))
        rows.append(row)
    cols = ["model", "clean acc", "norm", "target", "n", "CNN-Cert", "CROWN", "Fast-Lin", "IBP", "attack (upper)",
            "CNN-Cert dense", "CNN-Cert s/sample", "(CPU)", "Fast-Lin s/sample", "(CPU)", "dense s/sample", "(CPU)",
            "peak MB", "dense peak MB"]
    speed = [r for r in recs if r.get("kind") == "speed"]
    srows = [[r["model"], r["method"], _form(r), "L" + r["norm"], r["eps"], r["samples"], r["seconds_per_sample"],
              r.get("cpu_s_per_sample"), r.get("unroll_s"), r["mean_margin_lower"], r["peak_mb"]] for r in speed]
    scols = ["model (random weights)", "method", "form", "norm", "eps", "n", "wall s/sample", "CPU s/sample",
             "unroll s", "mean margin lower bound", "peak MB"]
    md.write_text("Mean certified radius (lower bounds) and mean attack radius (upper bound)\n\n"
                  + markdown_table(cols, rows) + "\n\nConv form vs dense form: one CNN-Cert bound computation\n\n"
                  + markdown_table(scols, srows) + "\n")
    print(md.read_text())


if __name__ == "__main__":
    main()
