"""Run every benchmark of certnn and collect their Markdown tables (`make bench`).

    python benchmarks/run_all.py            # the default configuration of each benchmark
    python benchmarks/run_all.py --quick    # each benchmark's --quick setting (minutes, not hours)
    python benchmarks/run_all.py --only mlp_mnist,cnn_mnist

Each benchmark is a script in this folder that writes its table under benchmarks/out/ and prints it. The
numbers recorded in docs/benchmarks.md come from these runs. Benchmarks that need ../shared/data are
skipped with a message when it is absent. Nothing here is a timed test.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import SHARED  # noqa: E402

# name: (needs shared data, accepts --quick)
BENCHMARKS = {
    "product_planes_gap": (False, False),
    "mlp_mnist": (True, True),
    "cnn_mnist": (True, True),
    "rnn_mnist": (True, True),
    "zonotope_rnn_speed": (True, True),
    "vnncomp": (True, False),
    "clever_validation": (True, True),
    "robust_training": (True, True),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", help="comma-separated benchmark names")
    a = p.parse_args()
    names = a.only.split(",") if a.only else list(BENCHMARKS)
    failed = []
    for name in names:
        script = HERE / f"{name}.py"
        if name not in BENCHMARKS or not script.is_file():
            print(f"== {name}: no such benchmark, skipped", flush=True)
            continue
        needs_data, has_quick = BENCHMARKS[name]
        if needs_data and not SHARED.is_dir():
            print(f"== {name}: {SHARED} not found, skipped", flush=True)
            continue
        cmd = [sys.executable, str(script)] + (["--quick"] if a.quick and has_quick else [])
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        print(f"== {name}: exit {rc} after {time.time() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
