"""Return the allocator's retained memory to the system when the process nears its memory budget.

The `certnn` command keeps freed tensor memory in glibc's heap (cli/allocator.py: no trimming, no mmap for
large blocks), which makes bound propagation fast but lets the resident size drift above the memory that
is live: freed blocks that a later, slightly different allocation cannot reuse stay resident, and worker
threads' arenas hold their own. Measured on CROWN over a 784-4096-4096-10 MLP (20 samples, 54 rows per
pass, 2 threads): the resident size climbed pass after pass to 1.2-1.8 GB in three runs of the same
computation, 0.7 GB with one thread (docs/benchmarks.md, Memory budget).

`MemoryGuard` is a daemon thread that reads the resident size every `interval` seconds (50 ms: about 0.4%
of one core on a loaded 2-core machine, 2% at 10 ms) and, above
`limit` bytes, calls glibc's `malloc_trim(0)`, which hands every free page of every arena back to the
system (the live tensors are untouched, so results cannot change). Runs that stay below the limit never
trim and keep the fast heap; runs near their budget pay page faults for the released pages instead of
exceeding it. When a trim cannot bring the size under the limit (the live memory itself is above it) the
guard waits for a further `step` of growth, or `retry_s` seconds (live memory may have been freed since),
before trying again.

There is one guard per process (`guard_memory` starts it or moves its limit; `release_guard` stops it);
it is process state, so only the command-line tool and benchmarks start it, like cli/allocator.py.
"""
from __future__ import annotations

import ctypes
import sys
import threading
import time

from ..engine.memory import current_rss

_lock = threading.Lock()
_guard: "MemoryGuard | None" = None


def _malloc_trim():
    """glibc's malloc_trim, or None where there is none (other C libraries, other systems)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class MemoryGuard(threading.Thread):
    """Trims the allocator whenever the resident size exceeds `limit` bytes (see the module docstring)."""

    def __init__(self, limit: int, interval: float = 0.05, retry_s: float = 0.5, trim=None, rss=current_rss,
                 clock=time.monotonic):
        super().__init__(name="certnn-memory-guard", daemon=True)
        self.limit = int(limit)
        self.interval = interval
        self.retry_s = retry_s
        self.trims = 0
        self._trim = trim if trim is not None else _malloc_trim()
        self._rss = rss
        self._clock = clock
        self._last = -float("inf")
        self._stop_event = threading.Event()

    @property
    def step(self) -> int:
        """Growth above a failed trim's result before the next try: 1/32 of the limit, at least 16 MiB."""
        return max(16 * 2 ** 20, self.limit // 32)

    def check(self, floor: int) -> int:
        """One look at the resident size; trims when it is above the limit and above `floor` (or the last trim
        is `retry_s` old). Returns the next floor: the size a trim could not get under the limit, plus
        `step` (0 when under the limit)."""
        rss = self._rss()
        if rss <= self.limit:
            return 0
        if self._trim is None or (rss <= floor and self._clock() - self._last < self.retry_s):
            return floor
        self._trim(0)
        self.trims += 1
        self._last = self._clock()
        after = self._rss()
        return after + self.step if after > self.limit else 0

    def run(self) -> None:
        floor = 0
        while not self._stop_event.wait(self.interval):
            floor = self.check(floor)

    def stop(self) -> None:
        self._stop_event.set()


def guard_memory(limit: int) -> MemoryGuard | None:
    """Start this process's guard with `limit` bytes, or move the running guard's limit there. None where
    the C library cannot trim (nothing to guard)."""
    global _guard
    if _malloc_trim() is None:
        return None
    with _lock:
        if _guard is None or not _guard.is_alive():
            _guard = MemoryGuard(limit)
            _guard.start()
        else:
            _guard.limit = int(limit)
        return _guard


def release_guard() -> int:
    """Stop this process's guard (if any); returns how many trims it made."""
    global _guard
    with _lock:
        g, _guard = _guard, None
    if g is None:
        return 0
    g.stop()
    g.join(timeout=1.0)
    return g.trims
