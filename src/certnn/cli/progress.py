"""Progress of long CLI runs, readable on a terminal and in a log file.

Three forms, chosen per run (:meth:`Reporter.for_args`):

* ``bar``: a rich progress bar on stderr when stderr is a terminal;
* ``plain``: timestamped lines on stderr when it is not (a log file, a pipe, a batch job), e.g.
  ``2025-05-01 12:00:03 certnn radius: crown radius 3/10 samples (30%) | bisection step 5/14, 8 searching |
  elapsed 12s | ETA 28s``; a line at the start and the end of every task, on updates at most every
  ``interval`` seconds, and a heartbeat line every ``interval`` seconds while nothing is reported;
* ``json``: the same events as one JSON object per line (``--log-json``): event (start / update / end),
  time, command, task, done, total, elapsed_s, eta_s, detail;

and nothing with ``--quiet``. A task is updated with ``task(done, total)`` (units: samples, epochs, ...)
and ``task.detail({...})`` for the steps inside a unit (a bisection step, an attack step, a BaB round, a
training batch), which the library reports through its ``progress`` / ``on_step`` callbacks.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO

#: seconds between plain / JSON lines (and of the heartbeat while nothing is reported)
INTERVAL = 5.0


class Reporter:
    """Progress for one command; see the module docstring."""

    def __init__(self, mode: str, command: str = "", stream: IO[str] | None = None, interval: float = INTERVAL):
        if mode not in ("bar", "plain", "json", "off"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode, self.command, self.interval = mode, command, interval
        self.stream = stream if stream is not None else sys.stderr

    @classmethod
    def for_args(cls, args, stream: IO[str] | None = None) -> Reporter:
        stream = stream if stream is not None else sys.stderr
        if getattr(args, "quiet", False):
            mode = "off"
        elif getattr(args, "log_json", False):
            mode = "json"
        else:
            mode = "bar" if _is_tty(stream) else "plain"
        return cls(mode, getattr(args, "command", "") or "", stream)

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        if self.mode == "off":
            yield Task(self, description, total, None)
            return
        if self.mode == "bar":
            with _bar(self.stream, description, total) as emit:
                yield Task(self, description, total, emit)
            return
        task = Task(self, description, total, self._line)
        task.emit("start")
        stop = threading.Event()
        beat = threading.Thread(target=task.heartbeat, args=(stop,), daemon=True)
        beat.start()
        try:
            yield task
        finally:
            stop.set()
            beat.join()
        task.emit("end")

    def _line(self, task: Task, event: str) -> None:
        now = time.time()
        elapsed = task.elapsed()
        eta = task.eta()
        if self.mode == "json":
            rec = {"event": event, "time": datetime.fromtimestamp(now).isoformat(timespec="seconds"),
                   "command": self.command, "task": task.description, "done": task.done, "total": task.total,
                   "elapsed_s": round(elapsed, 3), "eta_s": None if eta is None else round(eta, 3),
                   "detail": task.info}
            text = json.dumps(rec, default=str)
        else:
            stamp = datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S")
            parts = [f"{task.description} {task.count_text()}"]
            if task.info:
                parts.append(format_detail(task.info))
            parts.append(f"elapsed {_dur(elapsed)}")
            if event == "end":
                parts.append("done")
            elif eta is not None:
                parts.append(f"ETA {_dur(eta)}")
            text = f"{stamp} certnn {self.command}: " + " | ".join(parts)
        with task.lock:
            print(text, file=self.stream, flush=True)


class Task:
    """One task's state; callable as ``task(done, total)``; ``task.detail(info)`` for finer steps."""

    def __init__(self, reporter: Reporter, description: str, total: int | None, sink):
        self.reporter, self.description, self.total, self.sink = reporter, description, total, sink
        self.done = 0
        self.info: dict = {}
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.lock = threading.Lock()

    def __call__(self, done: float, total: float | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        self._update()

    def detail(self, info: dict) -> None:
        self.info = dict(info)
        self._update()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def eta(self) -> float | None:
        if not self.total or not self.done or self.done >= self.total:
            return None
        return self.elapsed() * (self.total - self.done) / self.done

    def count_text(self) -> str:
        if self.total is None:
            return f"{self.done}"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.done}/{self.total} ({pct:.0f}%)"

    def _update(self) -> None:
        if self.sink is None:
            return
        if self.reporter.mode == "bar":
            self.sink(self)
            return
        if time.perf_counter() - self.last >= self.reporter.interval:
            self.emit("update")

    def emit(self, event: str) -> None:
        self.last = time.perf_counter()
        self.sink(self, event)

    def heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.reporter.interval / 4):
            if time.perf_counter() - self.last >= self.reporter.interval:
                self.emit("update")


def format_detail(info: dict) -> str:
    """'phase bisection, step 5/14, searching 8' from a library callback's dict (a key k with a total under
    k + 's' or k + 'es' is shown as k done/total)."""
    totals = {k: next((info[t] for t in (f"{k}s", f"{k}es") if t in info), None) for k in info}
    shown_as_total = {t for k in info for t in (f"{k}s", f"{k}es") if t in info}
    parts = [f"{k} {v}/{totals[k]}" if totals[k] is not None else f"{k} {_val(v)}"
             for k, v in info.items() if k not in shown_as_total]
    return ", ".join(parts)


def _val(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _dur(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextmanager
def _bar(stream, description: str, total: int | None):
    from rich.console import Console as RichConsole
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    con = RichConsole(file=stream, highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
                  console=con, transient=True) as prog:
        tid = prog.add_task(description, total=total, detail="")

        def emit(task: Task) -> None:
            prog.update(tid, completed=task.done, total=task.total, detail=format_detail(task.info))
        yield emit
