"""cli/progress.py: plain timestamped lines, heartbeat while nothing is reported, ETA, JSON lines."""
from __future__ import annotations

import io
import json
import time

from certnn.cli.progress import Reporter, format_detail


def test_plain_lines_have_stamp_counts_eta_and_heartbeat():
    buf = io.StringIO()
    rep = Reporter("plain", "radius", buf, interval=0.05)
    with rep.task("crown radius", 4) as t:
        t(1, 4)
        time.sleep(0.12)  # nothing reported: the heartbeat still writes a line
        t.detail({"phase": "bisection", "step": 3, "steps": 14})
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("crown radius 0/4 (0%) | elapsed 0s") and "certnn radius: " in lines[0]
    assert any("1/4 (25%)" in ln and "ETA" in ln for ln in lines[1:-1])
    assert lines[-1].endswith("done") and "step 3/14" in lines[-1]
    assert len(lines) >= 3


def test_json_lines_and_off():
    buf = io.StringIO()
    with Reporter("json", "attack", buf, interval=10).task("attack radius", None) as t:
        t.detail({"step": 1, "steps": 5})
    recs = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    assert [r["event"] for r in recs] == ["start", "end"] and recs[-1]["detail"] == {"step": 1, "steps": 5}
    buf = io.StringIO()
    with Reporter("off", "x", buf).task("t", 3) as t:
        t(3, 3)
    assert buf.getvalue() == ""


def test_format_detail():
    assert format_detail({"phase": "bracket", "step": 2, "steps": 30, "searching": 7}) == \
        "phase bracket, step 2/30, searching 7"
