"""certnn's `alpha-crown` against auto_LiRPA's `CROWN-Optimized`, side by side: margin bounds, CPU time,
certified radius.

    # the full benchmark (a quiet machine; one thread; ~2.5 h CPU, peak ~13 GB in the cifar-sigmoid child):
    PYTHONPATH=src /work/peers/venv/bin/python benchmarks/alpha_vs_autolirpa.py --label "$(git rev-parse --short HEAD)"
    # a subset, or fewer samples:
    PYTHONPATH=src python benchmarks/alpha_vs_autolirpa.py --models 6x100_relu,9x200_relu --label after
    PYTHONPATH=src python benchmarks/alpha_vs_autolirpa.py --models mlp-tanh --samples 10 --batch1 2
    # a smoke run (seconds to a minute per model):
    PYTHONPATH=src python benchmarks/alpha_vs_autolirpa.py --models 6x100_relu --samples 2 --batch1 1 \\
        --iterations 3 --label smoke --jsonl /tmp/a.jsonl --md /tmp/a.md
    # only rewrite the Markdown from the JSONL:
    PYTHONPATH=src python benchmarks/alpha_vs_autolirpa.py --table-only

`python` must have auto_LiRPA (e.g. the peer venv /work/peers/venv/bin/python). It is imported by this script
only, never vendored into certnn: ``pip install auto_LiRPA`` or ``pip install -e path/to/auto_LiRPA``
(https://github.com/Verified-Intelligence/auto_LiRPA). certnn is whichever one is importable (PYTHONPATH=src:
this checkout).

Protocol. Each model runs in its own child process (its peak memory is its own; a crash or an out-of-memory
kill is recorded and the run goes on), with both libraries in that one process, interleaved: per call of at
most `batch` samples certnn `crown`, auto_LiRPA `CROWN`, certnn `alpha-crown`, auto_LiRPA `CROWN-Optimized`;
then the first K samples one at a time, certnn then auto_LiRPA. `--threads` threads (default 1); float64
(models `.double()`, inputs double, auto_LiRPA built and run with the default dtype set to float64); lower
bounds only for both (auto_LiRPA's CROWN-Optimized crashes in float64 when both sides are asked, so
`bound_upper=False`). Same inputs (the first N correctly classified test images), same L_inf ball, same
margin spec C (rows e_y - e_j for all j != y, untargeted). `--iterations` (default 20) for both, each
library's defaults otherwise: certnn `AlphaConfig(iterations=20)` (lr 0.5, decay 0.98, patience 20,
intermediate bounds optimised), auto_LiRPA's `optimize_bound_args` (lr_alpha 0.5, decay 0.98, early stop
after 10 stale iterations, best bounds kept from the second half of the iterations; without given
intermediate bounds it recomputes and optimises the intermediate bounds too, as certnn does). Before the
timed calls one sample goes through each optimiser (2 iterations, untimed). The child process gets glibc's
raised malloc thresholds (MALLOC_*_ env, as the certnn CLI sets them; both libraries share the process;
`--no-tune-allocator` leaves them alone).

Models (`--models`, comma-separated, default all). eps: certnn's CROWN certifies some but not all samples
(fraction on the first 50 MNIST MLP / 20 other samples, shared machine): 6x100 46%, 9x200 68%, tanh 24%,
sigmoid 50%, cifar-sigmoid 45%, cifar-convsmall-relu 35%, resnet2 40%, rnn 45%, lstm 70%, gru 55%.

| model | what | eps | clip | N | batch | est. min |
|---|---|---|---|---|---|---|
| 6x100_relu | mlp_mnist.py 784-[100]x6-10, 20 epochs Adam, inputs x - 0.5 | 0.02 | - | 100 | 100 | 17 |
| 9x200_relu | mlp_mnist.py, same recipe, 784-[200]x9-10 | 0.015 | - | 100 | 25 | 40 |
| mlp-tanh, mlp-sigmoid | sshape_vs_autolirpa.py 784-100-100-10, inputs in [0, 1] | 0.02 | - | 100 | 100 | 3 each |
| cifar-sigmoid | pretrained sigmoid ConvSmall (shared/data), normalisation in the model | 0.01 | [0, 1] | 5 | 1 | 15 |
| cifar-convsmall-relu | pretrained PGD ConvSmall (abcrown_eran/cifar_conv_small_pgd.pt) | 2/255 | [0, 1] | 10 | 10 | 10 |
| resnet2_relu | cnn_mnist.py residual CNN, trained 8 epochs (cnn_mnist's recipe), x - 0.5 | 0.01 | - | 10 | 2 | 22 |
| rnn-2-32, lstm-1-32 | sshape_vs_autolirpa.py RNNs, 4 frames; auto_LiRPA: unrolled twin | 0.008 | - | 20 | 20 | 2 / 17 |
| gru-1-32 | the same | 0.01 | - | 20 | 20 | 22 |

resnet2_relu: stem conv 8@3x3 stride 2 + BN + ReLU, 2 residual blocks [conv, BN, ReLU, conv, BN, + skip,
ReLU], avgpool 2, linear (torch.fx import for certnn, the same nn.Module for auto_LiRPA). The two CIFAR nets
run in auto_LiRPA's matrix conv mode (its patches mode fails on the normalisation layer: AssertionError);
resnet2_relu in its default patches mode. Models are cached in benchmarks/out/models (trained on first use).
`batch` caps the samples per bound call (memory: certnn's alpha-crown keeps the autograd graph of every
backward pass; measured peaks per sample: cifar-sigmoid ~12 GB, resnet2 ~3 GB, 9x200 ~0.3 GB, others
<= 0.4 GB); "bN" is then batch `batch`, not N. `est. min`: minutes of the default run per model,
extrapolated from 2-5 sample runs on a shared 2-core machine. `--samples`, `--max-batch` (0: all N at
once), `--radius-samples` override the defaults of every model; `--eps model=value,...` overrides eps.

Columns of benchmarks/out/alpha_vs_autolirpa.md (the latest record per model and label):

Bounds (means over N x 9 margins of the lower bound of f_y - f_j; larger is tighter):
  * crown certnn / alpha certnn: certnn `crown` / `alpha-crown`; crown aL / opt aL: auto_LiRPA `CROWN` /
    `CROWN-Optimized`; cert crown/alpha/opt: share of samples with all 9 bounds > 0 (certnn crown, certnn
    alpha, auto_LiRPA CROWN-Optimized).
  * d mean / d worst: mean and smallest over margins of d = certnn alpha - auto_LiRPA CROWN-Optimized
    (positive: certnn tighter); d% mean / d% worst: the same as % of |margin|, the model's mean |auto_LiRPA
    CROWN-Optimized bound| (per-margin ratios, dominated by bounds near 0, are in the JSONL); certnn >= aL:
    share of margins with d >= -1e-9.
  * pgd slack: min over margins of (the smallest margin PGD found in the ball - certnn alpha bound): a
    negative value is an unsound bound (`--pgd-steps` sign steps of 2.5 eps / steps per margin row from a
    random start, float64 module; 0 skips it).

Time (CPU seconds per sample, time.process_time around each call):
  * b1 certnn / b1 aL / b1 ratio: the first K (`--batch1`, default 5) samples one at a time: certnn
    alpha-crown, auto_LiRPA CROWN-Optimized, certnn / auto_LiRPA (< 1: certnn faster).
  * bN ...: the same for the N samples in calls of `batch` samples.
  * f32 bN ...: the same with both libraries in float32 (certnn: `to_graph(model, shape, torch.float32)`,
    float32 inputs; certnn's float32 bounds are NOT sound-rounded, a speed row only; their means are in the
    JSONL). `--float32 auto` (default) runs it where it is cheap (6x100, tanh, sigmoid, cifar-convsmall-relu,
    rnn-2-32), `all` / `none`.
  * crown certnn / crown aL: the non-optimised CROWN calls, batch `batch`, for scale. load: 1-minute load
    average before/after the model; peak MB: the child's peak resident memory.

Radius (ReLU MLPs; `--skip-radius` leaves it out): mean certified L_inf radius of certnn `crown` and
`alpha-crown` (`certnn.Certifier(graph, CertifyConfig(method, batch_size=batch, alpha=AlphaConfig(
iterations))).radius(x, y, RadiusConfig(bisection_steps=10))`, untargeted; alpha uses its proof-only early
stop and warm starts), their ratio (the issue's target: >= 1.15 on naturally trained ReLU MLPs) and CPU
seconds per sample. On the first `radius n` samples: all N (6x100) or 25 (9x200, ~45 CPU s per sample).
With `--peer-radius`, auto_LiRPA's CROWN and CROWN-Optimized radii on the same samples too (aL crown / aL opt
/ aL ratio), found by certnn's own search driver (peer_radius.py: the same bracket from eps_init 0.01 and 10
log-space bisection steps), so the peer's alpha-over-CROWN gain can be read beside certnn's.

The "Suspicious or failed" list names certnn numbers that look wrong: alpha-crown looser than certnn crown,
a bound above a PGD margin, batch-1 bounds differing from the batch's by > 1e-6, failed children.

Records are appended to benchmarks/out/alpha_vs_autolirpa.jsonl with the label, batch sizes, dtype,
threads, load averages, peak memory, torch / auto_LiRPA / certnn versions, date and host.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (OUT, SHARED, chosen_models, markdown_table, model_child, peak_rss_mb,  # noqa: E402
                    peer_parser, read_jsonl, record_models, stamp)

try:
    # its @torch.jit.script functions warn (deprecated) at import, after its own simplefilter("once")
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        import auto_LiRPA
        from auto_LiRPA import BoundedModule, BoundedTensor
        from auto_LiRPA.perturbations import PerturbationLpNorm
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("benchmarks/alpha_vs_autolirpa.py needs auto_LiRPA in this Python: `pip install auto_LiRPA` or "
             "`pip install -e path/to/auto_LiRPA` (https://github.com/Verified-Intelligence/auto_LiRPA), e.g. "
             "run it with /work/peers/venv/bin/python; certnn never vendors it.")

import certnn  # noqa: E402
from certnn.certify.bounds import bounds_for_spec, make_spec, to_graph  # noqa: E402
from certnn.optimize import AlphaConfig  # noqa: E402

import sshape_vs_autolirpa as sshape  # noqa: E402  (its loaders, twins, margin spec and dtype helper)

JSONL = OUT / "alpha_vs_autolirpa.jsonl"
MD = OUT / "alpha_vs_autolirpa.md"


@dataclass(frozen=True)
class Setting:
    """eps (L_inf), clip box, default N, largest batch per call (memory: certnn's alpha-crown keeps the
    autograd graph of every backward pass), auto_LiRPA conv mode (None: its default), ReLU MLP (radius
    rows), float32 row under --float32 auto."""

    eps: float
    clip: tuple[float, float] | None
    samples: int
    max_batch: int
    conv_mode: str | None = None
    relu_mlp: bool = False
    f32: bool = True
    radius_samples: int | None = None  # radius rows on the first ones only (None: all N)


MODELS: dict[str, Setting] = {
    "6x100_relu": Setting(0.02, None, 100, 100, relu_mlp=True),
    "9x200_relu": Setting(0.015, None, 100, 25, relu_mlp=True, f32=False, radius_samples=25),
    "mlp-tanh": Setting(0.02, None, 100, 100),
    "mlp-sigmoid": Setting(0.02, None, 100, 100),
    "cifar-sigmoid": Setting(0.01, (0.0, 1.0), 5, 1, "matrix", f32=False),
    "cifar-convsmall-relu": Setting(2 / 255, (0.0, 1.0), 10, 10, "matrix"),
    "resnet2_relu": Setting(0.01, None, 10, 2, f32=False),
    "rnn-2-32": Setting(0.008, None, 20, 20),
    "lstm-1-32": Setting(0.008, None, 20, 20, f32=False),
    "gru-1-32": Setting(0.01, None, 20, 20, f32=False),
}
POOL = 1000  # candidates: MNIST test images 0-999 (CIFAR: the 100 of cifar10_test_first100_eran.npz)


# ----------------------------------------------------------------------------------------------- models
def load(name: str):
    """(certnn model, auto_LiRPA model, x pool, y pool) with both models float64 in eval mode."""
    if name in ("6x100_relu", "9x200_relu"):
        import mlp_mnist
        from certnn.data.mnist import load_mnist_test

        m = mlp_mnist.trained(name).double()  # trains and caches on first use
        x, y = load_mnist_test(SHARED)
        return m, m, x[:POOL].double() - 0.5, y[:POOL].long()
    if name == "cifar-convsmall-relu":
        import cnn_mnist

        m = cnn_mnist.cifar_convsmall("cifar_convsmall_relu").double().eval()
        x, y = cnn_mnist.load_cifar()
        return m, m, x, y
    if name == "resnet2_relu":
        import cnn_mnist

        cnn_mnist.ensure_model(name, 8)  # trains and caches on first use (cnn_mnist's recipe)
        m, x, y, _ = cnn_mnist.load_model_and_data(name)
        return m, m, x, y
    if name == "cifar-sigmoid":
        m, twin, x, y, _, _ = sshape.load(name, 100)
        return m, twin, x, y
    m, twin, x, y, _, _ = sshape.load(name, POOL)  # MNIST MLPs / RNNs ([0, 1] inputs; RNNs in 4 frames)
    return m, twin, x, y


def first_correct(m, x, y, n: int):
    with torch.no_grad():
        ok = m(x).argmax(1) == y
    idx = torch.nonzero(ok).flatten()[:n]
    return x[idx], y[idx]


# ----------------------------------------------------------------------------------------------- bounds
def certnn_lower(graph, x, eps: float, C, clip, method: str, iterations: int):
    spec = make_spec(graph, x, eps, "inf", clip)
    alpha = AlphaConfig(iterations=iterations) if method == "alpha-crown" else None
    lo, _, _ = bounds_for_spec(graph, spec, method, C.to(graph.dtype), lower=True, upper=False, alpha=alpha)
    return lo.detach()


def alirpa_module(twin, x, conv_mode: str | None, dtype: torch.dtype, iterations: int):
    opts = {"optimize_bound_args": {"iteration": iterations}}
    if conv_mode is not None:
        opts["conv_mode"] = conv_mode
    with sshape.default_dtype(dtype):
        return BoundedModule(twin, torch.zeros_like(x[:1]), device="cpu", bound_opts=opts, verbose=0)


def alirpa_lower(bm, x, eps: float | torch.Tensor, C, clip, method: str, dtype: torch.dtype):
    """Margin lower bounds on the L_inf ball(s) of radius eps (a float, or per sample broadcast over x)."""
    lo, hi = x - eps, x + eps
    if clip is not None:
        lo, hi = lo.clamp(min=clip[0]), hi.clamp(max=clip[1])
    ptb = PerturbationLpNorm(norm=float("inf"), x_L=lo, x_U=hi)
    grad = contextlib.nullcontext() if method == "CROWN-Optimized" else torch.no_grad()
    # auto_LiRPA prints its early stops: keep stdout clean
    with sshape.default_dtype(dtype), grad, contextlib.redirect_stdout(io.StringIO()):
        lb, _ = bm.compute_bounds(x=(BoundedTensor(x, ptb),), C=C.to(dtype), method=method, bound_upper=False)
    return lb.detach()


def warm_up(graph, bm, x, C, eps: float, clip, dtype) -> None:
    """One sample through each library's optimiser, 2 iterations (untimed: first-call costs)."""
    certnn_lower(graph, x[:1], eps, C[:1], clip, "alpha-crown", 2)
    args = bm.bound_opts["optimize_bound_args"]
    its, args["iteration"] = args["iteration"], 2
    try:
        alirpa_lower(bm, x[:1], eps, C[:1], clip, "CROWN-Optimized", dtype)
    finally:
        args["iteration"] = its


def release_heap() -> None:
    """glibc's malloc_trim(0): the heap's free pages back to the system (the tuned allocator keeps them; at
    batch 100 certnn's freed ~13 GB under auto_LiRPA's ~15 GB peak would not fit in 23 GB)."""
    from certnn.cli.memory_guard import _malloc_trim

    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def pgd_margin_min(m, x, C, eps: float, clip, steps: int, seed: int = 0) -> torch.Tensor:
    """(B, S): the smallest C_s f(x') PGD finds per margin row in the ball (an upper bound of the true
    minimum: a sound lower bound never exceeds it). Sign steps of 2.5 eps / steps from a random start."""
    B, S = C.shape[:2]
    lo, hi = x - eps, x + eps
    if clip is not None:
        lo, hi = lo.clamp(min=clip[0]), hi.clamp(max=clip[1])
    lo, hi = lo.unsqueeze(1).expand(B, S, *x.shape[1:]), hi.unsqueeze(1).expand(B, S, *x.shape[1:])
    g = torch.Generator().manual_seed(seed)
    z = lo + (hi - lo) * torch.rand(lo.shape, generator=g, dtype=x.dtype)
    Cd = C.to(x.dtype)

    def value(z):
        return (m(z.reshape(B * S, *x.shape[1:])).reshape(B, S, -1) * Cd).sum(-1)

    with torch.no_grad():
        best = value(x.unsqueeze(1).expand_as(lo))
    step = 2.5 * eps / max(steps, 1)
    for _ in range(steps):
        z = z.detach().requires_grad_(True)
        v = value(z)
        best = torch.minimum(best, v.detach())
        (gz,) = torch.autograd.grad(v.sum(), z)
        z = torch.maximum(torch.minimum(z.detach() - step * gz.sign(), hi), lo)
    with torch.no_grad():
        return torch.minimum(best, value(z))


# ----------------------------------------------------------------------------------------------- one model
def chunks(n: int, size: int):
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def run_model(name: str, a) -> dict:
    load0 = os.getloadavg()
    c = _case(name, a)
    c.log(f"N={c.n} batch={c.bsz} K={c.k} eps={c.eps:.6g} iterations={c.it}")
    warm_up(c.graph, c.bm_opt, c.x, c.C, c.eps, c.clip, F64)
    lbs, t, wall, per_call = _batch_n(c)
    t1_c, t1_a, b1_gap = _batch_1(c, lbs["ca"], per_call)
    rec = _record(c, lbs, t, wall, t1_c, t1_a, b1_gap)
    if a.pgd_steps > 0:
        pm = pgd_margin_min(c.m, c.x, c.C, c.eps, c.clip, a.pgd_steps)
        rec["pgd_slack_certnn_alpha"] = float((pm - lbs["ca"]).min())
        rec["pgd_slack_certnn_crown"] = float((pm - lbs["cc"]).min())
        rec["pgd_slack_alirpa_opt"] = float((pm - lbs["ao"]).min())
        rec["pgd_steps"] = a.pgd_steps
    if a.float32 == "all" or (a.float32 == "auto" and c.st.f32):
        _add_float32(c, rec)
    if c.st.relu_mlp and not a.skip_radius:
        _add_radius(c, rec, a.radius_samples, a.peer_radius)
    rec["suspicious"] = suspicious(rec)
    rec["loadavg_before"] = list(load0)
    rec["loadavg_after"] = list(os.getloadavg())
    rec["peak_rss_mb"] = peak_rss_mb()
    return rec


F64 = torch.float64


@dataclass
class Case:
    """One model's samples (the first N correctly classified), margin spec, certnn graph and auto_LiRPA
    modules (one for CROWN, one for CROWN-Optimized), N, the batch per call and K (batch-1 samples)."""

    name: str
    st: Setting
    eps: float
    it: int
    m: torch.nn.Module
    twin: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    C: torch.Tensor
    graph: object
    bm_crown: object
    bm_opt: object
    bsz: int
    k: int

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def clip(self):
        return self.st.clip

    def log(self, msg: str) -> None:
        print(f"[{self.name}] {msg}", file=sys.stderr, flush=True)

    def c_alpha(self, xs, Cs):
        return certnn_lower(self.graph, xs, self.eps, Cs, self.clip, "alpha-crown", self.it)

    def a_opt(self, xs, Cs):
        return alirpa_lower(self.bm_opt, xs, self.eps, Cs, self.clip, "CROWN-Optimized", F64)


def _case(name: str, a) -> Case:
    st = MODELS[name]
    it = a.iterations
    m, twin, xp, yp = load(name)
    x, y = first_correct(m, xp, yp, a.samples or st.samples)
    n = len(y)
    bsz = min(n, a.max_batch or n) if a.max_batch is not None else min(n, st.max_batch)
    C = sshape.margin_spec(y)
    graph = certnn.from_torch(m, tuple(x.shape[1:]))
    bm_crown = alirpa_module(twin, x, st.conv_mode, F64, it)
    bm_opt = alirpa_module(twin, x, st.conv_mode, F64, it)
    return Case(name, st, a.eps_override.get(name, st.eps), it, m, twin, x, y, C, graph, bm_crown, bm_opt, bsz,
                min(a.batch1, n))


def _batch_n(c: Case):
    """Batch N in calls of at most c.bsz samples, interleaved per call: lower bounds per key (cc certnn
    crown, ac auto_LiRPA CROWN, ca certnn alpha, ao auto_LiRPA opt), CPU and wall seconds per key, and the
    CPU seconds of (certnn alpha, auto_LiRPA opt) per call."""
    t = {key: 0.0 for key in ("cc", "ac", "ca", "ao")}
    wall = dict(t)
    lbs = {key: [] for key in t}
    per_call = []
    for sl in chunks(c.n, c.bsz):
        xs, Cs = c.x[sl], c.C[sl]
        dts = {}
        for key, fn in (("cc", lambda: certnn_lower(c.graph, xs, c.eps, Cs, c.clip, "crown", c.it)),
                        ("ac", lambda: alirpa_lower(c.bm_crown, xs, c.eps, Cs, c.clip, "CROWN", F64)),
                        ("ca", lambda: c.c_alpha(xs, Cs)), ("ao", lambda: c.a_opt(xs, Cs))):
            lb, dts[key], w = timed(fn)
            release_heap()  # untimed: one library's freed heap must not stay resident under the other's peak
            lbs[key].append(lb)
            t[key] += dts[key]
            wall[key] += w
        per_call.append((dts["ca"], dts["ao"]))
        c.log(f"samples {sl.start}-{sl.stop - 1}: CPU s certnn alpha {dts['ca']:.2f}, auto_LiRPA opt {dts['ao']:.2f}")
    return {key: torch.cat(v) for key, v in lbs.items()}, t, wall, per_call


def _batch_1(c: Case, lb_ca, per_call) -> tuple[float, float, float]:
    """The first K samples one by one, interleaved (the batch-N calls already were, when the batch is 1):
    CPU seconds of certnn alpha and auto_LiRPA opt, and certnn's largest batch-1 vs batch-N difference."""
    b1_gap = 0.0
    if c.bsz == 1:
        return sum(d for d, _ in per_call[:c.k]), sum(o for _, o in per_call[:c.k]), b1_gap
    t1_c = t1_a = 0.0
    for i in range(c.k):
        lb1, dt, _ = timed(lambda: c.c_alpha(c.x[i:i + 1], c.C[i:i + 1]))
        t1_c += dt
        b1_gap = max(b1_gap, float((lb1[0] - lb_ca[i]).abs().max()))
        _, dt, _ = timed(lambda: c.a_opt(c.x[i:i + 1], c.C[i:i + 1]))
        t1_a += dt
    c.log(f"batch 1: CPU s/sample certnn alpha {t1_c / max(c.k, 1):.2f}, auto_LiRPA opt {t1_a / max(c.k, 1):.2f}")
    return t1_c, t1_a, b1_gap


def _record(c: Case, lbs: dict, t: dict, wall: dict, t1_c: float, t1_a: float, b1_gap: float) -> dict:
    n, k = c.n, c.k
    lb_cc, lb_ac, lb_ca, lb_ao = (lbs[key] for key in ("cc", "ac", "ca", "ao"))
    d = lb_ca - lb_ao
    scale = float(lb_ao.abs().mean())  # |margin|: the mean |auto_LiRPA CROWN-Optimized bound| of the model
    rel = 100 * d / lb_ao.abs().clamp(min=1e-3)
    return {
        "model": c.name, "eps": c.eps, "clip": c.clip, "samples": n, "batch": c.bsz, "batch1_samples": k,
        "iterations": c.it, "alirpa_conv_mode": c.st.conv_mode or "default",
        "dtype": "float64 (both)",
        "certnn_crown_mean_lb": float(lb_cc.mean()), "certnn_alpha_mean_lb": float(lb_ca.mean()),
        "alirpa_crown_mean_lb": float(lb_ac.mean()), "alirpa_opt_mean_lb": float(lb_ao.mean()),
        "crown_certified": float((lb_cc > 0).all(1).double().mean()),
        "alpha_certified": float((lb_ca > 0).all(1).double().mean()),
        "alirpa_crown_certified": float((lb_ac > 0).all(1).double().mean()),
        "alirpa_opt_certified": float((lb_ao > 0).all(1).double().mean()),
        "diff_mean": float(d.mean()), "diff_worst": float(d.min()), "diff_best": float(d.max()),
        "diff_pct_mean": 100 * float(d.mean()) / scale, "diff_pct_worst": 100 * float(d.min()) / scale,
        # per margin, d / max(|auto_LiRPA bound|, 1e-3): dominated by bounds near 0, kept for reference
        "diff_pct_per_margin_mean": float(rel.mean()), "diff_pct_per_margin_worst": float(rel.min()),
        "frac_certnn_ge": float((d >= -1e-9).double().mean()),
        # certnn's own sanity: alpha never looser than its crown; batch 1 equals batch N (batch independence)
        "alpha_minus_crown_worst": float((lb_ca - lb_cc).min()),
        "certnn_crown_minus_alirpa_crown_mean": float((lb_cc - lb_ac).mean()),
        "batch1_vs_batchN_max_abs": b1_gap if c.bsz > 1 else None,
        "cpu_s_per_sample": {"certnn_crown_bN": t["cc"] / n, "alirpa_crown_bN": t["ac"] / n,
                             "certnn_alpha_bN": t["ca"] / n, "alirpa_opt_bN": t["ao"] / n,
                             "certnn_alpha_b1": t1_c / max(k, 1), "alirpa_opt_b1": t1_a / max(k, 1)},
        "wall_s_per_sample": {"certnn_alpha_bN": wall["ca"] / n, "alirpa_opt_bN": wall["ao"] / n},
    }


def _add_float32(c: Case, rec: dict) -> None:
    """certnn alpha and auto_LiRPA opt once more in float32 (batch N): CPU seconds and mean bounds."""
    f32 = torch.float32
    g32 = to_graph(c.m, tuple(c.x.shape[1:]), f32)
    x32, C32 = c.x.float(), c.C.float()
    bm32 = alirpa_module(copy.deepcopy(c.twin).float(), x32, c.st.conv_mode, f32, c.it)
    warm_up(g32, bm32, x32, C32, c.eps, c.clip, f32)
    tc = ta = 0.0
    l32c, l32a = [], []
    for sl in chunks(c.n, c.bsz):
        lb, dt, _ = timed(lambda: certnn_lower(g32, x32[sl], c.eps, C32[sl], c.clip, "alpha-crown", c.it))
        l32c.append(lb)
        tc += dt
        lb, dt, _ = timed(lambda: alirpa_lower(bm32, x32[sl], c.eps, C32[sl], c.clip, "CROWN-Optimized", f32))
        l32a.append(lb)
        ta += dt
    rec["cpu_s_per_sample"].update({"certnn_alpha_bN_f32": tc / c.n, "alirpa_opt_bN_f32": ta / c.n})
    rec["f32_certnn_alpha_mean_lb"] = float(torch.cat(l32c).double().mean())
    rec["f32_alirpa_opt_mean_lb"] = float(torch.cat(l32a).double().mean())
    c.log(f"float32: CPU s/sample certnn alpha {tc / c.n:.2f}, auto_LiRPA opt {ta / c.n:.2f}")


def _add_radius(c: Case, rec: dict, radius_samples: int | None, peer: bool = False) -> None:
    """Certified radius (L_inf, 10 bisection steps) of crown and alpha-crown on the first samples (and
    auto_LiRPA's CROWN and CROWN-Optimized radii when ``peer``)."""
    search = certnn.RadiusConfig(bisection_steps=10)
    nr = min(c.n, radius_samples or c.st.radius_samples or c.n)
    rec["radius_samples"] = nr
    for method in ("crown", "alpha-crown"):
        cfg = certnn.CertifyConfig(method=method, norm="inf", batch_size=c.bsz, alpha=AlphaConfig(iterations=c.it))
        res, dt, _ = timed(lambda: certnn.Certifier(c.graph, cfg).radius(c.x[:nr], c.y[:nr], search))
        key = method.replace("-", "_")
        rec[f"radius_{key}"] = float(res.certified_radius.mean())
        rec[f"radius_{key}_evaluations"] = res.evaluations
        rec["cpu_s_per_sample"][f"radius_{key}"] = dt / nr
        c.log(f"radius {method}: {rec[f'radius_{key}']:.5f} ({dt / nr:.2f} CPU s/sample)")
    rec["radius_ratio"] = rec["radius_alpha_crown"] / rec["radius_crown"] if rec["radius_crown"] > 0 else None
    rec["radius_bisection_steps"] = 10
    if peer:
        _add_peer_radius(c, rec, nr)


def _add_peer_radius(c: Case, rec: dict, nr: int) -> None:
    """auto_LiRPA's CROWN and CROWN-Optimized radii on the same samples, by certnn's search driver
    (peer_radius.py; the same bracket and 10 log-space bisection steps)."""
    from peer_radius import peer_radius

    for method, bm, key in (("CROWN", c.bm_crown, "alirpa_crown"), ("CROWN-Optimized", c.bm_opt, "alirpa_opt")):
        def lower(xs, eps, Cs, bm=bm, method=method):  # per-sample eps, broadcast over the input's dims
            return alirpa_lower(bm, xs, eps.to(xs.dtype).reshape(-1, *([1] * (xs.dim() - 1))), Cs, c.clip,
                                method, F64)

        (r, evals), dt, _ = timed(lambda: peer_radius(lower, c.x[:nr], c.C[:nr], steps=10))
        rec[f"radius_{key}"] = float(r.mean())
        rec[f"radius_{key}_evaluations"] = evals
        rec["cpu_s_per_sample"][f"radius_{key}"] = dt / nr
        c.log(f"radius auto_LiRPA {method}: {rec[f'radius_{key}']:.5f} ({dt / nr:.2f} CPU s/sample)")
    rec["radius_ratio_alirpa"] = (rec["radius_alirpa_opt"] / rec["radius_alirpa_crown"]
                                  if rec["radius_alirpa_crown"] > 0 else None)


def suspicious(r: dict) -> list[str]:
    """What looks wrong in certnn's numbers (reported, never fixed here)."""
    out = []
    if r["alpha_minus_crown_worst"] < -1e-9:
        out.append(f"certnn alpha-crown looser than its crown by {-r['alpha_minus_crown_worst']:.3g}")
    if r.get("pgd_slack_certnn_alpha") is not None and r["pgd_slack_certnn_alpha"] < -1e-9:
        out.append(f"certnn alpha-crown bound above a PGD margin by {-r['pgd_slack_certnn_alpha']:.3g} (unsound)")
    if r.get("pgd_slack_certnn_crown") is not None and r["pgd_slack_certnn_crown"] < -1e-9:
        out.append(f"certnn crown bound above a PGD margin by {-r['pgd_slack_certnn_crown']:.3g} (unsound)")
    if r.get("batch1_vs_batchN_max_abs") is not None and r["batch1_vs_batchN_max_abs"] > 1e-6:
        out.append(f"certnn alpha-crown batch 1 differs from batch N by {r['batch1_vs_batchN_max_abs']:.3g}")
    return out


# ----------------------------------------------------------------------------------------------- table
def write_table(jsonl: Path, md: Path) -> str:
    latest = {}
    for r in read_jsonl(jsonl):
        latest[(r["model"], r["label"])] = r
    order = {m: i for i, m in enumerate(MODELS)}
    ordered = [r for _, r in sorted(latest.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1]))]
    recs = [r for r in ordered if "error" not in r]
    failed = [r for r in ordered if "error" in r]

    def head(r):
        return [r["model"], r["label"], r["samples"], r["batch"], r["eps"], r["iterations"]]

    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    b_cols = ["model", "label", "n", "batch", "eps", "iters", "crown certnn", "alpha certnn", "crown aL", "opt aL",
              "d mean", "d worst", "d% mean", "d% worst", "certnn >= aL", "cert crown/alpha/opt", "pgd slack"]
    b_rows = [head(r) + [r["certnn_crown_mean_lb"], r["certnn_alpha_mean_lb"], r["alirpa_crown_mean_lb"],
                         r["alirpa_opt_mean_lb"], r["diff_mean"], r["diff_worst"], r["diff_pct_mean"],
                         r["diff_pct_worst"], pct(r["frac_certnn_ge"]),
                         "/".join(pct(r[k]) for k in ("crown_certified", "alpha_certified", "alirpa_opt_certified")),
                         r.get("pgd_slack_certnn_alpha")] for r in recs]

    def ratio(c, a):
        return c / a if c is not None and a else None

    t_cols = ["model", "label", "n", "batch", "eps", "iters", "b1 certnn", "b1 aL", "b1 ratio", "bN certnn",
              "bN aL", "bN ratio", "f32 bN certnn", "f32 bN aL", "f32 bN ratio", "crown certnn", "crown aL",
              "threads", "load", "peak MB"]
    t_rows = []
    for r in recs:
        t = r["cpu_s_per_sample"]
        row = head(r)
        for sfx in ("b1", "bN", "bN_f32"):
            c, a_ = t.get(f"certnn_alpha_{sfx}"), t.get(f"alirpa_opt_{sfx}")
            row += [c, a_, ratio(c, a_)]
        row += [t["certnn_crown_bN"], t["alirpa_crown_bN"], r["threads"],
                f"{r['loadavg_before'][0]:.1f}/{r['loadavg_after'][0]:.1f}", r.get("peak_rss_mb")]
        t_rows.append(row)
    r_cols = ["model", "label", "n", "batch", "eps", "iters", "radius n", "radius crown", "radius alpha", "ratio",
              "crown s/sample", "alpha s/sample", "aL crown", "aL opt", "aL ratio", "aL opt s/sample"]
    r_rows = [head(r) + [r.get("radius_samples", r["samples"]), r["radius_crown"], r["radius_alpha_crown"],
                         r["radius_ratio"], r["cpu_s_per_sample"]["radius_crown"],
                         r["cpu_s_per_sample"]["radius_alpha_crown"], r.get("radius_alirpa_crown"),
                         r.get("radius_alirpa_opt"), r.get("radius_ratio_alirpa"),
                         r["cpu_s_per_sample"].get("radius_alirpa_opt")]
              for r in recs if "radius_crown" in r]
    text = ("Margin lower bounds (mean over samples x 9 margins; d = certnn alpha-crown - auto_LiRPA "
            "CROWN-Optimized)\n\n" + markdown_table(b_cols, b_rows)
            + "\n\nCPU seconds per sample, alpha-crown vs CROWN-Optimized (ratio = certnn / auto_LiRPA; f32: "
              "certnn float32 is not sound-rounded)\n\n" + markdown_table(t_cols, t_rows)
            + "\n\nMean certified L_inf radius, certnn crown vs alpha-crown (ReLU MLPs; aL: auto_LiRPA CROWN / "
              "CROWN-Optimized by certnn's search driver, with --peer-radius)\n\n"
            + markdown_table(r_cols, r_rows) + "\n")
    notes = [f"* {r['model']} ({r['label']}): {msg}" for r in recs for msg in r.get("suspicious", [])]
    notes += [f"* {r['model']} ({r['label']}): FAILED, {r['error']}" for r in failed]
    if notes:
        text += "\nSuspicious or failed\n\n" + "\n".join(notes) + "\n"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    return text


def parse_eps(s: str) -> dict[str, float]:
    out = {}
    for part in filter(None, s.split(",")):
        k, v = part.split("=")
        out[k] = float(v)
    return out


def child_args(a, name: str) -> list[str]:
    """The child's command line: one model, the parent's settings."""
    out = ["--model", name, "--batch1", str(a.batch1), "--iterations", str(a.iterations), "--threads",
           str(a.threads), "--pgd-steps", str(a.pgd_steps), "--float32", a.float32, "--label", a.label]
    if a.samples:
        out += ["--samples", str(a.samples)]
    if a.max_batch is not None:
        out += ["--max-batch", str(a.max_batch)]
    if name in a.eps_override:
        out += ["--eps", f"{name}={a.eps_override[name]!r}"]
    if a.skip_radius:
        out.append("--skip-radius")
    if a.radius_samples:
        out += ["--radius-samples", str(a.radius_samples)]
    if a.peer_radius:
        out.append("--peer-radius")
    return out


def run_in_child(a, name: str) -> dict:
    """One model in a fresh process (its own peak memory; a crash or OOM kill does not end the run). The
    child's stderr (progress, tracebacks) goes to the terminal; its last stdout line is the record."""
    t0 = time.perf_counter()
    # both libraries share the process, so both get the raised malloc thresholds (unless told otherwise)
    rec = model_child(Path(__file__), child_args(a, name), name, tune_allocator=not a.no_tune_allocator)
    rec["model_wall_s"] = time.perf_counter() - t0
    return rec


def main() -> None:
    p = peer_parser(__doc__, MODELS, JSONL, MD)
    p.add_argument("--samples", type=int, default=None, help="N for every model (default: per model, see above)")
    p.add_argument("--max-batch", type=int, default=None,
                   help="samples per bound call for every model (default: per model; 0: all N at once)")
    p.add_argument("--batch1", type=int, default=5, help="samples timed one by one (K)")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--skip-radius", action="store_true")
    p.add_argument("--peer-radius", action="store_true",
                   help="radius rows for auto_LiRPA's CROWN and CROWN-Optimized too (certnn's search driver)")
    p.add_argument("--radius-samples", type=int, default=None,
                   help="radius rows on the first R samples (default: per model, see above)")
    p.add_argument("--float32", choices=("auto", "all", "none"), default="auto",
                   help="float32 timing row: auto = the cheap models (see above)")
    p.add_argument("--pgd-steps", type=int, default=20, help="PGD steps of the soundness check (0: none)")
    p.add_argument("--eps", dest="eps_override", type=parse_eps, default={}, help="model=eps,... overrides")
    p.add_argument("--no-tune-allocator", action="store_true",
                   help="leave glibc's malloc thresholds alone (default: raised as the certnn CLI does)")
    a = p.parse_args()
    if a.child:
        torch.set_num_threads(a.threads)
        try:
            rec = run_model(a.model, a)
        except Exception:
            traceback.print_exc()
            sys.exit(1)
        rec.update({"cpu_count": os.cpu_count(), "allocator_tuned": not a.no_tune_allocator})
        print(json.dumps(stamp(rec, a, getattr(auto_LiRPA, "__version__", "?"))), flush=True)
        return
    names = chosen_models(p, a, MODELS)
    if not a.table_only:
        record_models(names, lambda name: run_in_child(a, name), Path(a.jsonl), a.label)
    print(write_table(Path(a.jsonl), Path(a.md)))


if __name__ == "__main__":
    main()
