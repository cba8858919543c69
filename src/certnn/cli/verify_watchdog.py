"""The answer by the deadline: `certnn verify --timeout T` run as a program.

The verifier stops its stages at T minus a reserve, but a stage that cannot be interrupted (a root bound
computation, a solver's model being built) can still run past it on a loaded machine, and interpreter
teardown adds most of a second. A harness that times the process (VNN-COMP) then scores a timeout even
when the verifier had decided. So, when the command runs as a program (never in-process, e.g. tests):

* a watchdog thread fires at T minus `MARGIN_S` after the process start: if no result has been written
  yet, it writes ``unknown`` to ``--out`` (and prints it under ``--quiet``), and ends the process;
* the main thread claims the result before writing it (then the watchdog does nothing), and ends the
  process right after its outputs are written and flushed (`finish`), skipping the interpreter's teardown.
"""
from __future__ import annotations

import os
import sys
import threading
import time

#: seconds before T at which the watchdog answers `unknown` (writing one word and exiting take milliseconds)
MARGIN_S = 0.25


class AnswerGuard:
    """Whoever claims first writes the answer: the main thread (`claim`) or the watchdog (`_fire`)."""

    def __init__(self, out: str | None, quiet: bool, hard_exit: bool):
        self.out, self.quiet, self.hard_exit = out, quiet, hard_exit
        self.lock = threading.Lock()
        self.claimed = False
        self.timer: threading.Timer | None = None

    def arm(self, deadline_perf: float) -> None:
        """Start the watchdog for a time.perf_counter() deadline (only when ending the process is allowed)."""
        if not self.hard_exit:
            return
        self.timer = threading.Timer(max(0.0, deadline_perf - MARGIN_S - time.perf_counter()), self._fire)
        self.timer.daemon = True
        self.timer.start()

    def claim(self) -> None:
        """The main thread has a result to write: the watchdog stands down (waits while it is answering)."""
        with self.lock:
            self.claimed = True
        if self.timer is not None:
            self.timer.cancel()

    def _fire(self) -> None:
        from ..report.atomic import write_or_keep

        with self.lock:
            if self.claimed:
                return
            self.claimed = True
            if self.out:
                write_or_keep(self.out, "unknown\n", "--out")
            print("unknown" if self.quiet else "unknown (unknown) decided by the time limit", flush=True)
            print("certnn verify: the time limit ran out before a verdict; answered unknown", file=sys.stderr,
                  flush=True)
            os._exit(0)

    def finish(self, code: int) -> int:
        """After the outputs are written: end the process now when allowed (no teardown), else return."""
        if self.hard_exit:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
