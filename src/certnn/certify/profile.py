"""Where the time of a certification run goes: the engines' `RunContext.timers` summed over every bound
computation of a run, plus the phases of the radius search and the command (loading, attack).

Seconds are wall-clock (time.perf_counter). Phases nest; `PHASES` documents each key:
the engine keys (`interval`, `intermediate`, `final`, ...) are summed over the bound computations, and
`backward`, `concretize`, `relax` lie inside `intermediate` / `final`; `search:*` contain the engine keys.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

#: what each timer key measures (shown by `--profile` and written beside the numbers in the JSON)
PHASES = {
    "load": "importing the model and reading the data",
    "bounds": "bound computations in total (everything below)",
    "interval": "interval (IBP) images of every node",
    "intermediate": "backward passes bounding intermediate (pre-activation) nodes",
    "final": "backward pass of the output specification",
    "backward": "part of intermediate + final: pushing coefficients back through the ops",
    "concretize": "part of intermediate + final: concretising linear bounds over the input set",
    "relax": "part of backward: relaxation lines of the activations",
    "planes": "part of backward: relaxation planes of two-input products",
    "zonotope": "zonotope engine passes",
    "alpha:evaluate": "alpha-crown: bound evaluations of the optimiser (includes intermediate / final)",
    "alpha:step": "alpha-crown: gradients of the bounds (autograd backward), Adam steps and projections",
    "search:bracket": "radius search: doubling / halving steps (bound computations inside)",
    "search:bisection": "radius search: bisection steps (bound computations inside)",
    "complete": "complete certification (branch and bound) of samples the method did not prove",
    "attack": "PGD attack radius search",
}
#: keys of RunContext.timers that are counts, not seconds (kept as maxima)
COUNT_KEYS = ("symbols", "peak_symbols")


class Profile:
    """Seconds per phase and counters, accumulated over a run (one per Certifier; the CLI adds its own)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int | float] = {}

    def add(self, timers: dict | None) -> None:
        """Add a RunContext's timers (seconds; COUNT_KEYS as maxima)."""
        for k, v in (timers or {}).items():
            if k in COUNT_KEYS:
                self.counts[k] = max(self.counts.get(k, 0), v)
            elif isinstance(v, (int, float)):
                self.seconds[k] = self.seconds.get(k, 0.0) + float(v)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    @contextmanager
    def phase(self, key: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0

    def merge(self, other: "Profile", prefix: str = "") -> None:
        for k, v in other.seconds.items():
            self.seconds[prefix + k] = self.seconds.get(prefix + k, 0.0) + v
        for k, v in other.counts.items():
            self.counts[prefix + k] = self.counts.get(prefix + k, 0) + v

    def to_dict(self) -> dict:
        """{"seconds": {phase: s}, "counts": {...}, "phases": {phase: what it measures}} (JSON's "timers")."""
        keys = sorted(self.seconds, key=lambda k: -self.seconds[k])
        return {"seconds": {k: self.seconds[k] for k in keys}, "counts": dict(self.counts),
                "phases": {k: PHASES[k.split("/")[-1]] for k in keys if k.split("/")[-1] in PHASES}}

    def rows(self) -> list[list]:
        """Table rows [phase, seconds, what] by decreasing time (for `--profile`)."""
        return [[k, s, PHASES.get(k.split("/")[-1], "")] for k, s in self.to_dict()["seconds"].items()]
