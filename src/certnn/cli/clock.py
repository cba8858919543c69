"""The process clock: deadlines of the command line count from the process start (imports and model
loading included), as a harness timing the process sees them."""
from __future__ import annotations

import os
import time

#: monotonic clock when certnn's command line was first imported (fallback where /proc is missing)
_T_IMPORT = time.monotonic()


def process_age() -> float:
    """Seconds since this process started (Linux /proc), else since the command line was imported."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = float(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return time.monotonic() - _T_IMPORT


def process_start_perf() -> float:
    """The process start as a time.perf_counter() value (for deadlines computed with perf_counter)."""
    return time.perf_counter() - process_age()
