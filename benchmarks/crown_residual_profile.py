"""CPU time of certnn's `crown` at batch 1 (or --batch) on the two residual nets of crown_vs_autolirpa.py (resnet2_relu:
trained MNIST ResNet with BatchNorm, eps .01; cifar-resnet: random weights, eps .002, clip [0, 1]): the same
models, inputs (the first N of the test pool), L_inf ball and margin spec (rows e_y - e_j, y the model's
prediction), float64, one thread, lower bounds only; certnn alone (no auto_LiRPA needed), for profiling
issue 13's batch-1 cost. Optionally a cProfile or torch.profiler table; --save writes the lower bounds
and --compare checks them against a saved file (max |d| and max relative |d|).

    PYTHONPATH=src:benchmarks python benchmarks/crown_residual_profile.py --model resnet2_relu --samples 5
    PYTHONPATH=src:benchmarks python benchmarks/crown_residual_profile.py --model cifar-resnet --samples 3 \\
        --profile cprofile --save /tmp/before.pt
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from certnn.certify.bounds import bounds_for_spec, make_spec, to_graph  # noqa: E402

SETTINGS = {"resnet2_relu": (0.01, None), "cifar-resnet": (0.002, (0.0, 1.0))}


def load(name: str, n: int):
    """(float64 model, first n inputs, margin spec C (n, 9, 10)) as crown_vs_autolirpa.py loads them."""
    import cnn_mnist

    if name == "cifar-resnet":
        from residual_nets import cifar_resnet

        m, x = cifar_resnet().double(), cnn_mnist.load_cifar()[0][:n]
    else:
        m, x, _, _ = cnn_mnist.load_model_and_data(name)
        x = x[:n].double()
    with torch.no_grad():
        y = m(x).argmax(1)
    eye = torch.eye(10, dtype=torch.float64)
    C = torch.stack([eye[k] - eye[[j for j in range(10) if j != k]] for k in y.tolist()])
    return m, x, C


def run(graph, x, C, eps, clip, batch: int = 1) -> torch.Tensor:
    """Lower bounds (n, 9), `batch` samples per call."""
    out = []
    for i in range(0, len(x), batch):
        spec = make_spec(graph, x[i:i + batch], eps, "inf", clip)
        lo, _, _ = bounds_for_spec(graph, spec, "crown", C[i:i + batch], lower=True, upper=False)
        out.append(lo)
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(SETTINGS), default="resnet2_relu")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--batch", type=int, default=1, help="samples per call (default 1)")
    p.add_argument("--repeats", type=int, default=1, help="timed passes (the least is reported)")
    p.add_argument("--profile", choices=("none", "cprofile", "torch"), default="none")
    p.add_argument("--save", help="write the lower bounds (a .pt file)")
    p.add_argument("--compare", help="a .pt file of lower bounds to compare with")
    a = p.parse_args()
    torch.set_num_threads(1)
    eps, clip = SETTINGS[a.model]
    m, x, C = load(a.model, a.samples)
    graph = to_graph(m, tuple(x.shape[1:]), torch.float64)
    run(graph, x[:1], C[:1], eps, clip)  # first-call costs
    best, lo = float("inf"), None
    for _ in range(max(1, a.repeats)):
        c0 = time.process_time()
        lo = run(graph, x, C, eps, clip, a.batch)
        best = min(best, time.process_time() - c0)
    print(f"{a.model}: {len(x)} samples at batch {a.batch}, CPU s per sample {best / len(x):.4f} "
          f"(least of {max(1, a.repeats)}), mean lower bound {lo.mean().item():.12f}")
    if a.save:
        torch.save(lo, a.save)
    if a.compare:
        ref = torch.load(a.compare)
        k = min(len(ref), len(lo))  # the samples both runs have (the first k)
        d = (lo[:k] - ref[:k]).abs()
        print(f"against {a.compare} (first {k} samples): max |d| {d.max().item():.3g}, max relative "
              f"{(d / ref[:k].abs().clamp(min=1e-300)).max().item():.3g}")
    if a.profile == "cprofile":
        pr = cProfile.Profile()
        pr.enable()
        run(graph, x, C, eps, clip, a.batch)
        pr.disable()
        st = pstats.Stats(pr)
        st.sort_stats("tottime").print_stats(30)
        st.sort_stats("cumulative").print_stats(40)
    elif a.profile == "torch":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(graph, x, C, eps, clip, a.batch)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


if __name__ == "__main__":
    main()
