"""Per-sample time and step callbacks of the certified radius search (certify/radius.py).

Each bound computation's time is shared among the samples it bounded (a sample whose search ends early costs
less); the rest of a batch's time (prediction, set-up) is shared evenly among the batch's samples.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

StepCallback = Callable[[dict], None]


class SearchClock:
    """Time spent per sample of one batch of the search, and the ``on_step(info)`` callback.

    ``info`` has: phase ('bracket' / 'bisection'), step (1-based), steps (of that phase), searching (samples
    bounded in that step), plus whatever ``extra`` holds (e.g. the batch number).
    """

    def __init__(self, n: int, on_step: StepCallback | None = None, extra: dict | None = None) -> None:
        self.spent = torch.zeros(n, dtype=torch.float64)
        self._on_step = on_step
        self._extra = dict(extra or {})

    @contextmanager
    def step(self, phase: str, k: int, steps: int, active: Tensor) -> Iterator[None]:
        """Times one bound computation over the samples ``active`` (indices into the batch)."""
        t0 = time.perf_counter()
        yield
        self.spent[active] += (time.perf_counter() - t0) / max(1, len(active))
        if self._on_step is not None:
            self._on_step({"phase": phase, "step": k + 1, "steps": steps, "searching": len(active),
                           **self._extra})

    def share(self, times: Tensor, batch: Tensor, searched: Tensor, elapsed: float) -> None:
        """Writes the batch's per-sample times into ``times``: the rest of ``elapsed`` evenly over ``batch``,
        plus each searched sample's own share of its bound computations."""
        rest = max(0.0, elapsed - float(self.spent.sum()))
        times[batch] = rest / max(1, len(batch))
        times[searched] += self.spent
