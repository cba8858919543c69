"""A memory budget for a whole run, enforced by chunking samples and rows.

The backward engine's largest tensors are coefficient tensors (B, rows, *node shape) of the widest node
between the input and the node being bounded; a pass keeps a few of them alive at once (lower and upper
coefficients, their positive / negative parts, the product with the next weight, the allocator's slack).
`plan_chunks` turns a budget in bytes into the two knobs that bound them, both already honoured by every
engine: samples per bound computation (`batch_size`) and identity rows per backward pass (`max_rows`).
The bounds do not depend on either (tests/unit/engine/test_batch_independence.py), so a budgeted run
gives the same bounds as an unbounded one, only in more passes.

A quarter of what is left after the process and the weights (`RESERVE_SHARE`) is kept out of the plan: the
allocator's slack (freed blocks not reused yet, worker threads' arenas). `ChunkPlan.trim_above` is the
resident size the planned tensors should stay under; above it, the command returns the allocator's
retained memory to the system (cli/memory_guard.py), so the slack cannot grow past the budget.

If even one row of one sample does not fit, `plan_chunks` raises MemoryBudgetError (exit 2) naming what
was needed, before any work starts.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import CertnnError, ConfigError

#: coefficient-sized float64 tensors alive at once in one backward pass, allocator slack included
LIVE_TENSORS = 12
BYTES_PER_VALUE = 8
#: share of the memory left beside the process and the weights kept for the allocator's slack
RESERVE_SHARE = 0.25
_UNITS = {"": 2 ** 20, "b": 1, "k": 2 ** 10, "kb": 2 ** 10, "kib": 2 ** 10, "m": 2 ** 20, "mb": 2 ** 20,
          "mib": 2 ** 20, "g": 2 ** 30, "gb": 2 ** 30, "gib": 2 ** 30, "t": 2 ** 40, "tb": 2 ** 40, "tib": 2 ** 40}


class MemoryBudgetError(CertnnError):
    """The run cannot be done within the memory budget, even one sample and one row at a time."""


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a smaller cgroup limit (containers)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_budget() -> int:
    """Half of the machine's memory (a long run on a shared machine leaves room for the others)."""
    return machine_memory() // 2


def parse_size(text: str) -> int:
    """'8G', '512M', '1.5GB', '2048' (MiB) -> bytes; ConfigError for anything else or a size <= 0."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ConfigError(f"--max-memory {text!r}: expected a size such as 8G, 512M or 1.5GB (a plain number is MiB)")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"--max-memory {text!r}: must be positive")
    return size


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes (Linux: ru_maxrss is in KiB)."""
    import resource
    import sys

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def current_rss() -> int:
    """Resident memory now, in bytes (/proc/self/statm; the peak where that is unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss()


@dataclass(frozen=True)
class ChunkPlan:
    batch_size: int
    max_rows: int
    #: bytes one row of one sample needs (the widest node's coefficients, LIVE_TENSORS of them)
    row_bytes: int
    #: bytes the plan gives to coefficient tensors (the budget less the process, the weights and the reserve)
    available: int
    #: resident size above which the allocator's retained memory should be returned (budget - reserve)
    trim_above: int


def widest_node(graph) -> int:
    """Values in the largest node of the graph (per sample)."""
    best = 1
    for node in graph.nodes.values():
        n = 1
        for s in node.shape:
            n *= s
        best = max(best, n)
    return best


def graph_bytes(graph) -> int:
    """Bytes of the graph's tensors (weights, biases) that stay alive during the run."""
    import torch

    seen, total = set(), 0
    for node in graph.nodes.values():
        for v in vars(node.op).values():
            if isinstance(v, torch.Tensor) and id(v) not in seen:
                seen.add(id(v))
                total += v.numel() * v.element_size()
    return total


def plan_chunks(graph, budget: int, batch_size: int, max_rows: int = 4096, in_use: int | None = None) -> ChunkPlan:
    """Samples per bound computation and rows per backward pass that keep a run of `graph` within `budget`
    bytes, given what the process already uses (`in_use`, default its resident memory now, which
    includes the loaded model). Raises MemoryBudgetError when one row of one sample does not fit."""
    used = current_rss() if in_use is None else in_use
    left = budget - used - graph_bytes(graph)  # the weights again: derived copies (dense forms, transposes)
    reserve = int(max(0, left) * RESERVE_SHARE)
    available = left - reserve
    row = widest_node(graph) * BYTES_PER_VALUE * LIVE_TENSORS
    mb = 2 ** 20
    if available < row:
        raise MemoryBudgetError(
            f"the memory budget of {budget / mb:.0f} MB is too small for this model: one sample and one row of "
            f"its widest layer ({widest_node(graph)} values) need about {row / mb:.1f} MB (and a quarter more "
            f"for the allocator) beside the {(used + graph_bytes(graph)) / mb:.0f} MB the model and the process "
            f"already take; raise --max-memory")
    batch = max(1, min(batch_size, available // row))
    rows = max(1, min(max_rows, available // (row * batch)))
    return ChunkPlan(int(batch), int(rows), int(row), int(available), int(budget - reserve))
