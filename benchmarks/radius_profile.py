"""Where the time of a certified-radius search goes (certify/profile.py), on the 6x100 ReLU MNIST MLP.

Runs `Certifier.radius` (CROWN by default, untargeted, L-inf, inputs x - 0.5 as in mlp_mnist.py) and prints
CPU time, wall time, bound calls and the per-phase timers; `--compare` also runs the search with the
variants named in --variants and writes one Markdown row each to benchmarks/out/radius_profile.md.

The trained model is benchmarks/out/models/mnist_6x100_relu.pt (mlp_mnist.py trains it; it is looked for in
this worktree and in ../main/); without it, or without MNIST in ../shared/data, random weights and random
inputs are used (the table says which).

Small:  python benchmarks/radius_profile.py --samples 8 --bisection-steps 6
Full:   python benchmarks/radius_profile.py --samples 100 --batch-size 100 --threads 1
alpha-crown's search from CROWN's radius (certify/staged_search.py) against the plain one, interleaved:
        python benchmarks/radius_profile.py --method alpha-crown --crown-stage-ab 2 --samples 20 --batch-size 20 \
            --bisection-steps 10
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, REPO, SHARED, markdown_table  # noqa: E402


def _model_and_data(samples: int):
    from mlp_mnist import build

    m = build("6x100_relu")
    source = "random weights, random inputs"
    for p in (OUT / "models" / "mnist_6x100_relu.pt",
              REPO.parent / "main" / "benchmarks" / "out" / "models" / "mnist_6x100_relu.pt"):
        if p.is_file():
            m.load_state_dict(torch.load(p, weights_only=True))
            source = f"trained ({p.name})"
            break
    m.eval().double()
    try:
        from certnn.data.mnist import load_mnist_test

        x, y = load_mnist_test(SHARED)
        x = x[:4 * samples].double() - 0.5
        source += ", MNIST test images"
    except Exception:  # noqa: BLE001  (no data: random inputs, labels = predictions)
        x = torch.rand(4 * samples, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) - 0.5
        y = None
    with torch.no_grad():
        pred = m(x).argmax(1)
    y = pred if y is None else y[:x.shape[0]]
    keep = torch.nonzero(pred == y).flatten()[:samples]
    return m, x[keep], y[keep], source


def run_once(model, x, y, method: str, batch: int, steps: int, dtype: str, crown_stage: bool = True) -> dict:
    import certnn

    cert = certnn.Certifier(model, certnn.CertifyConfig(method=method, batch_size=batch), (1, 28, 28), dtype=dtype)
    c0, w0 = time.process_time(), time.perf_counter()
    res = cert.radius(x, y, certnn.RadiusConfig(bisection_steps=steps, crown_stage=crown_stage))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"cpu_s": cpu, "wall_s": wall, "evaluations": res.evaluations, "mean_radius":
            float(res.certified_radius.mean()), "radii": res.certified_radius, "profile": cert.profile.to_dict()}


def crown_stage_ab(model, x, y, a) -> None:
    """Plain and staged searches alternated `a.crown_stage_ab` rounds: CPU s, bound calls (the method's, and
    the CROWN stage's), mean radius, and the staged / plain radius ratio per sample (min / max)."""
    rows, radii = [], {}
    for rnd in range(a.crown_stage_ab):
        for staged in (False, True):
            r = run_once(model, x, y, a.method, a.batch_size, a.bisection_steps, a.dtype, staged)
            counts = r["profile"]["counts"]
            radii[staged] = r["radii"]
            rows.append([rnd + 1, "staged" if staged else "plain", r["cpu_s"], counts.get("bound_calls", 0),
                         counts.get("crown_stage/bound_calls", 0), r["mean_radius"]])
        q = radii[True] / radii[False]
        rows[-1].append(f"{float(q.min()):.4f} / {float(q.max()):.4f}")
    print(markdown_table(["round", "search", "CPU s", "bound calls", "CROWN-stage calls", "mean radius",
                          "staged / plain min / max"], rows))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--bisection-steps", type=int, default=14)
    ap.add_argument("--method", default="crown")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crown-stage-ab", type=int, default=0, metavar="ROUNDS",
                    help="alpha-crown: the plain and the staged search alternated this many rounds")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, x, y, source = _model_and_data(a.samples)
    if a.crown_stage_ab:
        print(f"{a.method}, 6x100 ({source}), {len(y)} samples, batch {a.batch_size}, {a.bisection_steps} steps, "
              f"{a.dtype}, {a.threads} thread(s)")
        return crown_stage_ab(model, x, y, a)
    r = run_once(model, x, y, a.method, a.batch_size, a.bisection_steps, a.dtype)
    prof = r.pop("profile")
    r.pop("radii")
    print(f"{a.method} radius, 6x100 ReLU MLP ({source}), {len(y)} samples, batch {a.batch_size}, "
          f"{a.bisection_steps} bisection steps, {a.dtype}, {a.threads} thread(s)")
    print(f"CPU {r['cpu_s']:.3f} s, wall {r['wall_s']:.3f} s, {r['evaluations']} batched bound calls, "
          f"mean certified radius {r['mean_radius']:.6g}; counts {prof['counts']}")
    rows = [[k, s, s / max(r["wall_s"], 1e-12), prof["phases"].get(k, "")] for k, s in prof["seconds"].items()]
    table = markdown_table(["phase", "wall s", "share", "what"], rows)
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "radius_profile.md").write_text(
        f"{a.method}, 6x100 ({source}), {len(y)} samples, batch {a.batch_size}, {a.bisection_steps} steps, "
        f"{a.dtype}, {a.threads} thread(s): CPU {r['cpu_s']:.3f} s, wall {r['wall_s']:.3f} s, "
        f"{r['evaluations']} bound calls\n\n{table}\n")


if __name__ == "__main__":
    main()
