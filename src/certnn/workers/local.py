"""Backends on this machine: tasks in this process, or in spawned worker processes.

A worker process that dies (killed, out of memory, a crash in native code) is noticed through its
sentinel; the task it held is reported as failed with `died=True` and a fresh worker takes its place.
Workers ignore SIGINT: Ctrl-C reaches the driver, which stops them.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
from multiprocessing.connection import wait
from typing import Any

from .outcome import Outcome, TaskFn, apply_task
from .tasks import Task


class InlineBackend:
    """Runs each task in this process when polled (workers = 1: checkpointing without processes)."""

    slots = 1

    def __init__(self, fn: TaskFn, payload: Any):
        self.fn, self.payload, self._queue = fn, payload, []

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def poll(self, timeout: float) -> list[Outcome]:
        return [apply_task(self.fn, self.payload, self._queue.pop(0))] if self._queue else []

    def close(self, abort: bool = False) -> None:
        self._queue.clear()


def _worker_main(conn, fn: TaskFn, payload: Any, threads: int | None, gpu: int | None) -> None:
    """Loop of a worker process: receive a task, send back its Outcome; None ends the loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    while True:
        task = conn.recv()
        if task is None:
            return
        conn.send(apply_task(fn, payload, task))


class _Worker:
    def __init__(self, ctx, fn, payload, threads, gpu):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn, payload, threads, gpu), daemon=True)
        self.proc.start()
        child.close()
        self.task: Task | None = None


class LocalBackend:
    """`workers` spawned processes (spawn start method: safe with torch and threads), one task each at a
    time; with GPUs, worker k sees GPU k mod the GPU count only (one worker per GPU)."""

    def __init__(self, fn: TaskFn, payload: Any, workers: int, threads: int | None = 1, gpus: int = 0):
        self._ctx = mp.get_context("spawn")
        self._args = (fn, payload, threads)
        self._gpus = gpus
        self.slots = workers
        self._workers = [self._spawn(k) for k in range(workers)]

    def _spawn(self, k: int) -> _Worker:
        return _Worker(self._ctx, *self._args, gpu=(k % self._gpus) if self._gpus else None)

    def pids(self) -> list[int]:
        """Process ids of the workers (for monitoring and tests)."""
        return [w.proc.pid for w in self._workers]

    def submit(self, task: Task) -> None:
        w = next(w for w in self._workers if w.task is None)
        w.task = task
        w.conn.send(task)

    def poll(self, timeout: float) -> list[Outcome]:
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout))
        out = []
        for k, w in enumerate(self._workers):
            if w.task is None:
                continue
            if w.conn in ready:
                try:
                    out.append(w.conn.recv())
                    w.task = None
                    continue
                except (EOFError, OSError):
                    pass
            if w.conn in ready or w.proc.sentinel in ready:
                w.proc.join(timeout=5)
                code = w.proc.exitcode
                out.append(Outcome(w.task, error=f"worker process {w.proc.pid} died (exit code {code})", died=True))
                w.conn.close()
                self._workers[k] = self._spawn(k)
        return out

    def close(self, abort: bool = False) -> None:
        for w in self._workers:
            try:
                if abort or w.task is not None:
                    w.proc.terminate()
                else:
                    w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for w in self._workers:
            w.proc.join(timeout=10)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()
