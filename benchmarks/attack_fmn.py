"""Issue 17 benchmark: the minimum-norm attack (FMN, the default upper bound) against PGD bisection (the
previous default of `certnn radius --attack`) and the CROWN certified radius search, on the same samples.

    python benchmarks/attack_fmn.py                    # both models, L-inf and L2, 20 images each
    python benchmarks/attack_fmn.py --quick            # 10 images, mnist_2_20 only
    python benchmarks/attack_fmn.py --models mnist_2_20 --norms 2 --samples 50

Models: `mnist_2_20` (the 784-20-10 MLP of ../shared/data/models/abcrown_misc, MNIST in [0, 1]) and
`6x100_relu` (benchmarks/mlp_mnist.py's MLP, trained on first use and cached in benchmarks/out/models).
Protocol: the first N correctly classified MNIST test images, pixels in [0, 1], the ball clipped to [0, 1]
(README's `--clip 0 1`), untargeted, float64 certification; settings as the CLI's defaults: CROWN with 14
bisection steps, PGD bisection with 100 steps x 5 restarts and eps_max 1e3 (`radius --attack
--attack-method pgd`), FMN with 50 steps x 3 restarts (`radius --attack`). Each of the three runs once on
the whole batch in one process, one thread; times are process CPU seconds per sample. Checks: no attack
radius below a certified radius (a soundness bug otherwise). Writes benchmarks/out/attack_fmn.jsonl and
prints the Markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, append_jsonl, markdown_table  # noqa: E402


def load(name: str):

    if name == "mnist_2_20":
        m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 20), torch.nn.ReLU(), torch.nn.Linear(20, 10))
        m.load_state_dict(torch.load(SHARED / "models/abcrown_misc/mnist_2_20.pt", weights_only=True))
        return m.eval(), "[0,1]"
    if name == "6x100_relu":
        from mlp_mnist import trained

        return trained("6x100_relu"), "[-0.5,0.5]"
    raise SystemExit(f"unknown model {name}")


def run(name: str, norm: str, n: int) -> dict:
    import certnn
    from certnn.attacks import FMNConfig, PGDConfig, attack_radius
    from certnn.data.mnist import load_mnist_test

    m, scale = load(name)
    x, y = load_mnist_test(SHARED)
    x, y = x[:1000].double(), y[:1000]
    shift = 0.5 if scale == "[-0.5,0.5]" else 0.0  # 6x100 was trained on x - 0.5
    graph = certnn.from_torch(torch.nn.Sequential(_Shift(shift), m) if shift else m, (1, 28, 28))
    with torch.no_grad():
        ok = graph.forward(x).argmax(1) == y
    idx = torch.nonzero(ok).flatten()[:n]
    x, y = x[idx], y[idx]
    clip = (0.0, 1.0)
    rec = {"model": name, "norm": norm, "samples": len(y), "clip": list(clip), "threads": torch.get_num_threads()}

    t0 = time.process_time()
    cert = certnn.Certifier(graph, certnn.CertifyConfig(method="crown", norm=norm, clip=clip))
    cr = cert.radius(x, y, certnn.RadiusConfig(bisection_steps=14))
    rec["crown_s"] = (time.process_time() - t0) / len(y)
    rec["crown_radius"] = float(cr.certified_radius.mean())

    t0 = time.process_time()
    pg = attack_radius(graph, x, y, norm, PGDConfig(steps=100, restarts=5, seed=0), clip=clip, eps_max=1e3)
    rec["pgd_s"] = (time.process_time() - t0) / len(y)

    t0 = time.process_time()
    fm = attack_radius(graph, x, y, norm, FMNConfig(), clip=clip)
    rec["fmn_s"] = (time.process_time() - t0) / len(y)

    both = torch.isfinite(pg.radius) & torch.isfinite(fm.radius)
    rec["found_pgd"], rec["found_fmn"] = int(torch.isfinite(pg.radius).sum()), int(torch.isfinite(fm.radius).sum())
    rec["pgd_radius"] = float(pg.radius[both].mean())
    rec["fmn_radius"] = float(fm.radius[both].mean())
    rec["fmn_over_pgd"] = rec["fmn_radius"] / rec["pgd_radius"]
    rec["fmn_s_over_crown_s"] = rec["fmn_s"] / rec["crown_s"]
    rec["fmn_below_certified"] = int((fm.radius < cr.certified_radius).sum())
    rec["pgd_below_certified"] = int((pg.radius < cr.certified_radius).sum())
    rec["per_sample_ratio_max"] = float((fm.radius[both] / pg.radius[both]).max())
    return rec


class _Shift(torch.nn.Module):
    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x - self.c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mnist_2_20,6x100_relu", help="comma-separated: mnist_2_20, 6x100_relu")
    p.add_argument("--norms", default="inf,2", help="comma-separated norms")
    p.add_argument("--samples", type=int, default=20, help="correctly classified test images per run")
    p.add_argument("--quick", action="store_true", help="10 images, mnist_2_20 only")
    p.add_argument("--jsonl", default=str(OUT / "attack_fmn.jsonl"), help="records appended here")
    a = p.parse_args()
    if a.quick:
        a.samples, a.models = 10, "mnist_2_20"
    torch.set_num_threads(1)
    load_avg = os.getloadavg()[0]
    rows = []
    for name in a.models.split(","):
        for norm in a.norms.split(","):
            rec = run(name, norm, a.samples)
            rec["load_avg_1min"] = load_avg
            append_jsonl(Path(a.jsonl), rec)
            print(json.dumps(rec), flush=True)
            rows.append([name, f"L{norm}", rec["samples"], rec["crown_radius"], rec["pgd_radius"], rec["fmn_radius"],
                         rec["fmn_over_pgd"], rec["crown_s"], rec["pgd_s"], rec["fmn_s"], rec["fmn_s_over_crown_s"],
                         rec["fmn_below_certified"] + rec["pgd_below_certified"]])
    print(markdown_table(["model", "norm", "N", "CROWN certified (mean)", "PGD-bisection attack (mean)",
                          "FMN attack (mean)", "FMN / PGD", "CROWN s/sample", "PGD s/sample", "FMN s/sample",
                          "FMN / CROWN time", "attack < certified"], rows))


if __name__ == "__main__":
    main()
