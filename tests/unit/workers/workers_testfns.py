"""Task functions for the workers tests (a module of its own so spawned workers can import it)."""
from __future__ import annotations

import os
import signal
from pathlib import Path


def square(payload, indices):
    """One record per index: its square (payload: None)."""
    return [{"index": i, "value": i * i, "pid": os.getpid()} for i in indices]


def fail_on(payload, indices):
    """Raises for the indices in payload['bad'] on every attempt."""
    bad = set(payload["bad"])
    if bad & set(indices):
        raise RuntimeError(f"bad item among {list(indices)}")
    return square(None, indices)


def die_once(payload, indices):
    """The worker process holding index payload['victim'] kills itself with SIGKILL the first time (a
    marker file remembers that it happened); the retry then finishes."""
    marker = Path(payload["marker"])
    if payload["victim"] in indices and not marker.exists():
        marker.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return square(None, indices)


def log_calls(payload, indices):
    """Appends the indices computed to payload['log'] (to check that a resumed run skips finished ones)."""
    with open(payload["log"], "a") as f:
        f.write(" ".join(map(str, indices)) + "\n")
    return square(None, indices)
