"""Parse-time validation of every selection, number and output path of a `certnn` command.

Runs right after argparse, before any model is loaded or any work starts: a negative `--samples`, a NaN
`--timeout`, an empty entry in `--method crown,` or a `--json` path that is a directory is an error naming
the flag, the value and why (exit code 2), never a silently different run or a result lost at the end.
Rules are keyed by argparse `dest`, so a flag gets its rule in every command that has it.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError
from ..report.atomic import check_output_path

#: integers that count something: at least 1
POSITIVE_INTS = ("samples", "batch_size", "restarts", "attack_restarts", "batches", "batch_samples", "epochs",
                 "top", "alpha_iterations", "layers", "hidden", "max_len", "limit", "clever_batches",
                 "clever_samples", "embed_dim", "steps", "attack_steps")
#: integers that may be zero
NONNEG_INTS = ("start", "seed", "split_seed", "bisection_steps", "warmup_epochs", "ramp_epochs", "alpha_patience",
               "min_count")
#: finite and > 0
POSITIVE_FLOATS = ("timeout", "complete_timeout", "eps_max", "eps_init", "radius", "lr", "alpha_lr")
#: finite and >= 0 (a list is checked element by element)
NONNEG_FLOATS = ("eps", "weight_decay", "grad_clip")
#: finite, in [lo, hi] (open at an end marked by the flag)
UNIT_FLOATS = {"dropout": (0.0, 1.0, False), "test_fraction": (0.0, 1.0, False), "kappa_final": (0.0, 1.0, True),
               "beta_final": (0.0, 1.0, True)}
#: comma-separated method lists: no empty entry
METHOD_LISTS = ("method", "methods")
#: output paths that are files, by dest (per command where `--out` is a folder)
OUTPUT_FILES = {"json": "--json", "md": "--md"}
OUT_IS_FILE = {"train", "verify"}
OUT_IS_FOLDER = {"report", "demo"}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _number(dest: str, v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{_flag(dest)} {v!r} is not a number") from None
    if not math.isfinite(f):
        raise ConfigError(f"{_flag(dest)} {v} is not a finite number")
    return f


def _check_numbers(args) -> None:
    d = vars(args)
    for dest in POSITIVE_INTS:
        if d.get(dest) is not None and d[dest] < 1:
            raise ConfigError(f"{_flag(dest)} {d[dest]}: must be at least 1")
    for dest in NONNEG_INTS:
        if d.get(dest) is not None and d[dest] < 0:
            raise ConfigError(f"{_flag(dest)} {d[dest]}: must be 0 or more (negative values are not counted "
                              "from the end)")
    for dest in POSITIVE_FLOATS:
        if d.get(dest) is not None and _number(dest, d[dest]) <= 0:
            raise ConfigError(f"{_flag(dest)} {d[dest]}: must be positive")
    for dest in NONNEG_FLOATS:
        vals = d.get(dest)
        for v in (vals if isinstance(vals, (list, tuple)) else [] if vals is None else [vals]):
            if _number(dest, v) < 0:
                raise ConfigError(f"{_flag(dest)} {v}: must be 0 or more")
    for dest, (lo, hi, closed) in UNIT_FLOATS.items():
        if d.get(dest) is None:
            continue
        v = _number(dest, d[dest])
        if v < lo or v > hi or (not closed and v == hi):
            raise ConfigError(f"{_flag(dest)} {v}: must lie in [{lo}, {hi}{']' if closed else ')'}")
    if d.get("max_memory") is not None:
        from ..engine.memory import parse_size

        parse_size(d["max_memory"])
    if d.get("clip") is not None:
        lo, hi = (_number("clip", c) for c in d["clip"])
        if lo > hi:
            raise ConfigError(f"--clip {lo} {hi}: LO must not exceed HI")
    if d.get("eps_init") is not None and d.get("eps_max") is not None and d["eps_init"] > d["eps_max"]:
        raise ConfigError(f"--eps-init {d['eps_init']} is above --eps-max {d['eps_max']}")


def _check_lists(args) -> None:
    d = vars(args)
    for dest in METHOD_LISTS:
        text = d.get(dest)
        if isinstance(text, str) and any(not m.strip() for m in text.split(",")):
            raise ConfigError(f"{_flag(dest)} {text!r} has an empty entry (a stray comma?); give names separated "
                              "by single commas, e.g. crown,ibp")
    for dest in ("frames", "frame_eps"):
        text = d.get(dest)
        if isinstance(text, str) and text.strip().lower() != "all" and any(not v.strip() for v in text.split(",")):
            raise ConfigError(f"{_flag(dest)} {text!r} has an empty entry (a stray comma?)")


def _check_outputs(args) -> None:
    d = vars(args)
    for dest, flag in OUTPUT_FILES.items():
        if d.get(dest):
            check_output_path(d[dest], flag)
    out = d.get("out")
    if out and args.command in OUT_IS_FILE:
        check_output_path(out, "--out")
    elif out and args.command in OUT_IS_FOLDER:
        check_output_folder(out, "--out")


def check_output_folder(path: str, what: str) -> None:
    """A folder that will receive files: an existing folder is probed with a file in it; a missing one
    must be creatable (checked like a file path inside it)."""
    from pathlib import Path

    p = Path(path)
    if p.exists() and not p.is_dir():
        from ..report.atomic import OutputPathError

        raise OutputPathError(f"{what} {p} is a file; give a folder (it receives several files)")
    check_output_path(p / "report.json", what)


def is_sequence_model(model) -> bool | None:
    """True / False for a torch module (whether it holds an RNN, LSTM or GRU layer or cell); None when it
    cannot be told from the model object (an imported graph)."""
    from torch import nn

    if not isinstance(model, nn.Module):
        return None
    rnn_names = {"RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"}
    return any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) or getattr(m, "original_name", "") in rnn_names
               for m in model.modules())


def check_model_flags(args, model) -> None:
    """Refuse flags that do not apply to the loaded model: --frames / --frame-eps / --frame-norm perturb
    time steps of a sequence model; on a feed-forward model they would silently perturb rows of its input."""
    given = [f for f in ("frames", "frame_eps", "frame_norm") if getattr(args, f, None) is not None]
    if given and is_sequence_model(model) is False:
        flags = ", ".join(_flag(f) for f in given)
        raise ConfigError(f"{flags} apply only to sequence models (RNN / LSTM / GRU layers); {args.model} has none. Use "
                          "--norm / --eps for a feed-forward model's input")


def validate_args(args) -> None:
    """Raise ConfigError / OutputPathError (exit 2) for any bad number, selection or output path."""
    _check_numbers(args)
    _check_lists(args)
    _check_outputs(args)
    _check_combinations(args)


def _check_combinations(args) -> None:
    sharded = any(getattr(args, k, None) for k in ("workers", "address", "resume"))
    if sharded and getattr(args, "timeout", None) is not None and not getattr(args, "instances", None):
        raise ConfigError("--timeout cannot be combined with --workers / --address / --resume yet (each task would "
                          "count its own budget); the checkpoint already keeps every finished sample: stop the run "
                          "with Ctrl-C and continue it later with --resume")
