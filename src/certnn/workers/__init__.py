"""Scale-out: shard samples (or VNN-LIB instances) into tasks, run them on local processes or Ray, retry
failures, checkpoint every finished item and resume.

The room knows nothing about certification: a task is a picklable function applied to a payload and a
tuple of item indices, returning one JSON-serialisable record per index (`{"index": i, ...}`).

* :mod:`.config`     ``WorkerConfig`` (frozen)
* :mod:`.tasks`      ``Task``, ``make_tasks`` (contiguous runs of pending indices)
* :mod:`.checkpoint` the JSONL checkpoint (one fsync'd line per finished item; resume)
* :mod:`.local`      ``InlineBackend`` (this process), ``LocalBackend`` (spawned worker processes)
* :mod:`.ray_backend` ``RayBackend`` (local Ray started on demand, or a cluster by address)
* :mod:`.driver`     ``run_tasks``: scheduling, retries, failed items, checkpoint appends, Ctrl-C
"""
from .config import WorkerConfig
from .driver import RunOutcome, run_tasks
from .tasks import Task, make_tasks

__all__ = ["WorkerConfig", "RunOutcome", "run_tasks", "Task", "make_tasks"]
