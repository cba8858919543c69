"""An unexpected exception inside a command (a bug): its traceback goes to a temporary file for the bug
report, never to the user's terminal; the command prints one line naming the file and exits 4. Shared by
``certnn`` (cli/main.py) and ``certnn-vnnlib`` (cli/vnnlib_solver.py)."""
from __future__ import annotations


def save_traceback() -> str | None:
    """The current exception's traceback in a temporary file for the bug report (never on the user's
    terminal); its path, or None when it cannot be written."""
    import tempfile
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix="certnn-internal-error-", suffix=".txt")
        with open(fd, "w") as fh:
            traceback.print_exc(file=fh)
        return path
    except OSError:
        return None
