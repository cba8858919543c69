"""alpha-CROWN time per sample with one library per process, for batches where both libraries in one process
do not fit in memory (alpha_vs_autolirpa.py runs them interleaved in one process: LSTM / GRU at batch 100
need 13-22 GB each on a 23 GB machine).

Prints one JSON line: CPU seconds per sample of the bound call (after each library's warm-up of
alpha_vs_autolirpa.warm_up), wall seconds, the process's peak RSS, the mean margin lower bound; the
bounds are saved to --save for a side-by-side comparison. Run with glibc's thresholds raised as the CLI
does (MALLOC_MMAP_THRESHOLD_=2147483648 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=268435456):

    PYTHONPATH=src:benchmarks /work/peers/venv/bin/python benchmarks/alpha_one_library.py lstm-1-32 certnn \\
        --samples 100 --chunk 100 --save out/lstm_certnn.pt
    ... lstm-1-32 auto --samples 100 --chunk 50 --save out/lstm_auto.pt
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import alpha_vs_autolirpa as av  # noqa: E402
import sshape_vs_autolirpa as sshape  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(av.MODELS))
    p.add_argument("library", choices=("certnn", "auto"))
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--chunk", type=int, default=None, help="samples per bound call (default: all)")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save", default=None, help="file for the (N, S) margin lower bounds")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import certnn

    m, twin, xp, yp = av.load(a.model)
    x, y = av.first_correct(m, xp, yp, a.samples)
    n, st = len(y), av.MODELS[a.model]
    chunk = a.chunk or n
    C = sshape.margin_spec(y)
    g = certnn.from_torch(m, tuple(x.shape[1:]))
    bm = av.alirpa_module(twin, x if a.library == "auto" else x[:1], st.conv_mode, torch.float64, a.iterations)
    av.warm_up(g, bm, x, C, st.eps, st.clip, torch.float64)
    if a.library == "auto":
        def call(xs, Cs):
            return av.alirpa_lower(bm, xs, st.eps, Cs, st.clip, "CROWN-Optimized", torch.float64)
    else:
        del bm

        def call(xs, Cs):
            return av.certnn_lower(g, xs, st.eps, Cs, st.clip, "alpha-crown", a.iterations)
    lb, cpu, wall = av.timed(lambda: torch.cat([call(x[i:i + chunk], C[i:i + chunk]) for i in range(0, n, chunk)]))
    if a.save:
        torch.save(lb, a.save)
    print(json.dumps({"model": a.model, "library": a.library, "n": n, "chunk": chunk, "iterations": a.iterations,
                      "threads": a.threads, "cpu_s_per_sample": cpu / n, "wall_s": wall,
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                      "mean_lb": float(lb.mean())}), flush=True)


if __name__ == "__main__":
    main()
