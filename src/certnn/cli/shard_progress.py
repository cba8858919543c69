"""One progress display over all workers of a sharded run: items done, how many certified so far, ETA.
A rich bar on a terminal; plain lines on stderr otherwise (logs of cluster jobs), at most every 10 % of
the items or 30 seconds."""
from __future__ import annotations

import sys
import time


def _eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class ShardProgress:
    """update(new_done, new_good, new_failed) after each finished task; `good_label` names the count
    ("certified", "holds", ...), None for commands without one."""

    def __init__(self, what: str, total: int, done: int, good: int, good_label: str | None, quiet: bool,
                 stream=None):
        self.what, self.total, self.done, self.good, self.failed = what, total, done, good, 0
        self.good_label, self.quiet = good_label, quiet
        self.stream = stream or sys.stderr
        self.start_done, self.t0 = done, time.perf_counter()
        self._last_line, self._last_frac = 0.0, -1.0
        self._bar = None
        if not quiet and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[extra]}"), TimeRemainingColumn(),
                                 console=Console(file=self.stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(what, total=total, completed=done, extra=self._extra())
        elif not quiet and done:
            self._line(force=True)

    def _extra(self) -> str:
        parts = [f"{self.good_label} {self.good}"] if self.good_label else []
        if self.failed:
            parts.append(f"failed {self.failed}")
        return ", ".join(parts)

    def eta_s(self) -> float:
        rate = (self.done - self.start_done) / max(time.perf_counter() - self.t0, 1e-9)
        return (self.total - self.done - self.failed) / rate if rate > 0 else float("inf")

    def _line(self, force: bool = False) -> None:
        now, frac = time.perf_counter(), self.done / max(self.total, 1)
        if not force and frac - self._last_frac < 0.1 and now - self._last_line < 30 and self.done < self.total:
            return
        self._last_line, self._last_frac = now, frac
        extra = self._extra()
        print(f"{self.what}: {self.done}/{self.total} done{', ' + extra if extra else ''}, "
              f"ETA {_eta(self.eta_s())}", file=self.stream, flush=True)

    def update(self, done: int, good: int, failed: int) -> None:
        self.done += done
        self.good += good
        self.failed += failed
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done + self.failed, extra=self._extra())
        else:
            self._line()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
