"""The `certnn` command.

Exit codes:
  0  the command ran (whatever the verdicts were)
  2  bad input: unknown flag or value, malformed model / data / spec file, unsupported layer
  3  a soundness check failed (e.g. certified radius above an attack radius): a bug in certnn
  4  unexpected internal error
  130 interrupted
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import CertnnError

#: subcommand modules; each has register(subparsers) setting `func`
SUBCOMMANDS = ["radius", "certify", "verify", "vnnlib", "attack", "clever", "report", "train", "words", "compare", "demo",
               "run"]
#: module of each subcommand that is not named after it
MODULES = {"vnnlib": "vnnlib_solver", "run": "config_file"}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="certnn", description="Certified robustness of neural networks.")
    p.add_argument("--version", action="version", version=f"certnn {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"certnn.cli.{MODULES.get(name, name)}").register(sub)
    from .common import HelpFormatter
    from .config_file import add_config_flag

    for name, sp in sub.choices.items():  # one "(default: X)" per flag (cli/common.py)
        sp.formatter_class = HelpFormatter
        if name not in ("run", "vnnlib"):
            add_config_flag(sp)  # --config FILE, expanded by config_file.expand before parsing
    return p


def main(argv: list[str] | None = None) -> int:
    from .allocator import tune_allocator

    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["vnnlib"]:  # the VNN-LIB solver interface has its own options and exit codes
        return _vnnlib(args_list[1:], argv is None)
    tune_allocator()
    import time

    from .clock import process_start_perf

    # deadlines of a command run as a program count from the process start; called in-process (argv
    # given, e.g. tests or scripts), from now
    started_at = process_start_perf() if argv is None else time.perf_counter()
    parsed = _parse(args_list)
    if isinstance(parsed, int):
        return parsed
    args, args_list = parsed
    args.started_at = started_at
    args.hard_exit = argv is None  # a program may end its own process (verify's deadline watchdog); in-process never
    args.argv = args_list  # sharded runs (--workers) re-parse it in each worker
    return _dispatch(args)


def _vnnlib(rest: list[str], as_program: bool) -> int:
    """`certnn vnnlib ...`: the VNN-LIB solver interface (cli/vnnlib_solver.py); as a program its clock
    starts with the process."""
    import time

    from .allocator import tune_allocator
    from .vnnlib_solver import _process_age
    from .vnnlib_solver import main as vnnlib_main

    from .._startup import restore

    restore()
    tune_allocator()
    started = time.monotonic() - (_process_age() if as_program else 0.0)
    return vnnlib_main(rest, prog="certnn vnnlib", started=started, hard_exit=as_program)


def _parse(args_list: list[str]) -> tuple[argparse.Namespace, list[str]] | int:
    """(parsed arguments, the argument list after --config expansion), or the exit code of a bad --config
    file or of Ctrl-C while parsing."""
    try:
        parser = build_parser()
        from .config_file import expand

        try:
            args_list = expand(args_list, parser)  # --config FILE / certnn run FILE (cli/config_file.py)
        except CertnnError as exc:
            print(f"certnn: error: {exc}", file=sys.stderr)
            return exc.exit_code
        args = parser.parse_args(args_list)
        from .._startup import restore

        restore()  # from here on Ctrl-C raises KeyboardInterrupt, handled below
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return args, args_list


def _dispatch(args) -> int:
    """Runs the subcommand: its errors become messages on stderr and exit codes (module docstring)."""
    from .memory_guard import release_guard
    from .precision_args import check_device

    try:
        from .validate import validate_args

        validate_args(args)
        check_device(args)  # --device cuda without a GPU: exit 2 before any model is loaded
        return int(args.func(args) or 0)
    except CertnnError as exc:
        print(f"certnn {args.command}: error: {exc}", file=sys.stderr)
        if getattr(exc, "unsaved_text", None):  # an output that could not be written anywhere
            sys.stdout.write(exc.unsaved_text)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"certnn {args.command}: error: out of memory; lower --max-memory (the run is then chunked to fit) "
              "or --batch-size", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001
        from .internal_error import save_traceback

        where = save_traceback()
        print(f"certnn {args.command}: internal error ({type(exc).__name__}: {exc}); please report it"
              + (f" with {where}" if where else ""), file=sys.stderr)
        return 4
    finally:
        release_guard()  # --max-memory's guard (cli/budgets.py) ends with the command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
