"""Time budgets for `radius` / `certify` / `report`: batches of samples run while time is left.

`run_until(fn, n, batch, deadline)` calls `fn(start, stop)` on consecutive slices of the n samples while
`time.perf_counter() < deadline`, and joins the results (tensors concatenated, counts added, lists joined)
into one result of the same type. A batch once started runs to its end (its results are proofs, never cut
short), so the deadline is checked between batches; samples of batches not started are *undecided*: the
returned `decided` mask is False there and their entries are placeholders (radius 0, certified False) that
the callers report as undecided, never as results.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

R = TypeVar("R")


def _join(parts: list[Any]) -> Any:
    """Join the results of consecutive sample slices (dataclasses of per-sample tensors)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    out = {}
    for f in dataclasses.fields(first):
        vals = [getattr(p, f.name) for p in parts]
        if vals[0] is None:
            out[f.name] = None
        elif isinstance(vals[0], Tensor):
            out[f.name] = torch.cat(vals, 0)
        elif isinstance(vals[0], (int, float)) and not isinstance(vals[0], bool):
            out[f.name] = sum(vals)
        elif isinstance(vals[0], list):
            out[f.name] = [v for p in vals for v in p]
        else:
            out[f.name] = vals[0]
    return type(first)(**out)


def run_until(fn: Callable[[int, int], R], n: int, batch: int, deadline: float | None,
              placeholder: Callable[[int, int], R]) -> tuple[R, Tensor]:
    """(joined result over all n samples, decided mask (n,) bool). `placeholder(start, stop)` gives the
    result object for samples that were not run (predictions only, no proof)."""
    parts, decided = [], torch.zeros(n, dtype=torch.bool)
    for i in range(0, n, batch):
        j = min(n, i + batch)
        if deadline is not None and time.perf_counter() >= deadline:
            parts.append(placeholder(i, n))
            break
        parts.append(fn(i, j))
        decided[i:j] = True
    return _join(parts), decided


def radius_placeholder(cert, x: Tensor, y: Tensor, complete: bool, index_offset: int = 0):
    """A RadiusResult for samples not searched: predictions and targets, radius 0 (reported undecided)."""
    from .radius import RadiusResult

    xs, ys = cert._prep(x, y)
    logits = cert.predict(xs)
    pred = logits.argmax(1)
    n = xs.shape[0]
    return RadiusResult(torch.zeros(n, dtype=torch.float64), pred, pred == ys, cert.targets(logits, ys, index_offset),
                        torch.zeros(n, dtype=torch.float64), 0,
                        torch.full((n,), float("inf"), dtype=torch.float64) if complete else None)


def certify_placeholder(cert, x: Tensor, y: Tensor, complete: bool, index_offset: int = 0):
    """A CertifyResult for samples not run: predictions, certified False, status 'undecided'."""
    from .bounds import CertifyResult

    xs, ys = cert._prep(x, y)
    logits = cert.predict(xs)
    pred = logits.argmax(1)
    n = xs.shape[0]
    target = cert.targets(logits, ys, index_offset)
    return CertifyResult(pred, pred == ys, torch.zeros(n, dtype=torch.bool),
                         torch.full((n, 1 if target is not None else cert.num_classes - 1), float("nan"),
                                    dtype=torch.float64), target, ["undecided"] * n if complete else None)


def radius_in_time(cert, x: Tensor, y: Tensor, search, deadline: float | None, progress=None, on_step=None,
                   index_offset: int = 0):
    """Certifier.radius batch by batch until `deadline`: (RadiusResult, decided mask). `on_step(info)` after
    every bound computation (Certifier.radius), info["batch"] counting batches over all n samples;
    `index_offset`: the global index of x[0]."""
    n, bs = x.shape[0], cert.config.batch_size
    complete = cert.config.complete is not None

    def fn(i, j):
        step = None if on_step is None else (lambda info: on_step({**info, "batch": i // bs + 1}))
        r = cert.radius(x[i:j], y[i:j], search, on_step=step, index_offset=index_offset + i)
        if progress:
            progress(j, n)
        return r
    return run_until(fn, n, bs, deadline,
                     lambda i, j: radius_placeholder(cert, x[i:j], y[i:j], complete, index_offset + i))


def certify_in_time(cert, x: Tensor, y: Tensor, eps, deadline: float | None, index_offset: int = 0):
    """Certifier.certify batch by batch until `deadline`: (CertifyResult, decided mask)."""
    complete = cert.config.complete is not None
    return run_until(lambda i, j: cert.certify(x[i:j], y[i:j], eps, index_offset + i), x.shape[0],
                     cert.config.batch_size, deadline,
                     lambda i, j: certify_placeholder(cert, x[i:j], y[i:j], complete, index_offset + i))
