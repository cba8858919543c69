"""certnn `crown` against auto_LiRPA `CROWN`, side by side: CPU time per sample at batch 1 and batch N, peak
memory and bound agreement, certnn in float64 / float32 / float32-sound, auto_LiRPA in float64 / float32
(issue 13's targets: certnn <= 1.0x auto_LiRPA per sample, goal <= 0.5x; peak memory <= auto_LiRPA's).

    # the full benchmark (a quiet machine, one thread):
    PYTHONPATH=src:benchmarks /work/peers/venv/bin/python benchmarks/crown_vs_autolirpa.py \\
        --label "$(git rev-parse --short HEAD)"
    # a smoke run (two models, 4 samples, 2 one by one):
    PYTHONPATH=src:benchmarks /work/peers/venv/bin/python benchmarks/crown_vs_autolirpa.py \\
        --models 6x100_relu,cifar-resnet --samples 4 --batch1 2 --label smoke --jsonl /tmp/c.jsonl --md /tmp/c.md
    # only rewrite the Markdown from the JSONL:
    PYTHONPATH=src:benchmarks python benchmarks/crown_vs_autolirpa.py --table-only

`python` must have auto_LiRPA (it is imported by this script only, never by certnn).

Protocol. Each model runs in its own child process for the timing (both libraries in it, interleaved per
call: certnn float64, auto_LiRPA float64, certnn float32, auto_LiRPA float32, certnn float32-sound), then in
one child per (library, dtype) for peak memory (ru_maxrss of that child: its peak after loading the model and
data, and the peak of one bound call on the first `batch` samples), so each peak is its own. `--threads`
threads (default 1), CPU time (time.process_time) around each call, lower bounds only (auto_LiRPA
`bound_upper=False`, no_grad). Same inputs (the first N images of the model's test pool, float64; auto_LiRPA
float32 and certnn float32 get them rounded to float32, certnn float32-sound gets the float64 ones and widens
its ball to cover them), same L_inf ball (clipped where the model has a clip box), same margin spec C (rows
e_y - e_j, j != y, with y the model's prediction, so every image counts). Batch N: the N samples in calls of
at most `batch` (the model's max batch, `--max-batch`), `--repeats` passes, the least total kept. Batch 1:
the first K (`--batch1`) samples one at a time. One untimed sample through every configuration first.
The child processes get glibc's raised malloc thresholds (as the certnn CLI sets them).

certnn: `to_graph(model, shape, dtype)` (float32-sound: `sound_graph`, which refuses models whose weights are
not float32 numbers, e.g. a folded BatchNorm: the refusal is recorded), `make_spec(..., sound=)`,
`bounds_for_spec(graph, spec, "crown", C, lower=True, upper=False, sound=)`. auto_LiRPA: `BoundedModule`
built under the dtype (float32: a float32 copy of the model); conv nets try its "patches" conv mode and fall
back to "matrix" when patches fails (the mode used and why are recorded).

Models (`--models`): 6x100_relu (mlp_mnist.py, trained), 3x1024_relu (mlp_mnist.py's shape, RANDOM weights,
seed 0: cost only), cifar-convsmall-relu (pretrained PGD ConvSmall, normalisation in the model),
resnet2_relu (cnn_mnist.py's residual CNN with BatchNorm, trained), cifar-resnet (RANDOM weights, seed 0:
stem conv 16@3x3 stride 2, two residual blocks [conv, ReLU, conv, + skip, ReLU] without BatchNorm, conv 32@4x4
stride 2, linear 100, linear 10; input 3x32x32).

Written: benchmarks/out/crown_vs_autolirpa.jsonl (one record per model and run) and .md (latest per model and
label). Ratios are certnn / auto_LiRPA (< 1: certnn faster or smaller).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import alpha_vs_autolirpa as ava  # noqa: E402  (imports auto_LiRPA or exits with how to get it)
import sshape_vs_autolirpa as sshape  # noqa: E402
from crown_vs_autolirpa_table import write_table  # noqa: E402
from residual_nets import cifar_resnet  # noqa: E402
from common import (OUT, chosen_models, model_child, peak_rss_mb, peer_parser,  # noqa: E402
                    record_models, stamp)

from certnn.certify.bounds import bounds_for_spec, make_spec, sound_graph, to_graph  # noqa: E402
from certnn.errors import CertnnError  # noqa: E402

JSONL = OUT / "crown_vs_autolirpa.jsonl"
MD = OUT / "crown_vs_autolirpa.md"
CERTNN = ("float64", "float32", "float32-sound")
ALIRPA = ("float64", "float32")
MEM_KEYS = [f"certnn:{d}" for d in CERTNN] + [f"alirpa:{d}" for d in ALIRPA]
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32, "float32-sound": torch.float32}


@dataclass(frozen=True)
class Setting:
    """eps (L_inf), clip box, largest batch per call, conv net (auto_LiRPA conv mode tried), weights."""

    eps: float
    clip: tuple[float, float] | None
    max_batch: int
    conv: bool = False
    weights: str = "trained"


MODELS: dict[str, Setting] = {
    "6x100_relu": Setting(0.02, None, 100),
    "3x1024_relu": Setting(0.005, None, 100, weights="random"),
    "cifar-convsmall-relu": Setting(2 / 255, (0.0, 1.0), 100, conv=True),
    "resnet2_relu": Setting(0.01, None, 25, conv=True),
    "cifar-resnet": Setting(0.002, (0.0, 1.0), 10, conv=True, weights="random"),
}


# ----------------------------------------------------------------------------------------------- models
def load(name: str, n: int):
    """(float64 model in eval mode, first n inputs (float64), their predicted labels)."""
    if name == "3x1024_relu":
        import mlp_mnist
        from certnn.data.mnist import load_mnist_test

        torch.manual_seed(0)
        m = mlp_mnist.build(name).double().eval()
        x = load_mnist_test(ava.SHARED)[0][:n].double() - 0.5
    elif name == "cifar-resnet":
        import cnn_mnist

        m = cifar_resnet().double()
        x = cnn_mnist.load_cifar()[0][:n]
    else:
        m, _, x, _ = ava.load(name)
        m, x = m.double().eval(), x[:n].double()
    with torch.no_grad():
        y = m(x).argmax(1)
    return m, x, y


# ----------------------------------------------------------------------------------------------- bounds
def certnn_graphs(m, shape) -> tuple[dict, dict]:
    """certnn graphs per dtype, and the dtypes refused (with the reason)."""
    graphs, refused = {}, {}
    for dt in CERTNN:
        try:
            graphs[dt] = (sound_graph(m, shape, torch.float32) if dt == "float32-sound"
                          else to_graph(m, shape, TORCH_DTYPE[dt]))
        except CertnnError as e:
            refused[dt] = str(e)
    return graphs, refused


def certnn_lower(graph, dt: str, x, eps: float, C, clip):
    sound = dt == "float32-sound"
    spec = make_spec(graph, x, eps, "inf", clip, sound=sound)
    lo, _, _ = bounds_for_spec(graph, spec, "crown", C, lower=True, upper=False, sound=sound)
    return lo


def alirpa_modules(m, x, C, eps: float, clip, conv: bool) -> tuple[dict, dict]:
    """auto_LiRPA modules per dtype and the conv mode each uses ('patches' tried first on conv nets)."""
    bms, modes = {}, {}
    for dt in ALIRPA:
        tdt = TORCH_DTYPE[dt]
        twin = copy.deepcopy(m).to(tdt)
        for mode in (("patches", "matrix") if conv else (None,)):
            try:
                bm = ava.alirpa_module(twin, x.to(tdt), mode, tdt, 1)
                ava.alirpa_lower(bm, x[:1].to(tdt), eps, C[:1], clip, "CROWN", tdt)  # also the warm-up
                bms[dt], modes[dt] = bm, mode or "default"
                break
            except Exception as e:  # noqa: BLE001 - auto_LiRPA's failure is data here
                modes[dt] = f"patches failed ({type(e).__name__}: {str(e)[:80]})"
    return bms, modes


def configs(graphs, bms, eps: float, clip) -> list[tuple[str, object]]:
    """(key, fn(x64, C64)) in the interleaved order; each converts its inputs before the clock starts."""
    out = []
    for c_dt, a_dt in (("float64", "float64"), ("float32", "float32"), ("float32-sound", None)):
        if c_dt in graphs:
            xdt = torch.float64 if c_dt != "float32" else torch.float32
            out.append((f"certnn_{c_dt}", xdt, lambda xs, Cs, g=graphs[c_dt], d=c_dt: certnn_lower(
                g, d, xs, eps, Cs, clip)))
        if a_dt in bms:
            tdt = TORCH_DTYPE[a_dt]
            out.append((f"alirpa_{a_dt}", tdt, lambda xs, Cs, bm=bms[a_dt], d=tdt: ava.alirpa_lower(
                bm, xs, eps, Cs, clip, "CROWN", d)))
    return out


def timed_pass(cfgs, x, C, size: int) -> tuple[dict, dict]:
    """CPU seconds per configuration over x in calls of `size` samples, interleaved per call; lower bounds."""
    t = {k: 0.0 for k, _, _ in cfgs}
    lbs = {k: [] for k in t}
    for sl in ava.chunks(len(x), size):
        for key, dt, fn in cfgs:
            xs, Cs = x[sl].to(dt), C[sl].to(dt)
            lb, dt_s, _ = ava.timed(lambda: fn(xs, Cs))
            t[key] += dt_s
            lbs[key].append(lb.double())
    return t, {k: torch.cat(v) for k, v in lbs.items()}


# ----------------------------------------------------------------------------------------------- one model
def setup(name: str, a):
    st = MODELS[name]
    eps = a.eps_override.get(name, st.eps)
    m, x, y = load(name, a.samples)
    C = sshape.margin_spec(y)
    graphs, refused = certnn_graphs(m, tuple(x.shape[1:]))
    bsz = min(len(x), a.max_batch or st.max_batch)
    return st, eps, m, x, C, graphs, refused, bsz


def agreement(lbs: dict) -> dict:
    """max |certnn - auto_LiRPA| per dtype; float32-sound against float64 (it must be <= float64's)."""
    out = {}
    for dt in ALIRPA:
        c, al = lbs.get(f"certnn_{dt}"), lbs.get(f"alirpa_{dt}")
        if c is not None and al is not None:
            out[f"max_abs_diff_{dt}"] = float((c - al).abs().max())
    s, c64 = lbs.get("certnn_float32-sound"), lbs.get("certnn_float64")
    if s is not None and c64 is not None:
        out["sound_minus_f64_max"] = float((s - c64).max())  # <= 0: float32-sound no tighter than float64
        out["sound_widening_mean"] = float((c64 - s).mean())
        out["sound_widening_max"] = float((c64 - s).max())
        out["sound_le_f64"] = bool((s <= c64).all())
    out["certified"] = {k: float((v > 0).all(1).double().mean()) for k, v in lbs.items()}
    out["mean_lb"] = {k: float(v.mean()) for k, v in lbs.items()}
    return out


def ratios(per_sample: dict) -> dict:
    pairs = {"f64": ("certnn_float64", "alirpa_float64"), "f32": ("certnn_float32", "alirpa_float32"),
             "sound_vs_f64": ("certnn_float32-sound", "alirpa_float64"),
             "sound_vs_f32": ("certnn_float32-sound", "alirpa_float32")}
    return {k: (per_sample[c] / per_sample[al] if c in per_sample and per_sample.get(al) else None)
            for k, (c, al) in pairs.items()}


def run_timing(name: str, a) -> dict:
    load0 = os.getloadavg()
    st, eps, m, x, C, graphs, refused, bsz = setup(name, a)
    log = lambda msg: print(f"[{name}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    bms, modes = alirpa_modules(m, x, C, eps, st.clip, st.conv)
    cfgs = configs(graphs, bms, eps, st.clip)
    n, k = len(x), min(a.batch1, len(x))
    log(f"N={n} batch={bsz} K={k} eps={eps:.6g} certnn {list(graphs)} auto_LiRPA {modes}")
    for key, dt, fn in cfgs:  # one untimed sample each (first-call costs)
        fn(x[:1].to(dt), C[:1].to(dt))
    best, lbs = timed_pass(cfgs, x, C, bsz)  # bounds of the first pass; the least time of all passes
    for _ in range(max(1, a.repeats) - 1):
        t, _ = timed_pass(cfgs, x, C, bsz)
        best = {key: min(v, t[key]) for key, v in best.items()}
    log("bN CPU s (least of passes): " + ", ".join(f"{key} {v:.3f}" for key, v in best.items()))
    t1, lbs_1 = timed_pass(cfgs, x[:k], C[:k], 1)
    log("b1 CPU s: " + ", ".join(f"{key} {v:.3f}" for key, v in t1.items()))
    per_n = {key: v / n for key, v in best.items()}
    per_1 = {key: v / k for key, v in t1.items()}
    rec = {"model": name, "weights": st.weights, "samples": n, "batch": bsz, "batch1": k, "eps": eps,
           "clip": st.clip, "repeats": a.repeats, "alirpa_conv_mode": modes, "certnn_refused": refused,
           "cpu_s_per_sample": {"bN": per_n, "b1": per_1}, "ratio": {"bN": ratios(per_n), "b1": ratios(per_1)},
           "agreement": agreement(lbs),
           "b1_vs_bN_max_abs": {key: float((lbs_1[key] - lbs[key][:k]).abs().max()) for key in lbs_1},
           "device": "cpu", "dtype_certnn": list(graphs), "dtype_alirpa": list(bms)}
    rec["suspicious"] = suspicious(rec)
    rec["loadavg_before"], rec["loadavg_after"] = list(load0), list(os.getloadavg())
    rec["peak_rss_mb_timing_child"] = peak_rss_mb()
    return rec


def run_memory(name: str, a) -> dict:
    """Peak RSS of one library at one dtype, one call on the first `batch` samples (this child only)."""
    lib, dt = a.mem.split(":")
    st, eps, m, x, C, graphs, refused, bsz = setup(name, a)
    xs, Cs = x[:bsz], C[:bsz]
    if lib == "certnn":
        if dt not in graphs:
            return {"refused": refused.get(dt)}
        fn = lambda: certnn_lower(graphs[dt], dt, xs.to(TORCH_DTYPE[dt] if dt == "float32" else torch.float64),  # noqa: E731
                                  eps, Cs.to(TORCH_DTYPE[dt]), st.clip)
    else:
        tdt = TORCH_DTYPE[dt]
        mode = None if a.conv_mode in (None, "default") else a.conv_mode
        bm = ava.alirpa_module(copy.deepcopy(m).to(tdt), xs.to(tdt), mode, tdt, 1)
        fn = lambda: ava.alirpa_lower(bm, xs.to(tdt), eps, Cs.to(tdt), st.clip, "CROWN", tdt)  # noqa: E731
    setup_mb = peak_rss_mb()
    fn()
    peak = peak_rss_mb()
    return {"setup_mb": setup_mb, "peak_mb": peak, "call_mb": peak - setup_mb, "batch": bsz}


def suspicious(r: dict) -> list[str]:
    """What looks wrong in certnn's numbers (reported, never fixed here)."""
    ag, out = r["agreement"], []
    if ag.get("sound_minus_f64_max", -1.0) > 0:
        out.append(f"float32-sound bound above float64's by {ag['sound_minus_f64_max']:.3g}")
    if ag.get("max_abs_diff_float64", 0.0) > 1e-6:
        out.append(f"certnn float64 differs from auto_LiRPA float64 by {ag['max_abs_diff_float64']:.3g}")
    if ag.get("max_abs_diff_float32", 0.0) > 1e-2:
        out.append(f"certnn float32 differs from auto_LiRPA float32 by {ag['max_abs_diff_float32']:.3g}")
    bad = {k: v for k, v in r["b1_vs_bN_max_abs"].items() if k.startswith("certnn_float64") and v > 1e-6}
    out += [f"{k}: batch 1 differs from batch N by {v:.3g}" for k, v in bad.items()]
    return out


# ----------------------------------------------------------------------------------------------- driver


def parse_eps(s: str) -> dict[str, float]:
    return {k: float(v) for k, v in (part.split("=") for part in filter(None, s.split(",")))}


def child(a, name: str, extra: list[str]) -> dict:
    """One child process (its own peak memory; a crash or OOM kill is recorded and the run goes on)."""
    args = ["--model", name, "--samples", str(a.samples), "--batch1", str(a.batch1), "--threads", str(a.threads),
            "--repeats", str(a.repeats), "--label", a.label, *extra]
    if a.max_batch:
        args += ["--max-batch", str(a.max_batch)]
    if name in a.eps_override:
        args += ["--eps", f"{name}={a.eps_override[name]!r}"]
    return model_child(Path(__file__), args, name)


def run_model(a, name: str) -> dict:
    t0 = time.perf_counter()
    rec = child(a, name, [])
    if "error" not in rec and not a.skip_memory:
        rec["memory"] = {}
        for key in MEM_KEYS:
            lib, dt = key.split(":")
            mode = rec["alirpa_conv_mode"].get(dt, "default") if lib == "alirpa" else "default"
            if lib == "alirpa" and dt not in rec["dtype_alirpa"]:
                continue
            rec["memory"][key] = child(a, name, ["--mem", key, "--conv-mode", mode.split(" ")[0]])
    rec.setdefault("label", a.label)
    rec["model_wall_s"] = time.perf_counter() - t0
    return rec


def parser() -> argparse.ArgumentParser:
    p = peer_parser(__doc__, MODELS, JSONL, MD)
    p.add_argument("--samples", type=int, default=100, help="N (default 100)")
    p.add_argument("--max-batch", type=int, default=None, help="samples per call (default: per model)")
    p.add_argument("--batch1", type=int, default=10, help="samples timed one by one (K)")
    p.add_argument("--repeats", type=int, default=1, help="batch-N passes (the least time is kept)")
    p.add_argument("--eps", dest="eps_override", type=parse_eps, default={}, help="model=eps,... overrides")
    p.add_argument("--skip-memory", action="store_true", help="no peak-memory children")
    for flag in ("--mem", "--conv-mode"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    return p


def main() -> None:
    p = parser()
    a = p.parse_args()
    if a.child:
        torch.set_num_threads(a.threads)
        try:
            rec = run_memory(a.model, a) if a.mem else run_timing(a.model, a)
        except Exception:
            traceback.print_exc()
            sys.exit(1)
        print(json.dumps(stamp(rec, a, getattr(ava.auto_LiRPA, "__version__", "?"))), flush=True)
        return
    names = chosen_models(p, a, MODELS)
    if a.samples < 1 or a.batch1 < 1:
        p.error("--samples and --batch1 must be at least 1")
    if not a.table_only:
        record_models(names, lambda name: run_model(a, name), Path(a.jsonl), a.label)
    print(write_table(Path(a.jsonl), Path(a.md), list(MODELS), MEM_KEYS))


if __name__ == "__main__":
    main()
