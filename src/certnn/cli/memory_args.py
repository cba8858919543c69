"""`--max-memory`: the run's memory budget (engine/memory.py), for radius / certify / report."""
from __future__ import annotations

import argparse


def add_memory_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-memory", metavar="SIZE", default=None,
                   help="memory budget of the whole run, e.g. 8G or 512M (default: half the machine's memory); "
                        "samples and rows are chunked to stay within it, with the same bounds")


def budget_bytes(args) -> int:
    from ..engine.memory import default_budget, parse_size

    text = getattr(args, "max_memory", None)
    return default_budget() if text is None else parse_size(text)


def memory_plan(args, graph, batch_size: int, max_rows: int = 4096):
    """The ChunkPlan for `graph` under --max-memory; records the budget for the JSON settings
    (args.memory_settings)."""
    from ..engine.memory import plan_chunks

    budget = budget_bytes(args)
    plan = plan_chunks(graph, budget, batch_size, max_rows)
    args.memory_settings = {"max_memory_mb": round(budget / 2 ** 20, 1), "batch_size_used": plan.batch_size,
                            "max_rows_used": plan.max_rows}
    return plan
