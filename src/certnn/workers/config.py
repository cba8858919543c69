"""Settings of a sharded run."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class WorkerConfig:
    """How a run is spread over workers.

    workers: worker processes (local) or concurrent tasks (Ray); 1 runs the tasks in this process.
    address: None for local processes; "local" for a Ray started here; "auto" or "ray://host:port" for an
        existing Ray cluster.
    task_size: items per task; None picks min(batch_size, ceil(pending / (4 * workers))) so every worker
        gets several tasks (load balance) and a task still fills a batch when there are many items.
    max_attempts: attempts of an item before it is recorded as failed with its error (a failing task of
        several items is retried item by item, so one bad item cannot fail its neighbours).
    threads_per_worker: torch intra-op threads in each worker process (1 when workers > 1: the workers
        already use the cores); None leaves torch's default.
    """

    workers: int = 1
    address: str | None = None
    task_size: int | None = None
    max_attempts: int = 2
    threads_per_worker: int | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "max_attempts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"WorkerConfig.{name} = {v!r} must be an integer >= 1")
        if self.task_size is not None and (isinstance(self.task_size, bool) or not isinstance(self.task_size, int)
                                           or self.task_size < 1):
            raise ConfigError(f"task size {self.task_size!r} must be an integer >= 1")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise ConfigError(f"threads_per_worker = {self.threads_per_worker!r} must be >= 1")

    def effective_task_size(self, pending: int, batch_size: int) -> int:
        if self.task_size is not None:
            return self.task_size
        per = -(-max(pending, 1) // (4 * self.workers))
        return max(1, min(batch_size, per))
