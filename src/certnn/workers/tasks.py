"""Tasks: contiguous runs of item indices."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """Items `indices` (ascending, contiguous unless split from a resumed run) and the attempt number."""

    id: int
    indices: tuple[int, ...]
    attempt: int = 1


def make_tasks(pending: Sequence[int], size: int, first_id: int = 0) -> list[Task]:
    """Split the pending indices (any order) into tasks of at most `size` consecutive indices; a gap in
    the indices (items finished by an earlier run) also ends a task, so each task is one contiguous
    range of samples and can be loaded as one slice."""
    if size < 1:
        raise ValueError("task size must be >= 1")
    tasks: list[Task] = []
    run: list[int] = []
    for i in sorted(set(pending)):
        if run and (i != run[-1] + 1 or len(run) == size):
            tasks.append(Task(first_id + len(tasks), tuple(run)))
            run = []
        run.append(i)
    if run:
        tasks.append(Task(first_id + len(tasks), tuple(run)))
    return tasks
