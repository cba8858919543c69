"""Issue 13's recurrent target, side by side with the original POPQORN code: certnn's `popqorn` and
`certrnn` (and any other method) against Ko et al.'s own implementation (github.com/ZhaoyangLyu/POPQORN,
vanilla_rnn/bound_vanilla_rnn.py) on the same tanh RNN weights, the same inputs and the same targets.
Target: certnn >= 10x faster per sample at batch 1 and batch 100.

    # the full run (one thread, a quiet machine; the original code's batch-1 calls dominate):
    PYTHONPATH=src /work/peers/venv/bin/python benchmarks/popqorn_original.py \\
        --popqorn /work/peers/POPQORN --label "$(git rev-parse --short HEAD)"
    # a smoke run:
    PYTHONPATH=src /work/peers/venv/bin/python benchmarks/popqorn_original.py --popqorn /work/peers/POPQORN \\
        --samples 10 --batch1 2 --label smoke --jsonl /tmp/p.jsonl --md /tmp/p.md

The original code is not part of certnn and is never imported by it: fetch it yourself (git clone
https://github.com/ZhaoyangLyu/POPQORN) and give its folder with --popqorn. It predates torch 1.2; three
lines need bool-tensor spellings (`valid = ~idx` for `1 - idx`, `.bool()` for `.byte()` masks,
`search_copy & ~search` for `search_copy - search`), and torch >= 2.1 refuses a masked write through its
own mask (every `x[x] = v` in both files becomes `x[x.clone()] = v`);
/work/peers/POPQORN/CERTNN_PATCHES.md lists them.
torchvision, which it imports for its MNIST loader only, is replaced by empty modules when absent.

Protocol. The model is POPQORN's default vanilla RNN shape: MNIST read as 7 frames of 112 pixels, one tanh
layer of 64 units, a linear head (rnn_models.SeqClassifier, trained `--epochs` epochs with Adam on the 5k
subset + test images 5,000-9,999, cached in benchmarks/out/models). The original runs it through its own
class (the same state dict, float32 as its code is written), certnn through `from_torch` (float64). The
inputs are the first N correctly classified test images (pixels in [0, 1]); each sample's target class is
certnn's `random` target (seed 0), given to the original as its `target_label`. Threat model: POPQORN's,
an L_p ball of radius eps around every frame independently (certnn: norm 'inf' across frames,
frame_norm p). Search: the original `getMaximumEps(p, y, target, eps0, max_iter=100, acc=1e-3,
gx0_trick=True)` (doubling from eps0, then bisection until the relative gap is <= 1e-3); certnn
`Certifier(CertifyConfig(method, norm='inf', frame_norm=p, target='random')).radius` with eps_init = eps0
and 10 bisection steps in log space (relative gap ~7e-4). Batch 1: the first K samples one call each;
batch N: all N in one call (the original's own batching: it bounds N x N margins per call with its
gx0 trick, so its batch cost grows with N). CPU time (time.process_time), `--threads` threads (default 1),
interleaved per call (original, then each certnn method). Bounds evaluations are counted for both (calls
of the original's getLastLayerBound; certnn's RadiusResult.evaluations).

Reported: per sample CPU seconds at batch 1 and N, speed-up original / certnn, mean radius of each (the
original's is its own lower bound; it is float32 and its plane-free tanh lines are checked only on a
sample grid, so it is not a sound reference), evaluations per search.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, append_jsonl, markdown_table, read_jsonl  # noqa: E402
from rnn_models import SeqClassifier  # noqa: E402

JSONL = OUT / "popqorn_original.jsonl"
MD = OUT / "popqorn_original.md"
FRAMES, HIDDEN = 7, 64


def load_original(folder: Path):
    """The original code's vanilla-RNN module (bound_vanilla_rnn), imported from its own folder."""
    src = folder / "vanilla_rnn"
    if not (src / "bound_vanilla_rnn.py").is_file():
        sys.exit(f"no POPQORN checkout at {folder} (expected vanilla_rnn/bound_vanilla_rnn.py): git clone "
                 "https://github.com/ZhaoyangLyu/POPQORN and pass its folder with --popqorn")
    try:
        import torchvision  # noqa: F401
    except ImportError:  # used by its MNIST loader only
        tv = types.ModuleType("torchvision")
        tv.transforms, tv.datasets = types.ModuleType("torchvision.transforms"), types.ModuleType("torchvision.datasets")
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms,
                            "torchvision.datasets": tv.datasets})
    sys.path.insert(0, str(src))
    import bound_vanilla_rnn

    return bound_vanilla_rnn


def trained_model(epochs: int) -> SeqClassifier:
    from certnn.data.mnist import mnist_train_test
    from certnn.train.simple import train_classifier

    path = OUT / "models" / f"popqorn_rnn_1_{HIDDEN}_t{FRAMES}_e{epochs}.pt"
    torch.manual_seed(0)
    m = SeqClassifier("RNN", 1, HIDDEN, FRAMES)
    if path.is_file():
        m.load_state_dict(torch.load(path, weights_only=True))
    else:
        xtr, ytr, _, _ = mnist_train_test(SHARED)
        train_classifier(m, xtr.reshape(-1, FRAMES, 784 // FRAMES), ytr, epochs=epochs, batch_size=64, lr=2e-3)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), path)
    return m.eval()


def original_net(bvr, m: SeqClassifier):
    """The original RNN class with m's weights (float32, as the original code computes)."""
    net = bvr.RNN(784 // FRAMES, HIDDEN, 10, FRAMES, "tanh")
    sd = {k.replace("fc.", "out."): v.float() for k, v in m.state_dict().items()}
    net.load_state_dict(sd)
    return net.eval()


def original_search(bvr, m, x, y, target, p: float, eps0: float) -> tuple[torch.Tensor, int]:
    """Radii (lower ends l_eps) from the original getMaximumEps and its number of bound evaluations."""
    net = original_net(bvr, m)  # fresh: its gx0 trick overwrites the head
    net.extractWeight(clear_original_model=False)
    calls = [0]
    inner = net.getLastLayerBound

    def counted(*args, **kw):
        calls[0] += 1
        return inner(*args, **kw)

    net.getLastLayerBound = counted
    with contextlib.redirect_stdout(io.StringIO()):  # it prints every step
        l_eps, _ = net.getMaximumEps(p=p, true_label=y, target_label=target, eps0=eps0, max_iter=100,
                                     X=x.float(), acc=1e-3, gx0_trick=True)
    return l_eps.double(), calls[0]


def certnn_search(graph, x, y, method: str, p: str, eps0: float, batch: int, offset: int = 0):
    """certnn's radii and bound evaluations; offset: the global index of x[0] (keys the random targets)."""
    import certnn

    cfg = certnn.CertifyConfig(method=method, norm="inf", frame_norm=p, target="random", batch_size=batch)
    res = certnn.Certifier(graph, cfg).radius(x, y, certnn.RadiusConfig(eps_init=eps0, bisection_steps=10),
                                              index_offset=offset)
    return res.certified_radius, res.evaluations


def model_and_inputs(epochs: int, samples: int):
    """(trained model (float32, for the original), its float64 certnn graph, the first `samples` correctly
    classified test images as frames, their labels, certnn's random targets)."""
    import certnn
    from certnn.certify.targets import select_targets
    from certnn.data.mnist import load_mnist_test

    m = trained_model(epochs)
    xt, yt = load_mnist_test(SHARED)
    xt = xt[:1000].reshape(-1, FRAMES, 784 // FRAMES).double()
    m64 = SeqClassifier("RNN", 1, HIDDEN, FRAMES).double()
    m64.load_state_dict(m.state_dict())
    with torch.no_grad():
        ok = m64(xt).argmax(1) == yt[:1000]
    idx = torch.nonzero(ok).flatten()[:samples]
    x, y = xt[idx], yt[idx]
    graph = certnn.from_torch(m64.eval(), (FRAMES, 784 // FRAMES))
    with torch.no_grad():
        target = select_targets(graph.forward(x), y, "random", 0)
    return m, graph, x, y, target


def run(a) -> dict:
    bvr = load_original(Path(a.popqorn))
    m, graph, x, y, target = model_and_inputs(a.epochs, a.samples)
    p_orig = "inf" if a.norm == "inf" else int(a.norm)  # its last layer reads the string 'inf' only
    methods = a.methods.split(",")
    n, k = len(x), min(a.batch1, len(x))
    t_n, t_1, radius, evals = {}, {key: 0.0 for key in ["original", *methods]}, {}, {}

    def clock(key, fn):
        c0 = time.process_time()
        out = fn()
        return out, time.process_time() - c0

    # warm-up, untimed: one sample through each
    original_search(bvr, m, x[:1], y[:1], target[:1], p_orig, a.eps0)
    for method in methods:
        certnn_search(graph, x[:1], y[:1], method, a.norm, a.eps0, 1)
    (radius["original"], evals["original"]), t_n["original"] = clock(
        "original", lambda: original_search(bvr, m, x, y, target, p_orig, a.eps0))
    for method in methods:
        (radius[method], evals[method]), t_n[method] = clock(
            method, lambda: certnn_search(graph, x, y, method, a.norm, a.eps0, n))
    for i in range(k):
        _, dt = clock("original", lambda: original_search(bvr, m, x[i:i + 1], y[i:i + 1], target[i:i + 1],
                                                           p_orig, a.eps0))
        t_1["original"] += dt
        for method in methods:
            _, dt = clock(method, lambda: certnn_search(graph, x[i:i + 1], y[i:i + 1], method, a.norm, a.eps0, 1, i))
            t_1[method] += dt
    rec = {"samples": n, "batch1_samples": k, "norm": a.norm, "frames": FRAMES, "hidden": HIDDEN, "eps0": a.eps0,
           "epochs": a.epochs, "methods": methods,
           "cpu_s_per_sample_bN": {key: v / n for key, v in t_n.items()},
           "cpu_s_per_sample_b1": {key: v / max(k, 1) for key, v in t_1.items()},
           "mean_radius": {key: float(r.mean()) for key, r in radius.items()},
           "evaluations": {key: int(v) for key, v in evals.items()},
           "dtype": {"original": "float32", "certnn": "float64"}}
    return rec


def write_table(jsonl: Path, md: Path) -> str:
    latest = {}
    for r in read_jsonl(jsonl):
        latest[(r["norm"], r["label"])] = r
    cols = ["norm", "label", "n", "K", "method", "radius", "evals / search", "b1 s/sample", "bN s/sample",
            "b1 speed-up", "bN speed-up", "threads", "load"]
    rows = []
    for (norm, label), r in sorted(latest.items()):
        b1, bn = r["cpu_s_per_sample_b1"], r["cpu_s_per_sample_bN"]
        for key in ["original", *r["methods"]]:
            rows.append([norm, label, r["samples"], r["batch1_samples"], key if key != "original" else
                         "original POPQORN", r["mean_radius"][key], r["evaluations"][key], b1[key], bn[key],
                         b1["original"] / b1[key] if b1[key] else None, bn["original"] / bn[key] if bn[key] else None,
                         r["threads"], f"{r['loadavg_before'][0]:.1f}/{r['loadavg_after'][0]:.1f}"])
    text = (f"certnn vs the original POPQORN code, tanh RNN {FRAMES} frames x {HIDDEN} units, per-frame L_p balls, "
            "radius search per sample (CPU s; speed-up = original / certnn; evals: bound computations of the "
            "whole batch's search)\n\n" + markdown_table(cols, rows) + "\n")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--popqorn", default=os.environ.get("POPQORN_DIR", "/work/peers/POPQORN"),
                   help="folder of a POPQORN checkout (github.com/ZhaoyangLyu/POPQORN)")
    p.add_argument("--methods", default="popqorn,certrnn")
    p.add_argument("--norm", default="2", choices=("2", "1", "inf"), help="the L_p norm within each frame")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--batch1", type=int, default=10, help="samples searched one at a time (K)")
    p.add_argument("--eps0", type=float, default=0.1, help="first eps of both searches (POPQORN's default)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs of the cached model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--label", default="this checkout")
    p.add_argument("--jsonl", default=str(JSONL))
    p.add_argument("--md", default=str(MD))
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args()
    if not a.table_only:
        torch.set_num_threads(a.threads)
        load0 = os.getloadavg()
        rec = run(a)
        import certnn

        rec.update({"label": a.label, "threads": torch.get_num_threads(), "loadavg_before": list(load0),
                    "loadavg_after": list(os.getloadavg()), "torch": torch.__version__, "certnn": certnn.__version__,
                    "date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node()})
        append_jsonl(Path(a.jsonl), rec)
        print(json.dumps(rec), flush=True)
    print(write_table(Path(a.jsonl), Path(a.md)))


if __name__ == "__main__":
    main()
