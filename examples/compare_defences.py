"""Compare models on the same test sentences: clean accuracy, certified accuracy, mean certified radius.

    CERTNN_DATA_DIR=../shared/data python examples/compare_defences.py [--data-dir D] [--models a.pt b.pt]

Without --models it trains two tiny LSTMs on a slice of the movie-review task, one plainly and one with
verified robust training (`certnn train --robust ibp`), and compares them; or pass your own bundles.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from certnn.cli.main import main as certnn_cli

torch.set_num_threads(1)
ap = argparse.ArgumentParser()
ap.add_argument("--data-dir", default=os.environ.get("CERTNN_DATA_DIR",
                                                     str(Path(__file__).resolve().parents[2] / "shared" / "data")))
ap.add_argument("--models", nargs="+", help="text bundles of one task (default: train two tiny ones)")
args = ap.parse_args()
if not (Path(args.data_dir) / "text" / "mr").is_dir():
    print(f"no movie-review data under {args.data_dir}: set CERTNN_DATA_DIR or pass --data-dir")
    sys.exit(0)
models = args.models
if models is None:
    tmp = Path(tempfile.mkdtemp())
    models = []
    base = ["train", "--task", "mr", "--data-dir", args.data_dir, "--limit", "300", "--max-len", "8",
            "--hidden", "8", "--epochs", "2", "--quiet"]
    for name, extra in (("plain", []), ("ibp", ["--robust", "ibp", "--eps", "0.05", "--norm", "2"])):
        p = str(tmp / f"mr_{name}.pt")
        assert certnn_cli([*base, *extra, "--out", p]) == 0
        models.append(p)
# the same CLI as `certnn compare --models ... --task mr --samples 4 --words -1 --eps 0.1 0.5`
rc = certnn_cli(["compare", "--models", *models, "--task", "mr", "--data-dir", args.data_dir, "--samples", "4",
                 "--method", "certrnn", "--norm", "2", "--words", "-1", "--eps", "0.1", "0.5",
                 "--bisection-steps", "6"])
sys.exit(rc)
