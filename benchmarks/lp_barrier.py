"""Issue 12's radius target against the convex barrier: how far can any single-neuron relaxation go?

alpha-CROWN's bound is the value of a dual-feasible point of the LP whose every unstable ReLU is relaxed to
its triangle over the intermediate bounds in use, and its intermediate bounds are such bounds themselves; so
by induction no choice of slopes ever beats "LP-all" (Salman et al., NeurIPS 2019): the triangle LP with
every layer's pre-activation bounds computed by the same LP, two per neuron. The LP-all certified radius is
therefore a ceiling on the alpha-crown radius of any implementation at any number of iterations. This
benchmark measures, per model, the mean certified L_inf radius of certnn `crown` and `alpha-crown`
(Certifier.radius, 10 log-space bisection steps) and of LP-all (HiGHS, bisection in log space from the larger
of the two radii; the lower end checked by LP-all too), on the first N correctly classified MNIST test images
(mlp_mnist.py's models and protocol: inputs x - 0.5, no clip, untargeted).

    PYTHONPATH=src:benchmarks python benchmarks/lp_barrier.py --models 6x100_relu --samples 10
    # cheaper, for bigger nets: one LP-all check per sample at 1.15 x its crown radius
    PYTHONPATH=src:benchmarks python benchmarks/lp_barrier.py --models 9x200_relu --samples 10 --at-ratio 1.15

The LP-all here is a measuring stick, not a certificate: HiGHS' tolerances (1e-7) are not accounted for, and
a rounding error could only make its radius (the ceiling) larger. Neurons whose interval bounds (from the
LP-all bounds of the layer before) are already stable are not sent to the LP: their relaxation is exact
whatever the bound, and LP-all's bounds are inside the interval ones.
Writes benchmarks/out/lp_barrier.jsonl and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, append_jsonl, markdown_table  # noqa: E402


class LpAll:
    """The LP-all relaxation of one ReLU MLP (weights Ws, biases bs) around one input, built with the MILP
    stage's HiGHS model helper (certnn.engine.milp._Model: columns, rows in bulk)."""

    def __init__(self, Ws: list[np.ndarray], bs: list[np.ndarray]):
        import highspy

        self.hp = highspy
        self.Ws, self.bs = Ws, bs

    def _minimise(self, m, cols: np.ndarray, c: np.ndarray) -> float:
        cost = np.zeros(m.n)
        cost[cols] = c
        m.h.changeColsCost(m.n, np.arange(m.n, dtype=np.int32), cost)
        m.h.run()
        if m.h.getModelStatus() != self.hp.HighsModelStatus.kOptimal:
            raise RuntimeError(f"HiGHS: {m.h.getModelStatus()}")
        return m.h.getInfo().objective_function_value

    def _layer_bounds(self, m, prev: np.ndarray, W, b, lo_i, hi_i):
        """LP bounds of W a_prev + b for the neurons whose interval bounds (lo_i, hi_i) straddle 0."""
        lo, hi = lo_i.copy(), hi_i.copy()
        for j in np.nonzero((lo_i < 0) & (hi_i > 0))[0]:
            lo[j] = self._minimise(m, prev, W[j]) + b[j]
            hi[j] = -self._minimise(m, prev, -W[j]) + b[j]
        return lo, hi

    def certified(self, x0: np.ndarray, eps: float, y: int) -> bool:
        """Is min over j != y of (f_y - f_j) > 0 on the L_inf ball by LP-all?"""
        from certnn.engine.milp import _Model

        m = _Model(self.hp)
        prev_lo, prev_hi = x0 - eps, x0 + eps
        prev = m.cols(prev_lo, prev_hi)  # columns of the previous layer's outputs (the input first)
        live = np.ones(len(x0), bool)  # the previous layer's neurons that have a column (relu not always 0)
        for k, (W, b) in enumerate(zip(self.Ws, self.bs)):
            W = W[:, live]
            Wp, Wn = np.clip(W, 0, None), np.clip(W, None, 0)
            lo_i, hi_i = Wp @ prev_lo + Wn @ prev_hi + b, Wp @ prev_hi + Wn @ prev_lo + b
            if k == len(self.Ws) - 1:
                return all(self._minimise(m, prev, W[y] - W[j]) + b[y] - b[j] > 0
                           for j in range(len(b)) if j != y)
            lo, hi = (lo_i, hi_i) if k == 0 else self._layer_bounds(m, prev, W, b, lo_i, hi_i)
            live = hi > 0
            prev, prev_lo, prev_hi = self._add_relu(m, prev, W[live], b[live], lo[live], hi[live])
        raise AssertionError("unreachable")

    @staticmethod
    def _add_relu(m, prev, W, b, l, u):
        """Columns a = relu(W a_prev + b) of the live neurons (u > 0): exact on stable ones, the triangle on
        unstable ones. Returns the new columns and their bounds."""
        cols = m.cols(np.maximum(l, 0), u)
        k = len(cols)
        idx = np.concatenate([np.broadcast_to(prev, (k, len(prev))), cols[:, None]], 1)
        one = np.ones((k, 1))
        act = l >= 0
        # a - W a_prev = b on active neurons, >= b on unstable ones (a >= z)
        m.rows(b, np.where(act, b, m.inf), idx, np.concatenate([-W, one], 1))
        un = ~act
        if un.any():  # a <= s (z - l), s = u / (u - l): a - s W a_prev <= s (b - l)
            s = u[un] / (u[un] - l[un])
            m.rows(-m.inf, s * (b[un] - l[un]), idx[un], np.concatenate([-s[:, None] * W[un], one[un]], 1))
        return cols, np.maximum(l, 0), u


def lp_radius(lp: LpAll, x0: np.ndarray, y: int, lo: float, steps: int) -> tuple[float, int]:
    """LP-all radius by bisection in log space: bracket [lo, hi] (lo certified), `steps` halvings."""
    calls = 1
    if not lp.certified(x0, lo, y):
        return float("nan"), calls  # LP-all below a radius alpha-crown proved: a bug somewhere, shown as nan
    hi = 1.5 * lo
    while lp.certified(x0, hi, y):
        lo, hi, calls = hi, 2 * hi, calls + 1
    calls += 1
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        ok = lp.certified(x0, mid, y)
        calls += 1
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo, calls


def load(name: str, n: int):
    import mlp_mnist
    from certnn.data.mnist import load_mnist_test

    m = mlp_mnist.trained(name).double()
    x, y = load_mnist_test(SHARED)
    x, y = x[:1000].double() - 0.5, y[:1000].long()
    with torch.no_grad():
        idx = torch.nonzero(m(x).argmax(1) == y).flatten()[:n]
    return m, x[idx], y[idx]


def run_model(name: str, a) -> dict:
    import certnn
    from certnn.optimize import AlphaConfig

    m, x, y = load(name, a.samples)
    rec = {"model": name, "samples": len(y), "iterations": a.iterations, "lp_steps": a.lp_steps}
    radii = {}
    for method in ("crown", "alpha-crown"):
        cfg = certnn.CertifyConfig(method=method, norm="inf", batch_size=len(y),
                                   alpha=AlphaConfig(iterations=a.iterations))
        t0 = time.process_time()
        res = certnn.Certifier(m, cfg, input_shape=x.shape[1:]).radius(x, y, certnn.RadiusConfig(bisection_steps=10))
        radii[method] = res.certified_radius.double()
        rec[f"cpu_s_{method}"] = (time.process_time() - t0) / len(y)
    lins = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    lp = LpAll([l.weight.detach().numpy() for l in lins], [l.bias.detach().numpy() for l in lins])
    t0 = time.process_time()
    if a.at_ratio:
        return _at_ratio(rec, lp, x, y, radii, a.at_ratio, t0)
    lp_r, calls = [], 0
    for i in range(len(y)):
        start = float(torch.maximum(radii["crown"][i], radii["alpha-crown"][i]))
        r, c = lp_radius(lp, x[i].flatten().numpy(), int(y[i]), start, a.lp_steps)
        lp_r.append(r)
        calls += c
        print(f"  {name} #{i}: crown {radii['crown'][i]:.5f} alpha {radii['alpha-crown'][i]:.5f} lp-all {r:.5f}",
              flush=True)
    rec["cpu_s_lp_all"] = (time.process_time() - t0) / len(y)
    rec["lp_calls_per_sample"] = calls / len(y)
    crown = float(radii["crown"].mean())
    rec.update(radius_crown=crown, radius_alpha_crown=float(radii["alpha-crown"].mean()),
               radius_lp_all=float(np.mean(lp_r)))
    rec["ratio_alpha"] = rec["radius_alpha_crown"] / crown
    rec["ratio_lp_all"] = rec["radius_lp_all"] / crown
    rec["per_sample_lp_all_over_crown_max"] = float(max(r / float(c) for r, c in zip(lp_r, radii["crown"])))
    return rec


def _at_ratio(rec: dict, lp: LpAll, x, y, radii: dict, ratio: float, t0: float) -> dict:
    """One LP-all evaluation per sample at `ratio` x its crown radius: where it fails, no alpha-crown radius
    of that sample reaches the ratio."""
    ok = []
    for i in range(len(y)):
        eps = ratio * float(radii["crown"][i])
        ok.append(lp.certified(x[i].flatten().numpy(), eps, int(y[i])) if eps > 0 else False)
        print(f"  {rec['model']} #{i}: crown {radii['crown'][i]:.5f} alpha {radii['alpha-crown'][i]:.5f} "
              f"lp-all at {ratio} x crown: {'certified' if ok[-1] else 'not certified'}", flush=True)
    rec.update(at_ratio=ratio, lp_all_certified_at_ratio=int(sum(ok)), cpu_s_lp_all=(time.process_time() - t0) / len(y),
               radius_crown=float(radii["crown"].mean()), radius_alpha_crown=float(radii["alpha-crown"].mean()))
    rec["ratio_alpha"] = rec["radius_alpha_crown"] / rec["radius_crown"]
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="6x100_relu")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--iterations", type=int, default=20, help="alpha-crown iterations")
    p.add_argument("--lp-steps", type=int, default=7, help="LP-all bisection steps (log space)")
    p.add_argument("--at-ratio", type=float, default=None,
                   help="instead of LP-all's radius: one LP-all check per sample at this multiple of its crown radius")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--label", default="")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for name in a.models.split(","):
        rec = run_model(name, a)
        rec["label"] = a.label
        append_jsonl(OUT / "lp_barrier.jsonl", rec)
        if a.at_ratio:
            print(f"{name}: n={rec['samples']} crown {rec['radius_crown']:.5f} alpha {rec['radius_alpha_crown']:.5f} "
                  f"({rec['ratio_alpha']:.3f}x); LP-all certified at {a.at_ratio} x crown on "
                  f"{rec['lp_all_certified_at_ratio']} of {rec['samples']} ({rec['cpu_s_lp_all']:.1f} CPU s/sample)")
            continue
        rows.append([name, rec["samples"], f"{rec['radius_crown']:.5f}", f"{rec['radius_alpha_crown']:.5f}",
                     f"{rec['radius_lp_all']:.5f}", f"{rec['ratio_alpha']:.3f}", f"{rec['ratio_lp_all']:.3f}",
                     f"{rec['per_sample_lp_all_over_crown_max']:.3f}",
                     f"{rec['cpu_s_crown']:.2f} / {rec['cpu_s_alpha-crown']:.2f} / {rec['cpu_s_lp_all']:.1f}"])
    if rows:
        print(markdown_table(["model", "n", "crown", "alpha-crown", "LP-all", "alpha / crown", "LP-all / crown",
                              "max per-sample LP-all / crown", "CPU s/sample crown / alpha / LP-all"], rows))


if __name__ == "__main__":
    main()
