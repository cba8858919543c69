"""Peak memory of CROWN under a memory budget (--max-memory), against the same run without one.

Each row runs in its own child process (peak RSS of that process, glibc settings of the `certnn` command):
an unbudgeted run (all samples in one batch, the engine's default chunking) and budgeted runs (samples and
rows planned by certnn.engine.memory.plan_chunks). The table gives the peak RSS per row, whether it stayed
within the budget, and the largest difference of any bound from the unbudgeted run (the bounds must not
change).

    python benchmarks/memory_budget.py                         # full size: 784-4096-4096-10 MLP (20 samples),
                                                               # 3-conv CNN on 3x64x64 (5 samples); budgets 2G, 1G
    python benchmarks/memory_budget.py --size small --budgets 600M   # about a minute
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZES = {  # (MLP widths, MLP samples, CNN channels, CNN side, CNN samples)
    "full": ((784, 4096, 4096, 10), 20, (16, 32, 64), 64, 5),
    "small": ((784, 1024, 1024, 10), 8, (8, 16, 32), 32, 3),
}


def build(kind: str, size: str):
    import torch

    widths, n_mlp, chans, side, n_cnn = SIZES[size]
    torch.manual_seed(0)
    if kind == "mlp":
        layers: list = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1])
        return model, (widths[0],), n_mlp, 0.005
    c1, c2, c3 = chans
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, c1, 3, stride=1, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(c1, c2, 4, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(c2, c3, 4, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(c3 * (side // 4) ** 2, 10))
    return model, (3, side, side), n_cnn, 1 / 255


def child(kind: str, size: str, budget: str) -> dict:
    import torch

    import certnn
    from certnn.certify.bounds import bounds_for_spec, make_spec
    from certnn.engine.memory import parse_size, peak_rss, plan_chunks

    model, shape, n, eps = build(kind, size)
    graph = certnn.from_torch(model.double().eval(), shape)
    x = torch.rand((n,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    batch, rows = n, 4096
    if budget != "none":  # as the CLI does (cli/budgets.py): plan, then guard the resident size
        from certnn.cli.memory_guard import guard_memory

        plan = plan_chunks(graph, parse_size(budget), n)
        batch, rows = plan.batch_size, plan.max_rows
        guard_memory(plan.trim_above)
    t0 = time.process_time()
    los, his = [], []
    for i in range(0, n, batch):
        lo, hi, _ = bounds_for_spec(graph, make_spec(graph, x[i:i + batch], eps, "inf", (0.0, 1.0)), "crown",
                                    max_rows=rows)
        los.append(lo)
        his.append(hi)
    from certnn.cli.memory_guard import release_guard

    trims = release_guard()
    return {"lower": torch.cat(los).tolist(), "upper": torch.cat(his).tolist(), "batch": batch, "rows": rows,
            "cpu_s": time.process_time() - t0, "peak_mb": peak_rss() / 2 ** 20, "trims": trims}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, metavar=("KIND", "SIZE", "BUDGET"), help=argparse.SUPPRESS)
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--budgets", default="2G,1G", help="comma-separated budgets (8G, 512M, ...)")
    ap.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    from common import markdown_table, run_child

    from certnn.engine.memory import parse_size

    script = Path(__file__).resolve()
    rows = []
    for kind in args.models.split(","):
        ref = run_child(script, [kind, args.size, "none"])
        rows.append([kind, args.size, "none", ref["batch"], ref["rows"], ref["peak_mb"], "-", 0.0, 0, ref["cpu_s"]])
        for b in args.budgets.split(","):
            r = run_child(script, [kind, args.size, b])
            diff = max(abs(a - c) for key in ("lower", "upper")
                       for ra, rc in zip(r[key], ref[key]) for a, c in zip(ra, rc))
            within = r["peak_mb"] <= parse_size(b) / 2 ** 20
            rows.append([kind, args.size, b, r["batch"], r["rows"], r["peak_mb"], "yes" if within else "NO", diff,
                         r["trims"], r["cpu_s"]])
    table = markdown_table(["model", "size", "budget", "samples/batch", "rows/pass", "peak RSS MB", "peak <= budget",
                            "max |bound - unbudgeted|", "allocator trims", "CPU s"], rows)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
