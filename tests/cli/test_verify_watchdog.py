"""cli/verify_watchdog.AnswerGuard: the watchdog answers `unknown` by the deadline unless the main thread
claimed the answer first; in-process (hard_exit False) it never arms and never ends the process."""
from __future__ import annotations

import subprocess
import sys
import time

from certnn.cli.verify_watchdog import MARGIN_S, AnswerGuard

SCRIPT = """
import sys, time
from certnn.cli.verify_watchdog import AnswerGuard
g = AnswerGuard(sys.argv[1], quiet=True, hard_exit=True)
g.arm(time.perf_counter() + float(sys.argv[2]))
if sys.argv[3] == "claim":
    g.claim()
    time.sleep(1.0)
    print("main answered", flush=True)
    g.finish(0)
time.sleep(30)
print("never", flush=True)
"""


def _run(tmp_path, after: float, mode: str):
    out = tmp_path / "result.txt"
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(after), mode], capture_output=True, text=True,
                       timeout=60)
    return p, out, time.perf_counter() - t0


def test_watchdog_writes_unknown_and_ends_the_process_by_the_deadline(tmp_path):
    p, out, wall = _run(tmp_path, 1.0, "wait")
    assert p.returncode == 0, p.stderr
    assert out.read_text() == "unknown\n"
    assert p.stdout.strip() == "unknown" and "never" not in p.stdout
    assert "time limit" in p.stderr
    assert wall < 20  # ended by the watchdog, not after the 30 s sleep


def test_a_claimed_answer_is_never_overwritten(tmp_path):
    p, out, _ = _run(tmp_path, 0.3, "claim")  # the deadline passes while the main thread holds the answer
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "main answered"
    assert not out.exists()


def test_in_process_the_guard_never_arms_or_exits(tmp_path):
    g = AnswerGuard(str(tmp_path / "r.txt"), quiet=False, hard_exit=False)
    g.arm(time.perf_counter() - 10.0)  # a deadline long past
    time.sleep(2 * MARGIN_S)
    assert g.timer is None and not (tmp_path / "r.txt").exists()
    g.claim()
    assert g.finish(3) == 3
