"""Shared benchmark plumbing: locating ../shared/data, running one configuration in a subprocess (so its
peak memory can be measured), and writing Markdown tables."""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CERTNN_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / "benchmarks" / "out"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def certified_radius_record(graph, x, y, config, bisection_steps: int, scale=None) -> dict:
    """Mean certified radius (a lower bound) of one Certifier.radius search, and its bound evaluations."""
    import certnn

    res = certnn.Certifier(graph, config, scale=scale).radius(x, y, certnn.RadiusConfig(bisection_steps=bisection_steps))
    return {"mean_radius": float(res.certified_radius.mean()), "evaluations": res.evaluations}


def attack_radius_record(r) -> dict:
    """Mean attack radius (an upper bound) over the samples where the attack found an example, and their count."""
    import torch

    found = torch.isfinite(r)
    return {"mean_radius": float(r[found].mean()) if found.any() else None, "found": int(found.sum())}


def run_child(script: Path, args: list[str], timeout: float | None = None) -> dict:
    """Run `python script --child ...args`, which prints one JSON line last; return it."""
    from certnn.cli.allocator import MALLOC_ENV

    cmd = [sys.executable, str(script), "--child", *args]
    # keep freed tensor memory in the heap (see certnn/cli/allocator.py): the same setting as the CLI
    env = {**os.environ, **MALLOC_ENV}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"child failed ({' '.join(cmd)}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def markdown_table(columns: list[str], rows: list[list[object]]) -> str:
    def f(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(f(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def append_jsonl(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def matrix_parser(doc: str, *, models: str, methods: str, jsonl: str, norms: str = "inf,2", samples: int = 100,
                  batch_size: int = 50, threads: int = 1, quick_help: str = "a short run") -> argparse.ArgumentParser:
    """The flags every model x method x norm benchmark shares: the hidden child-run flags (--child,
    --model, --method, --norm), the matrix (--models, --methods, --norms), the run size (--samples,
    --batch-size, --threads, --quick) and the output (--jsonl, --table-only)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for flag in ("--model", "--method", "--norm"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    p.add_argument("--models", default=models)
    p.add_argument("--methods", default=methods)
    p.add_argument("--norms", default=norms)
    p.add_argument("--samples", type=int, default=samples)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--jsonl", default=jsonl)
    p.add_argument("--table-only", action="store_true")
    return p


# --- side-by-side benchmarks (certnn beside a peer, one child process per model) ---------------------------

def peer_parser(doc: str, models, jsonl: Path, md: Path) -> argparse.ArgumentParser:
    """The flags every certnn-beside-a-peer benchmark shares: --models (default: all), --threads, --label,
    --jsonl, --md, --table-only, and the hidden --child / --model of the per-model child run."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(models))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--label", default="this checkout", help="name of the certnn version measured")
    p.add_argument("--jsonl", default=str(jsonl))
    p.add_argument("--md", default=str(md))
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    return p


def chosen_models(p: argparse.ArgumentParser, a, models) -> list[str]:
    """The --models names, or an argparse error naming the unknown ones and the choices."""
    names = a.models.split(",")
    unknown = set(names) - set(models)
    if unknown:
        p.error(f"unknown models {sorted(unknown)}; choose from {', '.join(models)}")
    return names


def stamp(rec: dict, a, peer_version: str) -> dict:
    """A child's record with what it ran on: label, threads, torch / certnn / auto_LiRPA versions, date, host."""
    import datetime
    import platform

    import torch

    import certnn

    rec.update({"label": a.label, "threads": torch.get_num_threads(), "torch": torch.__version__,
                "auto_LiRPA": peer_version, "certnn": certnn.__version__, "host": platform.node(),
                "date": datetime.datetime.now().isoformat(timespec="seconds")})
    return rec


def model_child(script: Path, args: list[str], name: str, tune_allocator: bool = True) -> dict:
    """`python script --child ...args` for one model: its last stdout line (a JSON record), or a record with
    `error` when the child failed (its traceback went to the terminal; an OOM kill does not end the run)."""
    from certnn.cli.allocator import MALLOC_ENV

    # keep freed tensor memory in the heap (certnn/cli/allocator.py), as the certnn CLI does
    env = {**os.environ, **MALLOC_ENV} if tune_allocator else dict(os.environ)
    cmd = [sys.executable, str(Path(script).resolve()), "--child", *args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    lines = p.stdout.strip().splitlines()
    if p.returncode == 0 and lines:
        return json.loads(lines[-1])
    why = (f"killed by signal {-p.returncode} (9: out of memory?)" if p.returncode < 0
           else f"exit status {p.returncode}")
    return {"model": name, "error": f"child {why}; see its traceback above", "cmd": " ".join(cmd)}


def record_models(names: list[str], run_one, jsonl: Path, label: str) -> None:
    """run_one(name) -> record for each model: appended to the JSONL, printed, suspicious findings flagged."""
    for name in names:
        rec = run_one(name)
        rec.setdefault("label", label)
        append_jsonl(jsonl, rec)
        print(json.dumps(rec), flush=True)
        for msg in rec.get("suspicious", []):
            print(f"SUSPICIOUS [{name}]: {msg}", flush=True)
