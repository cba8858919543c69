"""alpha-CROWN's memory, measured before a run, so that the memory budget holds for it too.

engine/memory.plan_chunks sizes batches for CROWN, whose backward pass keeps a few coefficient tensors
alive. alpha-CROWN keeps far more: the autograd graph of every backward pass of an iteration (each refined
intermediate bound and the output's), its parameters and Adam's moments. On a 1-layer LSTM with 32 units
and 4 frames that is ~0.13 GB per sample (auto_LiRPA's CROWN-Optimized ~0.15 GB), twenty times CROWN's
need, so a batch that CROWN's plan allows could take more than the machine has and the kernel would kill
the process mid-run.

So before the first batch the command runs the method on one sample (first-use costs, not measured), then
on PROBE_SAMPLES samples for PROBE_ITERATIONS iterations, and reads the rise of the process's peak resident size (Linux: the kernel's high-water mark,
reset before the probe via /proc/self/clear_refs, after returning the allocator's free pages). Memory per
sample is taken as that rise / PROBE_SAMPLES (a call's fixed costs included: an overestimate) times MARGIN
(measured on that LSTM and a GRU at batch 10: the peak after 20 iterations is 2% above the peak after 2,
and the batch's peak grows linearly with the batch), and the batch is cut to what the plan's room holds. Where even one sample does not fit,
the command stops before any bound is computed (MemoryBudgetError, exit 2). Where the kernel offers no
high-water mark, the plan is kept as it is.

Models small enough that a generous bound (SURE_FACTOR) fits are not probed (the probe took ~1 s even on
a 6-16-16-3 MLP whose run takes a tenth of that). The probe's sets lie at the run's largest eps (certify) or at four times the radius search's first eps:
the memory of alpha-CROWN on ReLU networks grows with the number of unstable neurons, so a radius search
that brackets far beyond that may need more; the memory guard (cli/memory_guard.py) still trims.
"""
from __future__ import annotations

import math
import time

from ..engine.memory import MemoryBudgetError, current_rss

PROBE_SAMPLES = 2
PROBE_ITERATIONS = 2
#: later iterations and allocator slack, over the probe's peak (see the module docstring)
MARGIN = 1.5
_MB = 2 ** 20


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
        return True
    except OSError:
        return False


def _high_water_mark() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rise(fn) -> int | None:
    """Bytes the resident size rose to above its level before `fn()` ran (None where it cannot be read)."""
    from .memory_guard import _malloc_trim

    trim = _malloc_trim()
    if trim is not None:
        trim(0)  # free heap pages would otherwise serve the probe without showing in the resident size
    base = current_rss()
    if not _reset_peak():
        return None
    fn()
    peak = _high_water_mark()
    return None if peak is None else max(0, peak - base)


def fit_alpha_batch(args, cert, x, y, eps: float, plan) -> None:
    """Cut `cert`'s batch size (its config is replaced) to what `plan.available` bytes hold for its method
    when that is alpha-CROWN (see the module docstring); records the measurement in args.memory_settings."""
    import torch

    from ..engine.methods import METHODS

    cfg = cert.config
    if METHODS[cfg.method].engine != "optimized" or cfg.batch_size <= 1 or x.shape[0] <= 1:
        return
    if _surely_fits(cert.graph, min(cfg.batch_size, x.shape[0]), plan.available):
        return  # small models: the probe would cost more than the run
    k = min(PROBE_SAMPLES, x.shape[0], cfg.batch_size)
    probe = _probe_certifier(cert, cfg.alpha.replace(iterations=min(PROBE_ITERATIONS, cfg.alpha.iterations)))
    xs, ys = cert._prep(x[:k], y[:k])
    target = cert.targets(cert.predict(xs), ys)
    e = torch.tensor(float(eps), dtype=cert.dtype)
    t0 = time.perf_counter()
    # one sample first, unmeasured: one-time costs (caches built on first use) are not per sample
    probe.margin_lower(xs[:1], ys[:1], e, None if target is None else target[:1])
    rise = peak_rise(lambda: probe.margin_lower(xs, ys, e, target))
    settings = getattr(args, "memory_settings", None)
    if rise is None:
        return
    per = MARGIN * rise / k
    if settings is not None:
        settings.update(alpha_mb_per_sample=round(per / _MB, 1), alpha_probe_s=round(time.perf_counter() - t0, 2))
    if per <= 0 or plan.available >= per * cfg.batch_size:
        return
    fits = int(plan.available // per)
    if fits < 1:
        raise MemoryBudgetError(
            f"{cfg.method} needs about {per / _MB:.0f} MB per sample on this model (measured on {k} samples, "
            f"{probe.config.alpha.iterations} iterations, with a {MARGIN}x margin) and the memory budget leaves "
            f"{plan.available / _MB:.0f} MB for bounds; raise --max-memory, or use --method crown (a small "
            f"fraction of this)")
    cert.config = cfg.replace(batch_size=fits)
    if settings is not None:
        settings["batch_size_used"] = fits


#: a generous bound of alpha's bytes per sample, SURE_FACTOR * 8 * V^2 for a graph of V values per sample
#: (every start's rows times every node's values, parameters, Adam's moments and saved tensors): measured
#: 0.13-0.18 GB on the LSTM / GRU above where it gives 6.0 / 6.3 GB, 14 MB on the 6x100 MLP where it gives
#: 3.7 GB; only a heuristic guard for skipping the probe, never a reason to cut a batch
SURE_FACTOR = 64


def _surely_fits(graph, batch: int, room: int) -> bool:
    values = sum(math.prod(n.shape) for n in graph.nodes.values())
    return SURE_FACTOR * 8 * values ** 2 * batch <= room


def fitted_batch(args, graph, methods, x, y, plan, clip, eps: float) -> int:
    """plan.batch_size, cut for the first alpha-CROWN method of `methods` (`certnn report` runs every method
    at one batch size)."""
    from ..certify.radius import Certifier, CertifyConfig
    from ..engine.methods import METHODS
    from .common import alpha_config
    from .precision_args import precision_kwargs

    opt = [m for m in methods if METHODS[m].engine == "optimized"]
    if not opt:
        return plan.batch_size
    cfg = CertifyConfig(method=opt[0], norm=args.norm, target=args.target, clip=clip, seed=args.seed,
                        batch_size=plan.batch_size, max_rows=plan.max_rows, alpha=alpha_config(args))
    cert = Certifier(graph, cfg, tuple(x.shape[1:]), **precision_kwargs(args))
    fit_alpha_batch(args, cert, x, y, eps, plan)
    return cert.config.batch_size


def _probe_certifier(cert, alpha):
    """A copy of `cert` with `alpha` as its optimiser settings and a profile of its own (the probe's time
    is not the run's bounds)."""
    import copy

    from ..certify.profile import Profile

    probe = copy.copy(cert)
    probe.config = cert.config.replace(alpha=alpha)
    probe.profile = Profile()
    return probe


__all__ = ["fit_alpha_batch", "fitted_batch", "peak_rise", "PROBE_SAMPLES", "PROBE_ITERATIONS", "MARGIN"]
