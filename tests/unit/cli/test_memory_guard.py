"""cli/memory_guard.py: trims when the resident size passes the limit, backs off when a trim cannot help,
returns retained heap memory of a real process, and the command stops it when it ends."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from certnn.cli import memory_guard
from certnn.cli.memory_guard import MemoryGuard, guard_memory, release_guard

MB = 2 ** 20


class FakeProcess:
    def __init__(self, rss):
        self.rss, self.calls = rss, 0

    def size(self):
        return self.rss

    def trim(self, pad):
        self.calls += 1
        self.rss = self.after


def test_check_trims_above_the_limit_only():
    p = FakeProcess(900 * MB)
    p.after = 500 * MB
    g = MemoryGuard(1000 * MB, trim=p.trim, rss=p.size)
    assert g.check(0) == 0 and p.calls == 0  # under the limit: the fast heap is kept
    p.rss = 1100 * MB
    assert g.check(0) == 0 and p.calls == 1 and g.trims == 1 and p.rss == 500 * MB


def test_check_backs_off_when_live_memory_is_above_the_limit():
    p = FakeProcess(1200 * MB)
    p.after = 1150 * MB  # a trim frees little: the live tensors themselves are above the limit
    now = [0.0]
    g = MemoryGuard(1000 * MB, trim=p.trim, rss=p.size, clock=lambda: now[0], retry_s=0.5)
    floor = g.check(0)
    assert p.calls == 1 and floor == 1150 * MB + g.step
    p.rss = 1150 * MB + g.step // 2  # grew less than a step: no new trim
    now[0] = 0.4
    assert g.check(floor) == floor and p.calls == 1
    now[0] = 0.6  # ... until retry_s has passed (live tensors may have been freed since)
    assert g.check(floor) == 1150 * MB + g.step and p.calls == 2
    floor, now[0] = 1150 * MB + g.step, 0.7
    p.rss, p.after = 1150 * MB + 2 * g.step, 700 * MB  # grew more than a step: try again, and it helps
    assert g.check(floor) == 0 and p.calls == 3
    p.rss = 800 * MB
    assert g.check(0) == 0 and p.calls == 3


def test_step_is_at_least_16_mib():
    assert MemoryGuard(100 * MB, trim=lambda pad: None).step == 16 * MB
    assert MemoryGuard(64 * 2 ** 30, trim=lambda pad: None).step == 2 * 2 ** 30


@pytest.mark.skipif(memory_guard._malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_guard_memory_is_one_thread_per_process_and_release_stops_it():
    try:
        a = guard_memory(2 ** 50)
        b = guard_memory(2 ** 49)
        assert a is b and a.limit == 2 ** 49 and a.is_alive()
    finally:
        assert release_guard() == 0  # never above 512 TiB: no trim
    assert not a.is_alive()
    assert not any(t.name == "certnn-memory-guard" for t in threading.enumerate())
    assert release_guard() == 0  # nothing running: a no-op


_CHILD = textwrap.dedent("""
    import time, torch
    from certnn.cli.memory_guard import guard_memory, release_guard
    from certnn.engine.memory import current_rss
    MB = 2 ** 20
    base = current_rss()
    if GUARD:
        guard_memory(base + 100 * MB)
    blocks = [torch.ones(2 ** 20, dtype=torch.float64) for _ in range(24)]  # 192 MiB live, then freed
    del blocks
    time.sleep(1.5)
    print(int((current_rss() - base) / MB), release_guard())
""")

@pytest.mark.skipif(memory_guard._malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_guard_returns_a_real_processs_retained_heap():
    """With the command's allocator settings freed tensors stay resident; the guard gives them back."""
    from certnn.cli.allocator import MALLOC_ENV

    env = {**os.environ, **MALLOC_ENV}
    grown = {}
    for guard in (False, True):
        out = subprocess.run([sys.executable, "-c", f"GUARD = {guard}\n" + _CHILD], env=env, capture_output=True,
                             text=True, timeout=600, check=True).stdout.split()
        grown[guard] = (int(out[0]), int(out[1]))
    assert grown[False][0] > 150 and grown[False][1] == 0  # freed but retained: no trimming, no mmap
    assert grown[True][0] <= 100 and grown[True][1] >= 1
