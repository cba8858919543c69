"""`--workers N` / `--address ADDR` / `--resume` on radius, certify, attack, clever and report: the
samples are sharded into tasks, each task runs the command itself on its slice of samples in a worker
(`run_slice`), every finished sample goes to the checkpoint beside the output, and the samples are merged
back in order into the same document the single-process command writes (shard_merge, shard_report).
Without these flags the commands run in one process, as before."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SoundnessError

#: argparse destinations that choose how a run is spread, not what it computes
WORKER_KEYS = ("workers", "address", "resume", "task_size")
_NOT_FINGERPRINTED = set(WORKER_KEYS) | {"quiet", "log_json", "config", "func", "started_at", "argv", "hard_exit", "weights_found",
                                           "clip_clamped"}


def add_worker_args(p) -> None:
    g = p.add_argument_group("scale-out (docs/scaling.md)")
    g.add_argument("--workers", type=_workers_arg, metavar="N|auto",
                   help="shard the samples over N workers (local processes, or Ray tasks with --address); 'auto': "
                        "one per GPU, else one per CPU core. Each finished sample is appended to a checkpoint "
                        "beside the output (OUT.ckpt.jsonl); default: one process, no checkpoint")
    g.add_argument("--address", metavar="ADDR",
                   help="run the tasks on Ray: 'local' starts a Ray here, 'auto' joins the cluster of this node, "
                        "'ray://host:port' a remote cluster (files must be at the same paths there)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its checkpoint: finished samples are not recomputed")
    g.add_argument("--task-size", type=int, metavar="K",
                   help="samples per task (default: min(--batch-size, samples / (4 x workers)))")


def _workers_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"--workers {text!r}: give a number >= 1 or 'auto'") from None
    if n < 1:
        raise ConfigError(f"--workers {n}: give a number >= 1 or 'auto'")
    return n


def wants_sharding(args) -> bool:
    return any(getattr(args, k, None) for k in ("workers", "address", "resume"))


def output_path(args, command: str) -> Path | None:
    if command == "report":
        return Path(args.out) / "report.json"
    return Path(args.json) if getattr(args, "json", None) else None


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt.jsonl")


def _file_id(path: str | None) -> list | None:
    if not path:
        return None
    p = Path(path.split(":", 1)[0] if ".py:" in path else path)
    try:
        st = p.stat()
    except OSError:
        return [str(p), None]
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def fingerprint(args, command: str, indices: range) -> dict[str, Any]:
    """What a checkpoint belongs to: the command, every flag that changes results, the samples and the
    identity (path, size, mtime) of the model, weights and data files."""
    from .. import __version__

    flags = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_FINGERPRINTED and not callable(v)}
    return {"certnn": __version__, "command": command, "flags": json.loads(json.dumps(flags, default=str)),
            "samples": [indices.start, indices.stop],
            "files": {k: _file_id(getattr(args, k, None)) for k in ("model", "weights", "data")}}


def resolve_workers(args) -> int | None:
    """Workers of the run: 'auto' is one per GPU, else one per CPU core; with --address and no --workers,
    None (Ray: one task per CPU, or per GPU, of the cluster)."""
    w = args.workers
    if w == "auto":
        import torch

        return torch.cuda.device_count() or os.cpu_count() or 1
    if w is None:
        return None if args.address else 1
    return int(w)


def run_slice(payload: dict[str, Any], indices: tuple[int, ...]) -> list[dict[str, Any]]:
    """Worker side: run the command on samples indices[0] .. indices[-1] (one contiguous slice) and return
    one record per sample: the sample's JSON entry, its share of the shard's seconds, and (on the first
    record) the settings and environment."""
    from .allocator import tune_allocator
    from .main import build_parser

    tune_allocator()  # a worker process runs no `certnn` main: keep freed tensor memory as the command does
    args = build_parser().parse_args(payload["argv"])
    command = payload["command"]
    args.started_at = time.perf_counter()
    args.start, args.samples = indices[0], len(indices)
    args.workers, args.address, args.resume, args.quiet = None, None, False, True
    args.memory_share = payload.get("memory_share", 1)
    with tempfile.TemporaryDirectory(prefix="certnn-shard-") as d:
        if command == "report":
            args.out, path = d, Path(d) / "report.json"
        else:
            args.json, path = str(Path(d) / "shard.json"), Path(d) / "shard.json"
        try:
            args.func(args)
        except SoundnessError:
            if command != "report" or not path.exists():
                raise  # the report is written before its check; merged checks run on the whole report
        doc = json.loads(path.read_text())
    seconds = {k: v for k, v in doc["summary"].items() if "seconds" in k}
    records = [{"index": s["index"], "sample": s, "seconds": seconds} for s in doc["samples"]]
    if records:
        records[0]["settings"], records[0]["environment"] = doc["settings"], doc["environment"]
    return records


def sample_range(args) -> range:
    from ..data.npz import read_npz_arrays

    for flag in ("task", "text"):
        if getattr(args, flag, None) is not None:
            raise ConfigError(f"--workers / --address / --resume shard --data samples; --{flag} inputs run in one "
                              f"process (drop the scale-out flags)")
    if not getattr(args, "data", None):
        raise ConfigError("--workers / --address / --resume need --data D.npz")
    p = Path(args.data)
    if not p.is_file():
        from ..errors import DataError

        raise DataError(f"data file {p} not found")
    (y,) = read_npz_arrays(p, ("y",))
    n = int(y.shape[0])
    if args.start < 0 or args.start >= n:
        raise ConfigError(f"--start {args.start} is outside the {n} samples of {p}")
    stop = n if args.samples is None else min(n, args.start + args.samples)
    return range(args.start, stop)
