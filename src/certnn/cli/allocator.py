"""Keep freed tensor memory in the process heap (glibc only), set once by the `certnn` command.

Bound propagation allocates and frees many large coefficient tensors per step. glibc serves blocks above
its mmap threshold (at most 32 MB by default) with fresh mmap'd pages, which the kernel must zero on
first touch: on a 3x1024 MNIST MLP, CROWN spent as much time in the kernel (page faults) as in the matrix
products. Raising the mmap and trim thresholds lets glibc reuse freed blocks; it changes nothing but speed
and resident memory (freed memory is returned to the system later). This is process-wide, so only the
command-line tool does it; library users can export MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_
themselves (benchmarks/common.py does so for its child runs).
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: environment variables with the same effect, for a child process (read by glibc at start-up)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 31), "MALLOC_TRIM_THRESHOLD_": str(1 << 36),
              "MALLOC_TOP_PAD_": str(1 << 28)}


def tune_allocator() -> bool:
    """Raise glibc's mmap / trim thresholds; returns True when applied (False elsewhere, harmless)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 31) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 36) == 1
        ok &= libc.mallopt(_M_TOP_PAD, 1 << 28) == 1
        return bool(ok)
    except (OSError, AttributeError):
        return False
