"""Issue 13's recurrent target (>= 10x the original POPQORN code per sample) against the arithmetic floor.

For popqorn_original.py's model (7-frame 64-unit tanh RNN, per-frame L2 balls, random targets), one radius
search of certnn's `popqorn` and `certrnn` on N samples in one batch is profiled (torch.profiler with FLOP
counting of the matrix products: mm, bmm, addmm, matmul, baddbmm, linear): CPU time in all, CPU time in the
matrix products and their FLOPs. The floor is those FLOPs at the rate one thread reaches on a large float64 /
float32 GEMM here (measured in the same run): the time of the search if everything but the products were
free and the products ran at peak. Compared with the original code's per-sample time at the same batch
(measured in the same process when --popqorn is given, else --original-s), it says the largest speed-up a
search with the same products and evaluations could reach.

    PYTHONPATH=src:benchmarks python benchmarks/recurrent_floor.py --samples 100 --popqorn /work/peers/POPQORN
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, append_jsonl, markdown_table  # noqa: E402
import popqorn_original as po  # noqa: E402

MATMULS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::matmul", "aten::linear", "aten::einsum")


def gemm_rate(dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    """FLOP/s of one thread on an n x n x n product (the best of `reps`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        a @ b
        best = min(best, time.process_time() - t0)
    return 2 * n ** 3 / best


def profiled_search(graph, x, y, method: str, norm: str, eps0: float) -> dict:
    from torch.profiler import ProfilerActivity, profile

    po.certnn_search(graph, x[:1], y[:1], method, norm, eps0, 1)  # warm-up
    c0 = time.process_time()
    _, evals = po.certnn_search(graph, x, y, method, norm, eps0, len(x))
    plain = time.process_time() - c0
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        po.certnn_search(graph, x, y, method, norm, eps0, len(x))
    flops, mm_us = 0, 0.0
    for e in prof.key_averages():
        if e.key in MATMULS:
            flops += e.flops
            mm_us += e.self_cpu_time_total
    return {"cpu_s": plain, "evaluations": evals, "matmul_flops": flops, "matmul_cpu_s_profiled": mm_us / 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--methods", default="popqorn,certrnn")
    p.add_argument("--norm", default="2")
    p.add_argument("--eps0", type=float, default=0.1)
    p.add_argument("--popqorn", default=None, help="a POPQORN checkout: time the original in this run too")
    p.add_argument("--original-s", type=float, default=None, help="else: the original's CPU s/sample at this batch")
    p.add_argument("--label", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    m, graph, x, y, target = po.model_and_inputs(1, a.samples)
    n = len(x)
    original = a.original_s
    if a.popqorn:
        bvr = po.load_original(Path(a.popqorn))
        p_orig = "inf" if a.norm == "inf" else int(a.norm)
        po.original_search(bvr, m, x[:1], y[:1], target[:1], p_orig, a.eps0)
        c0 = time.process_time()
        po.original_search(bvr, m, x, y, target, p_orig, a.eps0)
        original = (time.process_time() - c0) / n
    rate64, rate32 = gemm_rate(torch.float64), gemm_rate(torch.float32)
    rows = []
    for method in a.methods.split(","):
        r = profiled_search(graph, x, y, method, a.norm, a.eps0)
        per = r["cpu_s"] / n
        floor64, floor32 = r["matmul_flops"] / rate64 / n, r["matmul_flops"] / rate32 / n
        rec = {"label": a.label, "method": method, "samples": n, "cpu_s_per_sample": per, **r,
               "gemm_gflops_f64": rate64 / 1e9, "gemm_gflops_f32": rate32 / 1e9, "floor_f64_s_per_sample": floor64,
               "floor_f32_s_per_sample": floor32, "original_s_per_sample": original,
               "loadavg": list(os.getloadavg())}
        append_jsonl(OUT / "recurrent_floor.jsonl", rec)
        ratio = (lambda t: f"{original / t:.1f}x") if original else (lambda t: "-")
        rows.append([method, n, r["evaluations"], f"{per:.4f}", f"{r['matmul_flops'] / n / r['evaluations'] / 1e6:.1f}",
                     f"{r['matmul_cpu_s_profiled'] / n:.4f}", f"{floor64:.4f} / {floor32:.4f}",
                     f"{original:.4f}" if original else "-", ratio(per), f"{ratio(floor64)} / {ratio(floor32)}"])
    print(f"one thread; GEMM 1024^3: {rate64 / 1e9:.1f} GFLOP/s float64, {rate32 / 1e9:.1f} float32; "
          f"load {os.getloadavg()[0]:.1f}")
    print(markdown_table(["method", "N (one batch)", "evals", "CPU s/sample", "MFLOP / sample / eval",
                          "matmul CPU s/sample (profiled)", "floor s/sample f64 / f32", "original s/sample",
                          "speed-up now", "speed-up at the floor f64 / f32"], rows))


if __name__ == "__main__":
    main()
