"""Issue 12, part 1: certnn's non-optimised lines for S-shaped activations against auto_LiRPA's CROWN.

    PYTHONPATH=src python benchmarks/sshape_vs_autolirpa.py --label after     # all models (~6 min, 1 thread)
    PYTHONPATH=src python benchmarks/sshape_vs_autolirpa.py --models mlp-tanh,rnn-2-32 --method crown,popqorn
    # an older certnn: export its sources and point PYTHONPATH there
    mkdir /tmp/base && git archive 3cd25b2 src | tar -x -C /tmp/base
    PYTHONPATH=/tmp/base/src python benchmarks/sshape_vs_autolirpa.py --label before

(`python` is one with auto_LiRPA installed, e.g. the peer venv /work/peers/venv/bin/python.)

Needs the peer library auto_LiRPA in the same Python (it is never vendored into certnn): install it with
``pip install auto_LiRPA`` or from a clone, ``pip install -e path/to/auto_LiRPA``
(https://github.com/Verified-Intelligence/auto_LiRPA). certnn is whichever one is importable (set
PYTHONPATH=src to measure this checkout).

Both libraries run in this one process, in float64 (models `.double()`, inputs double; auto_LiRPA runs with
the default dtype set to float64), one thread. For each model the same inputs, the same ball and the same
margin spec C (rows e_y - e_j for all j != y) go to certnn's method (default `crown`) and auto_LiRPA's
`CROWN` (non-optimised; its defaults otherwise):

  * cifar-sigmoid: the pretrained sigmoid CIFAR ConvSmall of shared/data (normalisation inside the model),
    first N test images, L_inf eps 0.01 in [0, 1] pixel units, ball intersected with [0, 1]; margin bounds.
    auto_LiRPA runs its matrix conv mode (its patches mode fails on the normalisation layer here).
  * mlp-tanh, mlp-sigmoid: 784-100-100-10 MLPs trained 3 epochs (Adam) on the 5k MNIST subset + test images
    5,000-9,999, cached in benchmarks/out/models; first N MNIST test images, L_inf eps 0.02, no clip.
  * rnn-2-32, lstm-1-32, gru-1-32: nn.RNN (tanh) / nn.LSTM / nn.GRU classifiers over 4 frames of 196 pixels
    (rnn_models.py), trained likewise; auto_LiRPA gets an explicitly unrolled twin (nn.Linear + torch.tanh /
    torch.sigmoid and products, the same weights; logits checked equal to 1e-10); L_inf eps 0.008, no clip.

Reported per model: mean margin lower bound of each library, mean / worst / best of (certnn - auto_LiRPA)
over all margins (positive = certnn tighter), and for the small models (not CIFAR) the mean certified
L_inf radius of each library, found by the same batched search for both (doubling from 1e-3, then
`--bisection-steps` bisection steps; per-sample boxes). Records are appended to
benchmarks/out/sshape_vs_autolirpa.jsonl with the given --label; the table of the latest record per
(model, label) goes to benchmarks/out/sshape_vs_autolirpa.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, append_jsonl, markdown_table, read_jsonl  # noqa: E402
from rnn_models import build as build_rnn  # noqa: E402

try:
    import auto_LiRPA  # noqa: F401
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("benchmarks/sshape_vs_autolirpa.py needs auto_LiRPA in this Python: `pip install auto_LiRPA` or "
             "`pip install -e path/to/auto_LiRPA` (https://github.com/Verified-Intelligence/auto_LiRPA); "
             "certnn never vendors it.")

import certnn  # noqa: E402

MODELS = ("cifar-sigmoid", "mlp-tanh", "mlp-sigmoid", "rnn-2-32", "lstm-1-32", "gru-1-32")
FRAMES = 4
JSONL = OUT / "sshape_vs_autolirpa.jsonl"
MD = OUT / "sshape_vs_autolirpa.md"


# ----------------------------------------------------------------------------------------------- models
class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def cifar_sigmoid() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(3, 16, 4, 2), nn.Sigmoid(), nn.Conv2d(16, 32, 4, 2), nn.Sigmoid(), nn.Flatten(),
                        nn.Linear(1152, 100), nn.Sigmoid(), nn.Linear(100, 10))
    net.load_state_dict(torch.load(SHARED / "models/abcrown_misc/cifar_conv_small_sigmoid.pt", weights_only=True))
    return nn.Sequential(Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)), net)


def cifar_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = np.load(SHARED / "cifar10/cifar10_test_first100_eran.npz")
    x = torch.tensor(d["x"][:n]).permute(0, 3, 1, 2).double() / 255
    return x, torch.tensor(d["y"][:n]).long()


def _trained(name: str, make, shape_fn) -> nn.Module:
    """make() built with seed 0, trained 3 epochs on MNIST (inputs reshaped by shape_fn), cached."""
    from certnn.data.mnist import mnist_train_test
    from certnn.train.simple import train_classifier

    path = OUT / "models" / f"sshape_{name}.pt"
    torch.manual_seed(0)
    m = make()
    if path.is_file():
        m.load_state_dict(torch.load(path, weights_only=True))
    else:
        xtr, ytr, _, _ = mnist_train_test(SHARED)
        train_classifier(m, shape_fn(xtr), ytr, epochs=3, batch_size=64, lr=2e-3, seed=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), path)
    return m.eval()


def mlp(act: type[nn.Module]) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), act(), nn.Linear(100, 100), act(), nn.Linear(100, 10))


def as_frames(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], FRAMES, 784 // FRAMES)


class UnrolledRNN(nn.Module):
    """The twin of a batch_first multi-layer tanh nn.RNN + Linear head, written with nn.Linear and torch.tanh."""

    def __init__(self, m):
        super().__init__()
        r = m.rnn
        self.layers = r.num_layers
        self.ih = nn.ModuleList(); self.hh = nn.ModuleList()
        for k in range(r.num_layers):
            w_ih, w_hh = getattr(r, f"weight_ih_l{k}"), getattr(r, f"weight_hh_l{k}")
            b = getattr(r, f"bias_ih_l{k}") + getattr(r, f"bias_hh_l{k}")
            self.ih.append(_linear(w_ih, b)); self.hh.append(_linear(w_hh, None))
        self.fc = m.fc

    def forward(self, x):
        inp = [x[:, t, :] for t in range(x.shape[1])]
        for k in range(self.layers):
            h, out = None, []
            for xt in inp:
                pre = self.ih[k](xt) if h is None else self.ih[k](xt) + self.hh[k](h)
                h = torch.tanh(pre)
                out.append(h)
            inp = out
        return self.fc(inp[-1])


class UnrolledLSTM(nn.Module):
    """The twin of a 1-layer batch_first nn.LSTM + Linear head: gates by nn.Linear, torch.sigmoid / torch.tanh,
    c = f * c + i * g, h = o * tanh(c) (auto_LiRPA bounds each product as a Mul of the two outputs)."""

    def __init__(self, m):
        super().__init__()
        r = m.rnn
        self.H = r.hidden_size
        self.ih = _linear(r.weight_ih_l0, r.bias_ih_l0 + r.bias_hh_l0)
        self.hh = _linear(r.weight_hh_l0, None)
        self.fc = m.fc

    def forward(self, x):
        H, h, c = self.H, None, None
        for t in range(x.shape[1]):
            pre = self.ih(x[:, t, :]) if h is None else self.ih(x[:, t, :]) + self.hh(h)
            i, f = torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, H:2 * H])
            g, o = torch.tanh(pre[:, 2 * H:3 * H]), torch.sigmoid(pre[:, 3 * H:])
            c = i * g if c is None else f * c + i * g
            h = o * torch.tanh(c)
        return self.fc(h)


class UnrolledGRU(nn.Module):
    """The twin of a 1-layer batch_first nn.GRU + Linear head: r, z = sigmoid, n = tanh(x_n + r * (W_hn h + b_hn)),
    h = (1 - z) * n + z * h."""

    def __init__(self, m):
        super().__init__()
        r = m.rnn
        self.H = H = r.hidden_size
        b_hh = r.bias_hh_l0
        self.ih = _linear(r.weight_ih_l0, r.bias_ih_l0 + torch.cat([b_hh[:2 * H], torch.zeros_like(b_hh[2 * H:])]))
        self.hh = _linear(r.weight_hh_l0, torch.cat([torch.zeros_like(b_hh[:2 * H]), b_hh[2 * H:]]))
        self.fc = m.fc

    def forward(self, x):
        H, h = self.H, None
        for t in range(x.shape[1]):
            xp = self.ih(x[:, t, :])
            if h is None:
                hp = self.hh.bias.expand_as(xp)
                r, z = torch.sigmoid(xp[:, :H]), torch.sigmoid(xp[:, H:2 * H])
                n = torch.tanh(xp[:, 2 * H:] + r * hp[:, 2 * H:])
                h = (1 - z) * n
            else:
                hp = self.hh(h)
                r, z = torch.sigmoid(xp[:, :H] + hp[:, :H]), torch.sigmoid(xp[:, H:2 * H] + hp[:, H:2 * H])
                n = torch.tanh(xp[:, 2 * H:] + r * hp[:, 2 * H:])
                h = (1 - z) * n + z * h
        return self.fc(h)


def _linear(w: torch.Tensor, b: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
    with torch.no_grad():
        lin.weight.copy_(w)
        if b is not None:
            lin.bias.copy_(b)
    return lin


TWINS = {"RNN": UnrolledRNN, "LSTM": UnrolledLSTM, "GRU": UnrolledGRU}


def load(name: str, n: int):
    """(certnn model, auto_LiRPA model, x (n, ...), y, eps, clip), both models float64 in eval mode."""
    if name == "cifar-sigmoid":
        m = cifar_sigmoid().double().eval()
        x, y = cifar_data(n)
        return m, m, x, y, 0.01, (0.0, 1.0)
    from certnn.data.mnist import load_mnist_test

    xt, yt = load_mnist_test(SHARED)
    if name.startswith("mlp-"):
        act = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[name[4:]]
        m = _trained(name, lambda: mlp(act), lambda v: v).double()
        return m, m, xt[:n].double(), yt[:n], 0.02, None
    cell, layers, hidden = name.split("-")
    cell = cell.upper()
    m = _trained(f"{name}_t{FRAMES}", lambda: build_rnn(f"{cell}-{layers}-{hidden}", FRAMES), as_frames).double()
    twin = TWINS[cell](m).double().eval()
    x = as_frames(xt[:n].double())
    with torch.no_grad():
        gap = (m(x) - twin(x)).abs().max().item()
    if gap > 1e-10:
        raise RuntimeError(f"{name}: unrolled twin differs from the module by {gap}")
    return m, twin, x, yt[:n], 0.008, None


# ----------------------------------------------------------------------------------------------- bounds
def margin_spec(y: torch.Tensor, k: int = 10) -> torch.Tensor:
    """C (B, k-1, k) with rows e_y - e_j for all j != y."""
    eye = torch.eye(k, dtype=torch.float64)
    return torch.stack([eye[yi] - eye[[j for j in range(k) if j != yi]] for yi in y.tolist()])


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def certnn_lower(graph, x, eps: torch.Tensor, C, clip, method: str) -> torch.Tensor:
    return certnn.compute_bounds(graph, x, eps, "inf", method, C=C, clip=clip).lower


def alirpa_module(twin: nn.Module, x: torch.Tensor):
    opts = {"conv_mode": "matrix"} if x.ndim == 4 else {}
    with default_dtype(torch.float64):
        return BoundedModule(twin, torch.zeros_like(x[:1]), device="cpu", bound_opts=opts, verbose=0)


def alirpa_lower(bm, x, eps: torch.Tensor, C, clip) -> torch.Tensor:
    e = eps.view(-1, *([1] * (x.ndim - 1)))
    lo, hi = x - e, x + e
    if clip is not None:
        lo, hi = lo.clamp(min=clip[0]), hi.clamp(max=clip[1])
    ptb = PerturbationLpNorm(norm=float("inf"), x_L=lo, x_U=hi)
    with default_dtype(torch.float64), torch.no_grad():
        lb, _ = bm.compute_bounds(x=(BoundedTensor(x, ptb),), C=C, method="CROWN", bound_upper=False)
    return lb.detach()


def certified_radius(lower_fn, n: int, steps: int, start: float = 1e-3, cap: float = 1.0) -> torch.Tensor:
    """Per-sample largest eps with every margin lower bound > 0 found by the same search for any bound
    function lower_fn(eps (n,)) -> (n, S): doubling from `start` (halving while it fails), then bisection."""
    ok = lambda e: (lower_fn(e) > 0).all(1)  # noqa: E731
    lo = torch.zeros(n, dtype=torch.float64)
    hi = torch.full((n,), start, dtype=torch.float64)
    for _ in range(12):  # bracket: lo certified (or 0), hi not certified (or cap)
        good = ok(hi)
        lo = torch.where(good, hi, lo)
        hi = torch.where(good, torch.clamp(hi * 2, max=cap), hi)
        if not (good & (hi < cap)).any():
            break
    for _ in range(steps):
        mid = torch.where(lo > 0, (lo * hi).sqrt(), hi / 2)
        good = ok(mid)
        lo, hi = torch.where(good, mid, lo), torch.where(good, hi, mid)
    return lo


def run_model(name: str, n: int, methods: list[str], steps: int) -> list[dict]:
    """One record per certnn method: margin bounds at the model's eps and (not for CIFAR) radii, against
    auto_LiRPA's CROWN on the same inputs (computed once)."""
    m, twin, x, y, eps, clip = load(name, n)
    with torch.no_grad():
        correct = m(x).argmax(1) == y
    idx = torch.nonzero(correct).flatten()
    C = margin_spec(y)
    graph = certnn.from_torch(m, tuple(x.shape[1:]))
    bm = alirpa_module(twin, x)
    e = torch.full((n,), eps, dtype=torch.float64)
    t0 = time.perf_counter()
    lb_a = alirpa_lower(bm, x, e, C, clip)
    t_a = time.perf_counter() - t0
    r_a = None
    if name != "cifar-sigmoid" and steps > 0:
        r_a = certified_radius(lambda ev: alirpa_lower(bm, x[idx], ev, C[idx], clip), len(idx), steps)
    recs = []
    for method in methods:
        t0 = time.perf_counter()
        lb_c = certnn_lower(graph, x, e, C, clip, method)
        t_c = time.perf_counter() - t0
        d = lb_c - lb_a
        rec = {"model": name, "images": n, "eps": eps, "method": method, "certnn_mean_lb": float(lb_c.mean()),
               "alirpa_mean_lb": float(lb_a.mean()), "diff_mean": float(d.mean()), "diff_worst": float(d.min()),
               "diff_best": float(d.max()), "frac_certnn_ge": float((d >= -1e-9).double().mean()),
               "certnn_s": t_c, "alirpa_s": t_a, "dtype": "float64 (both)", "threads": torch.get_num_threads()}
        if r_a is not None:
            r_c = certified_radius(lambda ev: certnn_lower(graph, x[idx], ev, C[idx], clip, method), len(idx), steps)
            rec.update({"radius_samples": len(idx), "certnn_radius": float(r_c.mean()),
                        "alirpa_radius": float(r_a.mean()), "radius_ratio": float(r_c.mean() / r_a.mean())})
        recs.append(rec)
    return recs


# ----------------------------------------------------------------------------------------------- table
def write_table(jsonl: Path, md: Path) -> str:
    latest = {}
    for r in read_jsonl(jsonl):
        latest[(r["model"], r["label"], r["method"])] = r
    cols = ["model", "certnn", "method", "images", "eps", "mean lb certnn", "mean lb auto_LiRPA", "diff mean",
            "diff worst", "diff best", "certnn >= auto_LiRPA", "radius certnn", "radius auto_LiRPA", "radius ratio"]
    order = {m: i for i, m in enumerate(MODELS)}
    rows = []
    for (model, label, method), r in sorted(latest.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])):
        rows.append([model, label, method, r["images"], r["eps"], r["certnn_mean_lb"], r["alirpa_mean_lb"],
                     r["diff_mean"], r["diff_worst"], r["diff_best"], f"{100 * r['frac_certnn_ge']:.0f}%",
                     r.get("certnn_radius"), r.get("alirpa_radius"), r.get("radius_ratio")])
    text = markdown_table(cols, rows)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--method", default="crown", help="certnn methods, comma-separated (crown, popqorn, ...)")
    p.add_argument("--label", default="this checkout", help="name of the certnn version measured")
    p.add_argument("--bisection-steps", type=int, default=8, help="radius bisection steps (0: no radius)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jsonl", default=str(JSONL))
    p.add_argument("--md", default=str(MD))
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if not a.table_only:
        for name in a.models.split(","):
            for r in run_model(name, a.images, a.method.split(","), a.bisection_steps):
                rec = {"label": a.label, **r}
                append_jsonl(Path(a.jsonl), rec)
                print(json.dumps(rec), flush=True)
    print(write_table(Path(a.jsonl), Path(a.md)))


if __name__ == "__main__":
    main()
