"""Ctrl-C in the middle of a computation: `certnn radius` / `report` exit 130 with one line, no traceback.

The child runs on a pseudo-terminal (so the progress display is drawn); SIGINT is sent once the first
progress line of the radius search is on screen, i.e. while bounds are being computed."""
from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_factory_model

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture()
def slow_run(tmp_path):
    _, model, w, data = write_factory_model(
        tmp_path, "torch.nn.Sequential(torch.nn.Linear(20, 200), torch.nn.ReLU(), torch.nn.Linear(200, 200), "
                  "torch.nn.ReLU(), torch.nn.Linear(200, 10))", (400, 20))
    return tmp_path, ["--model", model, "--weights", w, "--data", data, "--samples", "400", "--batch-size", "1",
                      "--bisection-steps", "30"]


def _interrupt_after(cmd: list[str], marker: str, cwd: Path) -> tuple[int, str]:
    """Run `certnn cmd` on a pty, send SIGINT once `marker` was printed; (exit code, all output)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "120"}
    p = subprocess.Popen([sys.executable, "-m", "certnn", *cmd], stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    out, sent, t0 = b"", False, time.monotonic()
    while time.monotonic() - t0 < 120:
        if not sent and marker.encode() in out:
            p.send_signal(signal.SIGINT)
            sent = True
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                chunk = b""
            if not chunk and p.poll() is not None:
                break
            out += chunk
        elif p.poll() is not None:
            break
    if p.poll() is None:
        p.kill()
    rc = p.wait(timeout=60)
    os.close(master)
    assert sent, f"never saw {marker!r}: {out.decode(errors='replace')[-2000:]}"
    return rc, out.decode(errors="replace")


@pytest.mark.parametrize("command", ["radius", "report"])
def test_ctrl_c_mid_computation_exits_130(slow_run, command):
    tmp, base = slow_run
    extra = ["--json", str(tmp / "r.json")] if command == "radius" else ["--methods", "crown", "--out", str(tmp / "rep")]
    marker = "crown radius" if command == "radius" else "report "  # the progress line's description
    rc, out = _interrupt_after([command, *base, *extra], marker, tmp)
    assert rc == 130, out[-2000:]
    assert "Traceback" not in out and "interrupted" in out
    assert not (tmp / "r.json").exists() and not (tmp / "rep" / "report.json").exists()
