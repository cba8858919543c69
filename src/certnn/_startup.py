"""Ctrl-C while the `certnn` command starts (importing torch takes seconds): exit 130 without a traceback.

Imported first by the package. It acts only when this process *is* the `certnn` / `certnn-vnnlib` command
(console script, or `python -m certnn`): then, until `cli.main` installs Python's default handler again
(and catches KeyboardInterrupt itself), SIGINT prints "interrupted" and exits with code 130 at once.
Library users importing certnn are not affected.
"""
from __future__ import annotations

import os
import signal
import sys


def _is_command() -> bool:
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0)
    return name in ("certnn", "certnn-vnnlib") or (argv0 == "-m" and _main_is_certnn())


def _main_is_certnn() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is None or str(getattr(spec, "name", "")).startswith("certnn")


def _interrupted(signum, frame) -> None:  # pragma: no cover - exercised in a child process
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def install() -> None:
    if _is_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted)


def restore() -> None:
    """Back to Python's KeyboardInterrupt (cli.main handles it from here on)."""
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


install()
