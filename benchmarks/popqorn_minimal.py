"""How fast can POPQORN's bound be at all in torch? A hand-written pass for popqorn_original.py's one model.

Issue 13 asks certnn's `popqorn` to be >= 10x faster per sample than the original POPQORN code. This script
writes the same bound (certnn's `popqorn`: back-substitution of every frame's pre-activation bounds to the
first frame, the blend tangent / chord tanh lines of relax/sshape.py, per-frame L2 balls read through a QR
of the input weight) as ~40 lines of batched torch for this one architecture: no graph, no engine, no
generality, no rounding charges, both sides' rows stacked into one product per step. It is not a verifier
(its bound is not sound under rounding, nothing is checked); it is the cost of the method with all of
certnn's machinery taken away. Its margin bound is compared with certnn's `popqorn` at the same eps (they
must agree to rounding, else it is not the same method); its time per evaluation times the evaluations of
certnn's radius search (no search overhead) is set beside certnn's and the original's search times per
sample, all in one process, CPU time, one thread: at batch 1, N in one call, and N in chunks (certnn:
batch_size = chunk; the elementwise passes over the (chunk, 128, 64) coefficients then stay in cache).

    PYTHONPATH=src:benchmarks python benchmarks/popqorn_minimal.py --samples 100 --popqorn /work/peers/POPQORN
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


class MinimalPopqorn:
    """h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), logits = W_o h_T + b_o; eps: (B,) per-frame L2 radius."""

    def __init__(self, m):
        sd = {k: v.double() for k, v in m.state_dict().items()}
        self.w_ih, self.w_hh = sd["rnn.weight_ih_l0"], sd["rnn.weight_hh_l0"]
        self.b = sd["rnn.bias_ih_l0"] + sd["rnn.bias_hh_l0"]
        self.w_o, self.b_o = sd["fc.weight"], sd["fc.bias"]
        self.r_t = torch.linalg.qr(self.w_ih.T).R.T.contiguous()  # ||a W_ih||_2 = ||a R^T||_2

    def margin_lower(self, x, y, target, eps):
        from certnn.relax import TANH, sshape_relaxation

        B, T, _ = x.shape
        p = x @ self.w_ih.T + self.b  # (B, T, n): each frame's pre-activation at the centre
        rad = eps[:, None] * self.w_ih.norm(dim=1)
        lines = [sshape_relaxation(TANH, p[:, 0] - rad, p[:, 0] + rad)]
        for t in range(1, T):  # frame t's rows: W_hh on h_{t-1}, plus its own centre and ball
            lo, up = self._back(self.w_hh.expand(B, -1, -1), p[:, t], rad, p, eps, t, lines)
            lines.append(sshape_relaxation(TANH, lo, up))
        c = torch.nn.functional.one_hot(y, 10).double() - torch.nn.functional.one_hot(target, 10).double()
        lo, _ = self._back((c @ self.w_o)[:, None], (c @ self.b_o)[:, None], None, p, eps, T, lines)
        return lo[:, 0]

    def _back(self, a, centre, rad, p, eps, t, lines):
        """Bounds of a (B, r, n) h_{t-1} + centre -+ rad: both sides where rad is given, else the lower."""
        both = rad is not None
        if both:  # rows [a; -a]: the upper bound is minus the lower bound of -a
            a, const = torch.cat([a, -a], 1), torch.cat([centre - rad, -centre - rad], 1)
        else:
            const = centre
        for k in range(t - 1, -1, -1):
            rel = lines[k]
            pos, neg = a.clamp(min=0), a.clamp(max=0)
            const = const + (pos @ rel.lower_bias[..., None] + neg @ rel.upper_bias[..., None])[..., 0]
            a = pos * rel.lower_slope[:, None] + neg * rel.upper_slope[:, None]
            const = const + (a @ p[:, k, :, None])[..., 0] - eps[:, None] * (a @ self.r_t).norm(dim=2)
            if k:
                a = a @ self.w_hh
        if not both:
            return const, None
        r = const.shape[1] // 2
        return const[:, :r], -const[:, r:]


def certnn_margin(graph, x, y, target, eps):
    import certnn

    cfg = certnn.CertifyConfig(method="popqorn", norm="inf", frame_norm="2", target="random")
    with torch.no_grad():
        return certnn.Certifier(graph, cfg).margin_lower(x, y, eps, target)[:, 0]


def timed(fn, reps: int) -> float:
    fn()
    c0 = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - c0) / reps


def per_sample(fn, x, y, target, eps, k: int, chunk: int, reps: int) -> dict:
    """CPU s per sample of fn(x, y, target, eps, offset) at batch 1 (the first k), N in chunks, N at once."""
    n = len(x)
    one = sum(timed(lambda: fn(x[i:i + 1], y[i:i + 1], target[i:i + 1], eps[i:i + 1], i), reps) for i in range(k))
    chunks = timed(lambda: [fn(x[i:i + chunk], y[i:i + chunk], target[i:i + chunk], eps[i:i + chunk], i)
                            for i in range(0, n, chunk)], reps)
    return {"1": one / k, "chunks": chunks / n, "n": timed(lambda: fn(x, y, target, eps, 0), reps) / n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--batch1", type=int, default=10, help="samples timed one at a time")
    p.add_argument("--chunk", type=int, default=20, help="batch N also timed in chunks of this many samples")
    p.add_argument("--popqorn", default=None, help="a POPQORN checkout: time the original in this run too")
    p.add_argument("--label", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    m, graph, x, y, target = po.model_and_inputs(1, a.samples)
    n, k = len(x), min(a.batch1, len(x))
    mini = MinimalPopqorn(m)
    eps = torch.full((n,), 0.099, dtype=torch.float64)  # about the mean certified radius of this model
    with torch.no_grad():
        ours, theirs = mini.margin_lower(x, y, target, eps), certnn_margin(graph, x, y, target, eps)
        gap = ((ours - theirs).abs() / theirs.abs().clamp(min=1e-3)).max().item()
        hand = per_sample(lambda *v: mini.margin_lower(*v[:4]), x, y, target, eps, k, a.chunk, 5)
    # the searches: certnn's batch_size = the batch; the original: its own call on the same samples
    certnn_t = {}
    for key, bs in (("1", 1), ("chunks", a.chunk), ("n", n)):
        sub = (x[:k], y[:k]) if key == "1" else (x, y)
        certnn_t[key] = timed(lambda: po.certnn_search(graph, *sub, "popqorn", "2", 0.1, bs), 1) / len(sub[0])
    evals = po.certnn_search(graph, x, y, "popqorn", "2", 0.1, n)[1]
    orig = {}
    if a.popqorn:
        bvr = po.load_original(Path(a.popqorn))
        orig = per_sample(lambda xs, ys, ts, _e, _o: po.original_search(bvr, m, xs, ys, ts, 2, 0.1),
                          x, y, target, eps, k, n, 1)
    rows = []
    for key, batch in (("1", 1), ("chunks", f"{n} in chunks of {a.chunk}"), ("n", n)):
        search, o = hand[key] * evals, orig.get("n" if key == "chunks" else key)
        append_jsonl(OUT / "popqorn_minimal.jsonl", {
            "label": a.label, "batch": batch, "samples": n, "eval_cpu_s_per_sample": hand[key],
            "search_cpu_s_per_sample": search, "evaluations": evals, "certnn_popqorn_s_per_sample": certnn_t[key],
            "original_s_per_sample": o, "max_rel_gap_to_certnn": gap, "loadavg": list(os.getloadavg())})
        ratio = (lambda t: f"{o / t:.1f}x") if o else (lambda t: "-")
        rows.append([batch, f"{hand[key] * 1e3:.2f}", evals, f"{search:.4f}", f"{certnn_t[key]:.4f}",
                     f"{o:.4f}" if o else "-", ratio(search), ratio(certnn_t[key])])
    print(f"one thread, float64; margins vs certnn popqorn: max relative gap {gap:.1e}; "
          f"load {os.getloadavg()[0]:.1f}")
    print(markdown_table(["batch (original: all N in one call)", "hand-written ms / sample / eval", "evals",
                          "hand-written search s/sample", "certnn popqorn s/sample", "original s/sample",
                          "speed-up hand-written", "speed-up certnn"], rows))


if __name__ == "__main__":
    main()
