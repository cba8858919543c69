"""Issue 5 validation: CLEVER estimates beside certified radii (lower bounds) and attack radii (upper bounds).

    python benchmarks/clever_validation.py            # 100 images, MNIST MLPs 6x100_relu, 3x1024_relu, 3x1024_tanh
    python benchmarks/clever_validation.py --quick    # 20 images, 6x100_relu only

The CLEVER paper (Weng et al., ICLR 2018) reports, in kind, that CLEVER scores lie close to but above the
attack-free certificates (Fast-Lin / CROWN style lower bounds) and below the distortions of strong attacks
on most samples. This script measures exactly that on the same samples: per model and norm, the means of
CROWN and Fast-Lin certified radii, the CLEVER estimate and the PGD attack radius, and the fractions of
correctly classified samples with CLEVER >= CROWN and with CLEVER <= attack. Protocol of the seeds: inputs
in [-0.5, 0.5], ball not clipped, untargeted. Models are the MLP benchmark's (trained and cached by
benchmarks/mlp_mnist.py). Writes benchmarks/out/clever_validation.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, markdown_table  # noqa: E402
from mlp_mnist import trained  # noqa: E402


def run(name: str, norm: str, n: int, clever_samples: int) -> dict:
    import certnn
    from certnn.data.mnist import load_mnist_test
    from certnn.estimate import CleverConfig
    from certnn.report.build import build_report

    m = trained(name)
    x, y = load_mnist_test(SHARED)
    x, y = x[:1000].double() - 0.5, y[:1000]
    g = certnn.from_torch(m, (1, 28, 28))
    with torch.no_grad():
        ok = g.forward(x).argmax(1) == y
    idx = torch.nonzero(ok).flatten()[:n]
    x, y = x[idx], y[idx]
    t0 = time.perf_counter()
    rep = build_report(g, x, y, norm, ["crown", "fastlin"], clip=None, attack=True, clever=True, seed=0,
                       clever_config=CleverConfig(n_batches=50, n_samples=max(1, clever_samples // 50), seed=0),
                       batch_size=50)
    cr, fl, cl, at = rep.radii["crown"], rep.radii["fastlin"], rep.clever_estimate, rep.attack_radius
    fin = torch.isfinite(at)
    return {"model": name, "norm": norm, "n": len(y), "crown": float(cr.mean()), "fastlin": float(fl.mean()),
            "clever": float(cl.mean()), "attack": float(at[fin].mean()), "attack_found": int(fin.sum()),
            "clever_ge_crown": float((cl >= cr).double().mean()),
            "clever_le_attack": float((cl[fin] <= at[fin]).double().mean()),
            "violations": rep.summary["violations"], "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="6x100_relu,3x1024_relu,3x1024_tanh")
    p.add_argument("--norms", default="2,inf")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--clever-samples", type=int, default=1000, help="gradient samples per image (50 batches)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.models, a.samples = "6x100_relu", 20
    torch.set_num_threads(a.threads)
    rows, recs = [], []
    for name in a.models.split(","):
        for norm in a.norms.split(","):
            r = run(name, norm, a.samples, a.clever_samples)
            recs.append(r)
            print(json.dumps(r), flush=True)
            rows.append([r["model"], "L" + norm, r["n"], r["fastlin"], r["crown"], r["clever"], r["attack"],
                         f"{r['clever_ge_crown']:.0%}", f"{r['clever_le_attack']:.0%}", r["violations"]])
    cols = ["model", "norm", "n", "Fast-Lin (certified)", "CROWN (certified)", "CLEVER (estimate)",
            "PGD attack (upper)", "CLEVER >= CROWN", "CLEVER <= attack", "certified > attack"]
    OUT.mkdir(parents=True, exist_ok=True)
    md = OUT / "clever_validation.md"
    md.write_text("Means over correctly classified MNIST test images (inputs in [-0.5, 0.5], unclipped, "
                  "untargeted)\n\n" + markdown_table(cols, rows) + "\n")
    (OUT / "clever_validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    print(md.read_text())


if __name__ == "__main__":
    main()
