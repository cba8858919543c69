"""The driver: hands tasks to a backend, retries failures, records finished and failed items in the
checkpoint as they arrive, and stops the workers on Ctrl-C (the checkpoint stays valid: every line was
fsync'd when its task finished)."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CertnnError
from .checkpoint import Checkpoint
from .outcome import Outcome
from .tasks import Task

#: progress(new_records, failed_indices): called after each finished task
Progress = Callable[[list[dict[str, Any]], list[int]], None]


class FatalTaskError(CertnnError):
    """A task failed with one of certnn's own errors (bad input, a soundness check): the run stops."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOutcome:
    """records: index -> record of the items finished in this run; failed: index -> error of the items
    that failed max_attempts times; retried: how many task retries happened."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    retried: int = 0


def run_tasks(backend, tasks: Iterable[Task], *, max_attempts: int = 2, checkpoint: Checkpoint | None = None,
              progress: Progress | None = None, poll_s: float = 0.5) -> RunOutcome:
    """Run the tasks on the backend until each item is finished or failed.

    A failed task of several items is split into one task per item (attempt 2), so an item that fails
    again is isolated and recorded as failed with its error while its neighbours finish. A fatal outcome
    (certnn's own error) stops everything and raises FatalTaskError; KeyboardInterrupt stops the workers
    and propagates. The backend is closed in every case.
    """
    queue: deque[Task] = deque(tasks)
    next_id = max((t.id for t in queue), default=-1) + 1
    out = RunOutcome()
    in_flight = 0
    aborted = True
    try:
        while queue or in_flight:
            while queue and in_flight < backend.slots:
                backend.submit(queue.popleft())
                in_flight += 1
            for o in backend.poll(poll_s):
                in_flight -= 1
                retry = _handle(o, out, checkpoint, progress, max_attempts, next_id)
                next_id += len(retry)
                queue.extend(retry)
        aborted = False
    finally:
        backend.close(abort=aborted)
        if checkpoint is not None:
            checkpoint.close()
    return out


def _handle(o: Outcome, out: RunOutcome, checkpoint: Checkpoint | None, progress: Progress | None,
            max_attempts: int, next_id: int) -> list[Task]:
    """Record one outcome; the tasks to retry."""
    if o.records is not None:
        if checkpoint is not None:
            checkpoint.items(o.records)
        for r in o.records:
            out.records[int(r["index"])] = r
        if progress:
            progress(o.records, [])
        return []
    if o.fatal:
        raise FatalTaskError(o.error or "task failed", o.exit_code or 2)
    t = o.task
    if t.attempt < max_attempts:
        out.retried += 1
        if len(t.indices) > 1:
            return [Task(next_id + k, (i,), t.attempt + 1) for k, i in enumerate(t.indices)]
        return [Task(next_id, t.indices, t.attempt + 1)]
    for i in t.indices:
        out.failed[i] = o.error or "failed"
        if checkpoint is not None:
            checkpoint.failed(i, out.failed[i], t.attempt)
    if progress:
        progress([], list(t.indices))
    return []
