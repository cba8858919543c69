"""The parent side of a sharded run (see sharded.py): checkpoint, backend, progress, merge, output."""
from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import ConfigError, SoundnessError
from ..workers import WorkerConfig, make_tasks, run_tasks
from ..report.atomic import write_or_keep
from ..workers.checkpoint import open_checkpoint
from .shard_merge import GOOD_LABEL, SUMMARIES, good_count, merge_clip_clamped
from .shard_progress import ShardProgress
from .sharded import checkpoint_path, fingerprint, output_path, resolve_workers, run_slice, sample_range


def make_backend(fn, payload: Any, workers: int | None, address: str | None):
    """Ray with --address; else local processes for workers > 1, this process for 1. One torch thread per
    worker process when there are several (the workers already use the cores)."""
    threads = 1 if workers is None or workers > 1 else None
    if address:
        from ..workers.ray_backend import RayBackend

        return RayBackend(fn, payload, workers, address, threads=threads)
    if workers == 1:
        return InlineBackendAdapter(fn, payload)
    import torch

    from ..workers.local import LocalBackend

    return LocalBackend(fn, payload, workers, threads=threads, gpus=torch.cuda.device_count())


def InlineBackendAdapter(fn, payload):  # noqa: N802 -- a factory kept beside the others
    from ..workers.local import InlineBackend

    return InlineBackend(fn, payload)


def run_sharded(args, command: str) -> int:
    from .common import Console

    con = Console(args.quiet)
    out = output_path(args, command)
    indices = sample_range(args)
    if out is None and args.resume:
        raise ConfigError("--resume continues the checkpoint beside --json OUT: give the same --json as the "
                          "interrupted run")
    workers = resolve_workers(args)
    cfg = WorkerConfig(workers=workers or 1, address=args.address, task_size=args.task_size)
    ckpt, state = (None, None) if out is None else open_checkpoint(checkpoint_path(out), fingerprint(args, command, indices),
                                                                  args.resume)
    done = dict(state.items) if state else {}
    pending = [i for i in indices if i not in done]
    tasks = make_tasks(pending, cfg.effective_task_size(len(pending), getattr(args, "batch_size", 32)))
    meta: dict[str, Any] = dict(state.meta) if state else {}
    prog = ShardProgress(f"{command} ({workers or 'ray'} workers)", len(indices), len(done),
                         sum(good_count(command, None, r["sample"]) for r in done.values()),
                         GOOD_LABEL.get(command), args.quiet)

    def progress(records, failed):
        for r in records:
            if "settings" in r and "settings" not in meta:
                meta["settings"], meta["environment"] = r["settings"], r["environment"]
                if ckpt is not None:
                    ckpt.meta("settings", r["settings"])
                    ckpt.meta("environment", r["environment"])
        prog.update(len(records), sum(good_count(command, None, r["sample"]) for r in records), len(failed))

    # local worker processes share this machine's memory: each plans within budget / workers
    share = workers if (workers and workers > 1 and not args.address) else 1
    payload = {"command": command, "argv": list(args.argv), "memory_share": share}
    try:
        res = run_tasks(make_backend(run_slice, payload, workers, args.address), tasks,
                        max_attempts=cfg.max_attempts, checkpoint=ckpt, progress=progress)
    except KeyboardInterrupt:
        prog.close()
        if ckpt is not None:
            print(f"certnn {command}: interrupted; finished samples are in {ckpt.path}: rerun the same command with "
                  f"--resume to continue", file=sys.stderr)
        raise
    finally:
        prog.close()
    done.update(res.records)
    return finish(args, command, con, indices, done, res.failed, meta, out)


def finish(args, command, con, indices, done, failed, meta, out) -> int:
    """Merge the records in sample order, write the document, print a short summary."""
    if "settings" not in meta:
        raise ConfigError(f"every sample failed; first error: {next(iter(failed.values()), '?')}")
    records = [done[i] for i in indices if i in done]
    samples = [r["sample"] for r in records]
    seconds = [r["seconds"] for r in records]
    settings = dict(meta["settings"])
    clamped = [r["settings"]["clip_clamped"] for r in records if "clip_clamped" in r.get("settings", {})]
    if clamped:
        settings["clip_clamped"] = merge_clip_clamped(clamped)
    if failed:
        con.err.print(f"certnn {command}: {len(failed)} samples failed twice and are recorded with their error "
                      f"(first: sample {min(failed)}: {failed[min(failed)]})")
    if command == "report":
        return _finish_report(args, con, samples, settings, seconds, failed, meta)
    summary = SUMMARIES[command](samples, settings, seconds)
    if failed:
        summary["failed"] = len(failed)
        samples = samples + [{"index": i, "failed": True, "error": e} for i, e in failed.items()]
        samples.sort(key=lambda s: s["index"])
    doc = {"schema_version": 1, "command": command, "settings": settings, "environment": meta["environment"],
           "summary": summary, "samples": samples}
    if out is not None:
        write_or_keep(out, json.dumps(doc, indent=2) + "\n", "the JSON document")
    con.table(f"{command}: {len(samples)} samples over workers", ["quantity", "value"],
              [[k, json.dumps(v) if isinstance(v, dict) else v] for k, v in summary.items()])
    if out is not None:
        con.print(f"wrote {out}")
    return 0


def _finish_report(args, con, samples, settings, seconds, failed, meta) -> int:
    from ..report.render import write_report
    from .shard_report import report_data

    data = report_data(samples, settings, seconds)
    if failed:
        data.summary["failed"] = len(failed)
        data.summary["failed_samples"] = {str(i): e for i, e in sorted(failed.items())}
    files = write_report(data, args.out, {})
    con.print(f"wrote {files['md']} and {files['json']}")
    if data.violations:
        raise SoundnessError(f"{len(data.violations)} certified radii exceed the attack radius; details in "
                             f"{files['md']}. This is a bug in certnn: please report it")
    return 0
