"""The JSONL checkpoint of a sharded run: one line per finished item, appended, flushed and fsync'd as
the item's task completes, so a killed or interrupted run loses at most the tasks in flight.

Lines (one JSON object each):
  {"kind": "header", "version": 1, "fingerprint": {...}}   first line: what run this checkpoint belongs to
  {"kind": "meta", "key": K, "value": V}                  run-level data (settings, environment), last wins
  {"kind": "item", "index": i, "record": {...}}           a finished item
  {"kind": "failed", "index": i, "error": E, "attempts": n}  an item that failed max_attempts times

A last line cut short by a kill is ignored (and cut off before appending). Resuming checks the
fingerprint: a checkpoint written for other inputs or settings is refused, never mixed in.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

VERSION = 1


@dataclass
class CheckpointState:
    """What a checkpoint file holds: finished items, failed items, run-level meta data."""

    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: dict[int, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class Checkpoint:
    """Appends checkpoint lines to `path` (opened by :func:`open_checkpoint`)."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def append(self, entries: list[dict[str, Any]]) -> None:
        """Write the lines in one write, then flush and fsync: on return they survive a crash."""
        if not entries:
            return
        self._f.write("".join(json.dumps(e, allow_nan=True) + "\n" for e in entries))
        self._f.flush()
        os.fsync(self._f.fileno())

    def items(self, records: list[dict[str, Any]]) -> None:
        self.append([{"kind": "item", "index": int(r["index"]), "record": r} for r in records])

    def failed(self, index: int, error: str, attempts: int) -> None:
        self.append([{"kind": "failed", "index": int(index), "error": error, "attempts": attempts}])

    def meta(self, key: str, value: Any) -> None:
        self.append([{"kind": "meta", "key": key, "value": value}])

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any] | None, CheckpointState, int]:
    """(fingerprint, state, bytes of whole lines) of a checkpoint file; a torn last line is skipped."""
    p = Path(path)
    raw = p.read_bytes()
    good = raw.rfind(b"\n") + 1  # whole lines only: a torn tail (killed mid-write) is dropped
    state = CheckpointState()
    fingerprint = None
    for n, line in enumerate(raw[:good].decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"checkpoint {p} line {n} is not JSON ({exc.msg}); it was not written by certnn "
                              f"or was edited: move it away to start afresh") from None
        kind = e.get("kind")
        if kind == "header":
            fingerprint = e.get("fingerprint")
        elif kind == "item":
            state.items[int(e["index"])] = e["record"]
            state.failed.pop(int(e["index"]), None)
        elif kind == "failed":
            state.failed[int(e["index"])] = {"error": e.get("error"), "attempts": e.get("attempts")}
        elif kind == "meta":
            state.meta[e["key"]] = e["value"]
    return fingerprint, state, good


def open_checkpoint(path: str | Path, fingerprint: dict[str, Any], resume: bool) -> tuple[Checkpoint, CheckpointState]:
    """Open the checkpoint for appending. Without resume an existing non-empty checkpoint is an error
    (its work would be lost); with resume its fingerprint must match."""
    p = Path(path)
    fp = json.loads(json.dumps(fingerprint))  # as it reads back from the file
    if p.exists() and p.stat().st_size > 0:
        if not resume:
            raise ConfigError(f"checkpoint {p} exists from an earlier run: pass --resume to continue it (finished "
                              f"items are skipped), or move it away to start afresh")
        old, state, good = read_checkpoint(p)
        if old != fp:
            diff = sorted(k for k in set(old or {}) | set(fp) if (old or {}).get(k) != fp.get(k))
            raise ConfigError(f"checkpoint {p} belongs to a different run (differs in: {', '.join(diff) or 'header'}); "
                              f"rerun with the same inputs and settings, or move it away to start afresh")
        if good < p.stat().st_size:
            with open(p, "r+b") as f:  # cut the torn tail so appended lines start on a line of their own
                f.truncate(good)
        return Checkpoint(p), state
    p.parent.mkdir(parents=True, exist_ok=True)
    ck = Checkpoint(p)
    ck.append([{"kind": "header", "version": VERSION, "fingerprint": fp}])
    return ck, CheckpointState()
