"""Ray backend: each task is a Ray task; a local Ray is started on demand, or an existing cluster is
joined by address ("auto" on a cluster node, "ray://host:port" through the Ray client).

Ray's own retries are off (`max_retries=0`): the driver counts attempts the same way for every backend
(a task whose worker dies is resubmitted by the driver; an item failing twice is recorded as failed).
With GPUs in the cluster every task asks for one (`num_gpus=1`): Ray then runs one task per GPU.
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .outcome import Outcome, TaskFn, apply_task
from .tasks import Task

INSTALL_HINT = "Ray is not installed: pip install 'certnn[ray]' (or pip install 'ray>=2.9')"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--address needs Ray. {INSTALL_HINT}") from None
    return ray


def _run_remote(fn: TaskFn, payload: Any, task: Task, threads: int | None) -> Outcome:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return apply_task(fn, payload, task)


class RayBackend:
    """At most `workers` tasks in flight (None: one per CPU, or per GPU, of the cluster)."""

    def __init__(self, fn: TaskFn, payload: Any, workers: int | None, address: str | None,
                 threads: int | None = 1):
        ray = import_ray()
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address in (None, "local"):
                kw["num_cpus"] = workers
            else:
                kw["address"] = address
            try:
                ray.init(**kw)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot start or reach Ray at {address or 'a local instance'}: {exc}") from None
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        self.slots = workers or max(1, gpus or int(res.get("CPU", 1)))
        opts: dict[str, Any] = {"max_retries": 0, "num_cpus": 1}
        if gpus:
            opts["num_gpus"] = 1
        self._remote = ray.remote(**opts)(_run_remote)
        self._fn, self._payload = ray.put(fn), ray.put(payload)
        self._threads = threads
        self._pending: dict[Any, Task] = {}

    def submit(self, task: Task) -> None:
        self._pending[self._remote.remote(self._fn, self._payload, task, self._threads)] = task

    def poll(self, timeout: float) -> list[Outcome]:
        if not self._pending:
            return []
        done, _ = self._ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            task = self._pending.pop(ref)
            try:
                out.append(self._ray.get(ref))
            except Exception as exc:  # noqa: BLE001 -- worker died, node lost, object lost
                out.append(Outcome(task, error=f"Ray task failed ({type(exc).__name__}: {str(exc)[:300]})", died=True))
        return out

    def close(self, abort: bool = False) -> None:
        if abort:
            for ref in list(self._pending):
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001
                    pass
        self._pending.clear()
        if self._started:
            self._ray.shutdown()
