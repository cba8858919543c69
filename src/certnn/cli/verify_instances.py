"""`certnn verify --instances instances.csv`: a VNN-COMP benchmark folder (rows `onnx,vnnlib,timeout`,
paths relative to the csv; `.gz` files found for names without it), each instance decided by `certnn
verify` in a worker, written as the competition's results CSV: one line per instance, in the csv's
order, `benchmark,onnx,vnnlib,prepare_seconds,result,run_seconds` with result sat / unsat / unknown /
error (an instance that failed twice). certnn has no separate prepare step: model loading counts in the
run time, as `verify --timeout` counts it. Finished instances go to RESULTS.ckpt.jsonl as they complete."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError


def add_instances_args(p) -> None:
    g = p.add_argument_group("benchmark (VNN-COMP instances)")
    g.add_argument("--instances", metavar="CSV", help="instances.csv of a VNN-COMP benchmark folder (onnx,vnnlib,"
                                                      "timeout per row, paths relative to it); replaces --model/--spec")
    g.add_argument("--results", metavar="OUT.csv", default="results.csv",
                   help="with --instances: the results CSV (benchmark,onnx,vnnlib,prepare s,result,run s)")
    g.add_argument("--benchmark", help="benchmark name in the results CSV (default: the csv's folder name)")


def _existing(base: Path, name: str, row: int, what: str) -> str:
    p = base / name
    for cand in (p, Path(str(p) + ".gz")):
        if cand.is_file():
            return str(cand)
    raise DataError(f"instances row {row}: {what} {p} (or {p}.gz) not found")


def read_instances(path: str) -> list[dict[str, Any]]:
    """Rows of instances.csv with resolved paths; DataError naming the row for anything malformed."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"instances file {p} not found")
    rows = []
    with p.open(newline="") as f:
        for n, r in enumerate(csv.reader(f), 1):
            if not r or not "".join(r).strip():
                continue
            if len(r) != 3:
                raise DataError(f"{p} row {n}: expected onnx,vnnlib,timeout; got {len(r)} fields")
            try:
                timeout = float(r[2])
            except ValueError:
                raise DataError(f"{p} row {n}: timeout {r[2]!r} is not a number") from None
            if not timeout > 0:
                raise DataError(f"{p} row {n}: timeout must be positive, got {r[2]}")
            rows.append({"onnx": r[0].strip(), "vnnlib": r[1].strip(), "timeout": timeout,
                         "onnx_path": _existing(p.parent, r[0].strip(), n, "model"),
                         "vnnlib_path": _existing(p.parent, r[1].strip(), n, "property")})
    if not rows:
        raise DataError(f"{p} lists no instances")
    return rows


def run_instances_task(payload: dict[str, Any], indices: tuple[int, ...]) -> list[dict[str, Any]]:
    """Worker side: `certnn verify` on each instance, its timeout counted from the instance's start."""
    from .main import build_parser

    out = []
    for i in indices:
        row = payload["rows"][i]
        args = build_parser().parse_args(payload["argv"])
        args.instances, args.workers, args.address, args.resume = None, None, None, False
        args.model, args.spec, args.timeout, args.out = row["onnx_path"], row["vnnlib_path"], row["timeout"], None
        t0 = time.perf_counter()
        args.started_at = t0
        with tempfile.TemporaryDirectory(prefix="certnn-inst-") as d:
            args.json = str(Path(d) / "r.json")
            with contextlib.redirect_stdout(io.StringIO()):
                args.func(args)
            res = json.loads(Path(args.json).read_text())["result"]
        out.append({"index": i, "result": res["vnncomp"], "verdict": res["verdict"], "decided_by": res.get("decided_by"),
                    "prepare_time": 0.0, "run_time": time.perf_counter() - t0})
    return out


def run_instances(args) -> int:
    from ..workers import WorkerConfig, make_tasks, run_tasks
    from ..report.atomic import atomic_write_text
    from ..workers.checkpoint import open_checkpoint
    from .shard_progress import ShardProgress
    from .shard_run import make_backend
    from .sharded import checkpoint_path, fingerprint, resolve_workers

    if args.model or args.spec:
        raise ConfigError("--instances takes the models and properties from the csv; drop --model / --spec")
    rows = read_instances(args.instances)
    bench = args.benchmark or Path(args.instances).resolve().parent.name
    out = Path(args.results)
    workers = resolve_workers(args)
    cfg = WorkerConfig(workers=workers or 1, address=args.address, task_size=args.task_size or 1)
    fp = fingerprint(args, "verify-instances", range(len(rows)))
    fp["files"]["instances"] = [str(Path(args.instances).resolve()), Path(args.instances).stat().st_size]
    ckpt, state = open_checkpoint(checkpoint_path(out), fp, args.resume)
    done = dict(state.items)
    pending = [i for i in range(len(rows)) if i not in done]
    prog = ShardProgress(f"verify {bench}", len(rows), len(done),
                         sum(r["verdict"] == "holds" for r in done.values()), "holds", args.quiet)
    payload = {"argv": list(args.argv), "rows": rows}
    try:
        res = run_tasks(make_backend(run_instances_task, payload, workers, args.address),
                        make_tasks(pending, cfg.effective_task_size(len(pending), 1)), max_attempts=cfg.max_attempts,
                        checkpoint=ckpt,
                        progress=lambda recs, failed: prog.update(len(recs), sum(r["verdict"] == "holds" for r in recs),
                                                                  len(failed)))
    except KeyboardInterrupt:
        print(f"certnn verify: interrupted; finished instances are in {ckpt.path}: rerun with --resume to continue",
              file=sys.stderr)
        raise
    finally:
        prog.close()
    done.update(res.records)
    lines = []
    for i, row in enumerate(rows):
        r = done.get(i) or {"result": "error", "prepare_time": 0.0, "run_time": 0.0}
        lines.append(",".join([bench, row["onnx"], row["vnnlib"], f"{r['prepare_time']:.6f}", r["result"],
                               f"{r['run_time']:.6f}"]))
    atomic_write_text(out, "\n".join(lines) + "\n")
    counts = {w: sum(line.split(",")[4] == w for line in lines) for w in ("unsat", "sat", "unknown", "error")}
    if res.failed:
        print(f"certnn verify: {len(res.failed)} instances failed twice (result 'error'); first: instance "
              f"{min(res.failed)}: {res.failed[min(res.failed)]}", file=sys.stderr)
    if not args.quiet:
        print(f"{bench}: {len(rows)} instances: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; wrote {out}")
    return 0
