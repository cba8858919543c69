"""`report --timeout`: every stage of the report (each method's radius search, the attack, CLEVER) runs
batch by batch while time is left (certify/deadline.py).

A sample is *decided* when every stage finished on it; samples of batches not started by the deadline are
undecided in that stage, and the report keeps them only as undecided (no radius, attack radius or
estimate; never counted in means, checks or plots). Without a deadline every stage runs once on all
samples, exactly as before. Random numbers (CLEVER's sampler, 'random' targets) are drawn per sample from
(seed, global sample index), so batches draw the same numbers as one call over all samples; FMN, the
default attack, draws none.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..certify.deadline import radius_in_time, run_until


@dataclass(frozen=True)
class _Values:
    """Per-sample values of one stage (joined over batches by certify.deadline.run_until)."""

    values: Tensor


def radius_stage(cert, x: Tensor, y: Tensor, search, deadline: float | None, progress=None, index_offset: int = 0):
    """(RadiusResult, decided mask (N,)) of one method's radius search; index_offset: global index of x[0]."""
    if deadline is None:
        return (cert.radius(x, y, search, progress=progress, index_offset=index_offset),
                torch.ones(x.shape[0], dtype=torch.bool))
    return radius_in_time(cert, x, y, search, deadline, progress=progress, index_offset=index_offset)


def values_stage(fn: Callable[[int, int], Tensor], n: int, batch: int,
                 deadline: float | None) -> tuple[Tensor, Tensor]:
    """(values (n,) float64, decided mask) of `fn(start, stop)` -> per-sample values; NaN where undecided."""
    if deadline is None:
        return fn(0, n).to(torch.float64), torch.ones(n, dtype=torch.bool)
    res, done = run_until(lambda i, j: _Values(fn(i, j).to(torch.float64)), n, batch, deadline,
                          lambda i, j: _Values(torch.full((j - i,), float("nan"), dtype=torch.float64)))
    return res.values, done
