"""Budgets of a run: `--max-memory` (engine/memory.py) and `--timeout` (certify/deadline.py), for radius /
certify / report."""
from __future__ import annotations

import argparse


def add_memory_args(p: argparse.ArgumentParser) -> None:
    add_timeout_arg(p)
    p.add_argument("--max-memory", metavar="SIZE", default=None,
                   help="memory budget of the whole run, e.g. 8G or 512M (default: half the machine's memory); "
                        "samples and rows are chunked to stay within it, with the same bounds")


def add_timeout_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="time budget from the process start: batches not started by then are reported undecided "
                        "(samples finished are kept); default none")


def deadline(args) -> float | None:
    """perf_counter time at which no new batch starts (None: no time budget)."""
    t = getattr(args, "timeout", None)
    return None if t is None else args.started_at + t


def budget_bytes(args) -> int:
    from ..engine.memory import default_budget, parse_size

    text = getattr(args, "max_memory", None)
    budget = default_budget() if text is None else parse_size(text)
    # a worker process of `--workers N` on this machine gets its share of the run's budget (cli/sharded.py)
    return budget // max(1, int(getattr(args, "memory_share", 1) or 1))


def memory_plan(args, graph, batch_size: int, max_rows: int = 4096):
    """The ChunkPlan for `graph` under --max-memory; records the budget for the JSON settings
    (args.memory_settings) and starts the guard that returns the allocator's retained memory above the
    plan's `trim_above` (cli/memory_guard.py; stopped when the command ends, cli/main.py)."""
    from ..engine.memory import plan_chunks
    from .memory_guard import guard_memory

    budget = budget_bytes(args)
    plan = plan_chunks(graph, budget, batch_size, max_rows)
    guard_memory(plan.trim_above)
    share = max(1, int(getattr(args, "memory_share", 1) or 1))  # the run's budget, whatever this process's share
    args.memory_settings = {"max_memory_mb": round(budget * share / 2 ** 20, 1), "batch_size_used": plan.batch_size,
                            "max_rows_used": plan.max_rows}
    return plan
