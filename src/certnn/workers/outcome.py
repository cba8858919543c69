"""What a backend reports for a task, and the function a worker applies."""
from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .tasks import Task

#: a task function: (payload, indices) -> one record {"index": i, ...} per index
TaskFn = Callable[[Any, tuple[int, ...]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Outcome:
    """records when the task finished; otherwise error (one line) and whether the worker died.
    fatal: the error is the user's (bad input) or a soundness failure: retrying cannot help and the
    whole run stops with it (`exit_code` as the CLI's)."""

    task: Task
    records: list[dict[str, Any]] | None = None
    error: str | None = None
    died: bool = False
    fatal: bool = False
    exit_code: int = 0


def apply_task(fn: TaskFn, payload: Any, task: Task) -> Outcome:
    """Run fn on the task in this process; exceptions become an error outcome (certnn's own errors are
    fatal: bad input fails every task the same way)."""
    from ..errors import CertnnError

    try:
        records = fn(payload, task.indices)
    except CertnnError as exc:
        return Outcome(task, error=f"{type(exc).__name__}: {exc}", fatal=True, exit_code=exc.exit_code)
    except Exception as exc:  # noqa: BLE001 -- recorded with the item, retried
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        return Outcome(task, error=f"{type(exc).__name__}: {exc}{where}")
    got = sorted(int(r["index"]) for r in records)
    if got != sorted(task.indices):
        return Outcome(task, error=f"task returned records for indices {got[:5]}... instead of {list(task.indices)[:5]}...")
    return Outcome(task, records=records)
