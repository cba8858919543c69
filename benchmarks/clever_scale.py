"""CLEVER at the seeds' scale: a ResNet-50 (random weights serve for cost) on 224x224 inputs.

Per image: seconds (CPU time and wall time) and peak memory (the child process's peak RSS on the cpu;
torch.cuda.max_memory_allocated on a GPU), with the estimate batched over gradient samples
(certnn.estimate.clever: each model call takes up to --points-per-call sampled points x classes, one
forward and one backward). torchvision is used when installed (torchvision.models.resnet50(weights=None)),
otherwise the same architecture from benchmarks/resnet50.py. Targeted (--target top2 by default, as the
CLEVER paper's ImageNet runs: untargeted CLEVER needs 999 gradient norms per point).

Each setting runs in a fresh child process (its peak memory is its own); rows are appended to
benchmarks/out/clever_scale.jsonl and the table to benchmarks/out/clever_scale.md.

Tiny (checks it runs, ~1 min CPU):
    python benchmarks/clever_scale.py --images 1 --batches 2 --samples 4 --points-per-call 4
Full (the paper's N_b = 500, N_s = 1024; hours per image on a CPU, minutes on a GPU):
    python benchmarks/clever_scale.py --images 5 --batches 500 --samples 1024 --points-per-call 64 --device cuda
CPU row on a quiet machine:
    python benchmarks/clever_scale.py --images 2 --batches 20 --samples 64 --points-per-call 32 --threads 2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, append_jsonl, markdown_table, peak_rss_mb, run_child  # noqa: E402


def _model():
    try:
        from torchvision.models import resnet50  # type: ignore[import-not-found]

        return resnet50(weights=None), "torchvision resnet50 (random weights)"
    except ImportError:
        from resnet50 import resnet50

        return resnet50(), "ResNet-50 from torch.nn (benchmarks/resnet50.py, random weights)"


def child(a) -> None:
    import torch

    from certnn.estimate import CleverConfig, clever_scores

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, what = _model()
    dtype = {"float32": torch.float32, "float64": torch.float64}[a.dtype]
    model = model.eval().to(dtype)
    x = torch.rand(a.images, 3, 224, 224, dtype=dtype, generator=torch.Generator().manual_seed(1))
    cfg = CleverConfig(n_batches=a.batches, n_samples=a.samples, seed=0, max_points_per_call=a.points_per_call)
    cuda = a.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    c0, w0 = time.process_time(), time.perf_counter()
    res = clever_scores(model, x, None, a.norm, cfg, target=a.target, clip=(0.0, 1.0), device=a.device)
    if cuda:
        torch.cuda.synchronize()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    n = a.images
    print(json.dumps({
        "model": what, "device": str(res.device), "dtype": a.dtype, "threads": a.threads, "images": n,
        "n_batches": a.batches, "n_samples": a.samples, "points_per_call": a.points_per_call, "target": a.target,
        "norm": a.norm, "gradients_per_image": a.batches * a.samples,
        "cpu_s_per_image": cpu / n, "wall_s_per_image": wall / n,
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None,
        "mean_clever_estimate": float(res.clever_estimate.mean()), "fit_ok": int(res.fit_ok.any(1).sum())}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--batches", type=int, default=2, help="N_b")
    ap.add_argument("--samples", type=int, default=4, help="N_s: gradient samples per batch")
    ap.add_argument("--points-per-call", type=int, default=4, help="sampled points per forward/backward call")
    ap.add_argument("--target", default="top2", choices=["top2", "random", "least_likely"])
    ap.add_argument("--norm", default="2", choices=["inf", "2", "1"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if a.child:
        child(a)
        return
    args = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k != "child"]
    rec = run_child(Path(__file__), args)
    OUT.mkdir(parents=True, exist_ok=True)
    append_jsonl(OUT / "clever_scale.jsonl", rec)
    cols = ["device", "dtype", "threads", "N_b x N_s", "points/call", "target", "CPU s / image",
            "wall s / image", "peak RSS MB", "peak GPU MB"]
    row = [rec["device"], rec["dtype"], rec["threads"], f"{rec['n_batches']} x {rec['n_samples']}",
           rec["points_per_call"], rec["target"], rec["cpu_s_per_image"], rec["wall_s_per_image"],
           rec["peak_rss_mb"], rec["peak_gpu_mb"]]
    table = markdown_table(cols, [row])
    (OUT / "clever_scale.md").write_text(f"CLEVER, {rec['model']}, 224x224, L{rec['norm']}, {rec['images']} "
                                         f"image(s)\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
