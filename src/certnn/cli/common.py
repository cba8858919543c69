"""Shared CLI plumbing: model/data flags, progress bars, tables, JSON output."""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typing import TYPE_CHECKING

from ..engine.method_names import BUILTIN_METHODS
from ..errors import ConfigError, DataError, ModelImportError

if TYPE_CHECKING:  # torch and the engine are imported by the commands' bodies: `--help` stays fast
    import torch


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" once: not where the help already states its default, nor for None / False."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="FILE.py:FACTORY, TorchScript .pt, .onnx, or a pickled module "
                                                   "(with --trust-pickle)")
    g.add_argument("--weights", help="weights for FILE.py:FACTORY models: a state_dict or a checkpoint "
                                     "({'state_dict': ...}, {'model': ...}, lists of state dicts, 'module.' "
                                     "prefixes), loaded with weights_only=True")
    add_random_init_arg(g)
    g.add_argument("--weights-key", help="which state_dict of a checkpoint holding several, e.g. state_dict.0 or ema")
    g.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a fully pickled module (runs code from the file)")
    g.add_argument("--input-shape", type=lambda s: tuple(int(v) for v in s.split(",")),
                   help="per-sample input shape if the data must be reshaped, e.g. 1,28,28")


def add_random_init_arg(g) -> None:
    g.add_argument("--random-init", action="store_true",
                   help="FILE.py:FACTORY without --weights: use the factory's random initialisation on purpose")


def check_weights_given(args) -> None:
    """A FILE.py:FACTORY model needs --weights (else its random initialisation would be certified) unless
    --random-init says that is meant."""
    spec = str(getattr(args, "model", "") or "")
    path = spec.rpartition(":")[0]
    factory = ":" in spec and path.endswith(".py") and Path(path).is_file()  # a missing file: the loader says so
    if factory and not getattr(args, "weights", None) and not getattr(args, "random_init", False):
        raise ConfigError(f"--model {spec} builds a fresh network: give its trained weights with --weights FILE "
                          "(or --random-init to use the random initialisation on purpose)")


def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, help="npz file with x (N, ...) and y (N,)")
    g.add_argument("--samples", type=int, help="use the first N samples (after --start)")
    g.add_argument("--start", type=int, default=0, help="index of the first sample")


def add_spec_args(p: argparse.ArgumentParser, methods: bool = True) -> None:
    g = p.add_argument_group("perturbation and method")
    g.add_argument("--norm", default="inf", choices=["inf", "2", "1"], help="Lp norm of the ball")
    if methods:
        add_method_list_arg(g)
    g.add_argument("--target", default="untargeted", choices=["untargeted", "top2", "random", "least"],
                   help="which classes the prediction must beat")
    g.add_argument("--clip", nargs=2, type=float, metavar=("LO", "HI"),
                   help="intersect the ball with the box [LO, HI] (e.g. 0 1 for pixels)")
    g.add_argument("--seed", type=int, default=0, help="random seed (targets 'random', attacks, sampling)")
    g.add_argument("--batch-size", type=int, default=32, help="samples bounded together")
    if not methods:  # --frames is a certification option (certify / radius)
        return
    g.add_argument("--frames", default=None,
                   help="sequence models: perturb only these frames (time steps / tokens), e.g. 0,3,5 or -1; "
                        "default all")
    g.add_argument("--frame-eps", default=None,
                   help="relative eps per chosen frame, e.g. 1,0.5,1 (default 1 each)")
    add_frame_norm_arg(g)


def add_frame_norm_arg(g) -> None:
    g.add_argument("--frame-norm", default=None, choices=["2", "1", "inf"],
                   help="sequence models: a ball of this norm per frame, the frames independent (L-inf across "
                        "frames; POPQORN's threat model is --frame-norm 2); --norm must be inf")


def add_alpha_args(p: argparse.ArgumentParser) -> None:
    """Settings of the alpha-crown optimiser (optimize.AlphaConfig)."""
    from ..optimize.config import AlphaConfig

    d = AlphaConfig()
    g = p.add_argument_group("alpha-crown (optimised bounds)")
    g.add_argument("--alpha-iterations", type=int, default=d.iterations,
                   help="bound evaluations of alpha-crown (the first is CROWN's bound)")
    g.add_argument("--alpha-lr", type=float, default=d.lr, help="Adam step size of the ReLU slopes (S-shaped "
                                                               "slopes and plane tilts take 0.04 x this)")
    g.add_argument("--alpha-patience", type=int, default=d.patience,
                   help="stop a sample after this many iterations without a better bound")


def add_complete_args(p: argparse.ArgumentParser) -> None:
    """Complete certification: branch and bound (beta-CROWN) for samples the method does not prove."""
    from ..certify.complete_config import CompleteConfig

    g = p.add_argument_group("complete certification (branch and bound)")
    g.add_argument("--complete", action="store_true",
                   help="samples the method does not prove go to branch and bound on ReLU splits (beta-CROWN): "
                        "each ends proved, violated (a checked adversarial example) or unknown (time)")
    g.add_argument("--complete-timeout", type=float, default=CompleteConfig().timeout, metavar="SECONDS",
                   help="branch-and-bound seconds per sample (per eps; per step of a radius search)")


def complete_config(args):
    from ..certify.complete_config import CompleteConfig

    if not args.complete:
        return None
    return CompleteConfig(timeout=args.complete_timeout)


def alpha_config(args):
    from ..optimize.config import AlphaConfig

    return AlphaConfig(iterations=args.alpha_iterations, lr=args.alpha_lr, patience=args.alpha_patience)


def frame_options(args) -> dict:
    """CertifyConfig fields frames / frame_eps / frame_norm from --frames / --frame-eps / --frame-norm."""
    from ..specs.frames import parse_frame_eps, parse_frames

    return {"frames": parse_frames(getattr(args, "frames", None)),
            "frame_eps": parse_frame_eps(getattr(args, "frame_eps", None)),
            "frame_norm": getattr(args, "frame_norm", None)}


def threat_model(norm: str, frame_norm: str | None) -> str:
    """'L2' or 'L2 per frame, Linf across frames' for tables."""
    return f"L{norm}" if frame_norm in (None, "inf") else f"L{frame_norm} per frame, Linf across frames"


def resolve_data_dir(args) -> Path:
    """The data directory of --data-dir, else of the environment variable CERTNN_DATA_DIR (the folder that
    holds text/, embeddings/, mnist/, e.g. ../shared/data)."""
    d = getattr(args, "data_dir", None) or os.environ.get("CERTNN_DATA_DIR")
    task = getattr(args, "task", None)
    if not d:
        raise ConfigError(f"{'--task ' + task if task else 'this command'} reads its files from a data directory: "
                          "pass --data-dir DIR or set CERTNN_DATA_DIR (the folder holding text/, embeddings/, mnist/)")
    p = Path(d)
    if not p.is_dir():
        raise DataError(f"data directory {p} not found")
    return p


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="OUT.json", help="write machine-readable results (schema_version'd)")
    p.add_argument("--quiet", action="store_true", help="no table or progress bar")
    add_log_args(p)


def add_log_args(p: argparse.ArgumentParser) -> None:
    """--log-json: progress as JSON lines on stderr (cli/progress.py)."""
    p.add_argument("--log-json", action="store_true",
                   help="progress as one JSON object per line on stderr (for machines and log collectors)")


def add_method_list_arg(p, default: str = "crown") -> None:
    """--method M[,M...] (one or several certification methods); --methods is a hidden alias kept for
    compatibility."""
    p.add_argument("--method", default=default,
                   help=f"method, or several separated by commas: {', '.join(BUILTIN_METHODS)}")
    p.add_argument("--methods", dest="method", help=argparse.SUPPRESS)


def parse_methods(text: str) -> list[str]:
    from ..engine.methods import METHODS

    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ConfigError(f"unknown method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(sorted(METHODS))}")
    return names


def cli_load_model(args, sample_shape: tuple[int, ...] | None = None):
    """load_model with the CLI's flags; says on stderr where in a checkpoint the weights were found and keeps
    it for the JSON settings (input_settings). An ONNX input with symbolic per-sample dimensions (a
    sequence length) takes them from --input-shape, else from `sample_shape` (the data's)."""
    check_weights_given(args)
    from ..graph.loading import load_model

    info: dict = {}
    shape = getattr(args, "input_shape", None)
    try:
        model = load_model(args.model, getattr(args, "weights", None), getattr(args, "trust_pickle", False),
                           getattr(args, "weights_key", None), info, input_shape=shape)
    except ModelImportError as exc:
        from ..graph.from_onnx import SymbolicShapeError

        if not isinstance(exc, SymbolicShapeError) or shape is not None or sample_shape is None:
            raise
        model = load_model(args.model, None, False, None, info, input_shape=tuple(sample_shape))
    from .validate import check_model_flags

    check_model_flags(args, model)
    args.weights_found = info.get("weights_key")
    if args.weights_found and not getattr(args, "quiet", False):
        import sys

        print(f"certnn: weights from {args.weights_found}", file=sys.stderr)
    return model


def input_settings(args) -> dict:
    """Entries of a JSON document's settings about the inputs: model, weights and where in the checkpoint
    they were found, and clip_clamped (centres clamped into the --clip box, see clamp_data)."""
    out = {"model": args.model}
    if getattr(args, "weights", None):
        out["weights"] = args.weights
        out["weights_key"] = getattr(args, "weights_found", None)
    if getattr(args, "clip_clamped", None) is not None:
        out["clip_clamped"] = args.clip_clamped
    out.update(getattr(args, "memory_settings", None) or {})
    return out


def clamp_data(args, x: torch.Tensor) -> torch.Tensor:
    """Clamp data lying within float rounding (a few float32 ulps) outside --clip into the box, say so on
    stderr and record it for the JSON settings (clip_clamped); data farther outside is an error."""
    if not getattr(args, "clip", None):
        return x
    import torch

    from ..specs.lp import clamp_to_box

    x64 = x.to(torch.float64)
    x2, rep = clamp_to_box(x64, float(args.clip[0]), float(args.clip[1]))
    args.clip_clamped = rep.as_dict()
    if rep.values and not getattr(args, "quiet", False):
        import sys

        print(f"certnn: {rep.values} input values of {rep.samples} samples lay up to {rep.max_shift:.3g} outside "
              f"the clip box (float rounding) and were clamped into it", file=sys.stderr)
    return x2 if rep.values else x


def load_model_and_data(args) -> tuple[object, torch.Tensor, torch.Tensor]:
    from ..data.npz import load_npz
    from ..graph.ir import Graph
    from ..models.text import TextClassifier

    is_onnx = args.model.endswith(".onnx") or args.model.endswith(".onnx.gz")
    x, y = load_npz(args.data, args.samples, args.start) if is_onnx else (None, None)
    model = cli_load_model(args, None if x is None else tuple(x.shape[1:]))
    if isinstance(model, TextClassifier):
        raise ConfigError(f"{args.model} is a text model bundle: its inputs are token sequences, not --data arrays; "
                          f"certify it with `certnn radius --model M --task T` (or --text \"...\"; --eps gives "
                          f"certified accuracy, --attack the attack radius), `certnn words` or `certnn compare`")
    if x is None:
        x, y = load_npz(args.data, args.samples, args.start)
    if args.input_shape:
        n = 1
        for s in args.input_shape:
            n *= s
        if x[0].numel() != n:
            raise DataError(f"--input-shape {args.input_shape} has {n} values; the data has {x[0].numel()} per sample")
        x = x.reshape((x.shape[0],) + tuple(args.input_shape))
    if isinstance(model, Graph) and tuple(x.shape[1:]) != model.input_shape:
        n = 1
        for s in model.input_shape:
            n *= s
        if x[0].numel() == n:
            x = x.reshape((x.shape[0],) + model.input_shape)
    return model, clamp_data(args, x), y


class Console:
    """Human output (rich) unless quiet; all printing of the CLI goes through here."""

    def __init__(self, quiet: bool = False, log_json: bool = False, command: str = ""):
        self.quiet = quiet
        from rich.console import Console as RichConsole

        from .progress import Reporter

        self.out = RichConsole(highlight=False)
        self.err = RichConsole(stderr=True, highlight=False)
        self.reporter = Reporter.for_args(argparse.Namespace(quiet=quiet, log_json=log_json, command=command))

    @classmethod
    def for_args(cls, args) -> "Console":
        """From --quiet, --log-json and the command's name."""
        return cls(getattr(args, "quiet", False), getattr(args, "log_json", False), getattr(args, "command", ""))

    def print(self, *a, **k) -> None:
        if not self.quiet:
            self.out.print(*a, **k)

    def table(self, title: str, columns: list[str], rows: list[list[object]]) -> None:
        if self.quiet:
            return
        from rich.table import Table

        from rich.markup import escape

        # escaped: a header such as "certified[crown]" is text, not a rich style tag
        t = Table(title=escape(title))
        for c in columns:
            t.add_column(escape(c), justify="right" if c not in ("method",) else "left")
        for r in rows:
            t.add_row(*[escape(fmt(v)) for v in r])
        self.out.print(t)

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator:
        """A progress task (cli/progress.py): call it with (done, total); .detail(dict) for finer steps."""
        with self.reporter.task(description, total) as task:
            yield task


def fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == float("inf"):
            return "inf"
        return f"{v:.4g}"
    return str(v)


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
