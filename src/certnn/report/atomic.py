"""Output files that are checked before the work starts and never half-written.

* :func:`check_output_path` is called while the command line is validated, before any computation: the path
  must not be a directory, its parent must be a folder (or creatable: no ancestor is a file) and writable.
* :func:`atomic_write_text` / :func:`atomic_write_bytes` write a temporary file in the same folder, flush and
  fsync it, then ``os.replace`` it onto the path: a reader sees the old file or the whole new one, never a
  torn one. Paths that are not regular files (``/dev/stdout``, a FIFO) are written directly.
* :func:`write_or_keep` writes a document and, when that fails (disk full, folder removed or made
  read-only during the run), keeps the text beside the path, in the working directory or the temporary
  directory, and raises :class:`OutputWriteError` (exit code 2) saying where the results are; if none of
  those can be written the error carries the text (``unsaved_text``) for the CLI to print on stdout.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from ..errors import CertnnError


class OutputPathError(CertnnError):
    """An output path cannot be written (a directory, a parent that is a file, a read-only folder)."""


class OutputWriteError(CertnnError):
    """Writing an output failed after the work was done; the message says where the results were kept."""

    def __init__(self, msg: str, kept: Path | None = None, unsaved_text: str | None = None):
        super().__init__(msg)
        self.kept = kept
        self.unsaved_text = unsaved_text


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def check_output_path(path: str | os.PathLike, what: str) -> Path:
    """Raise OutputPathError (naming `what`, e.g. "--json", and why) unless `path` can be written; returns
    it as a Path. Creates nothing: a missing parent is fine when its nearest existing ancestor is a writable
    folder (the write makes the folders)."""
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise OutputPathError(f"{what} {str(path)!r} is not a file name")
    if p.is_dir():
        raise OutputPathError(f"{what} {p} is a directory; give a file name, e.g. {p / 'out.json'}")
    if p.exists() and not p.is_file():  # /dev/stdout, a FIFO: written directly
        if not os.access(p, os.W_OK):
            raise OutputPathError(f"{what} {p} is not writable")
        return p
    anc = p.parent
    while not anc.exists():
        if anc.is_symlink():
            raise OutputPathError(f"{what} {p}: the folder {anc} is a broken link")
        anc = anc.parent
    if not anc.is_dir():
        raise OutputPathError(f"{what} {p}: {anc} is a file, not a folder")
    if anc == p.parent:
        _probe(anc, p, what)
    elif not os.access(anc, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {p}: cannot create folders in {anc} (permission denied or read-only)")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputPathError(f"{what} {p} exists and is not writable")
    return p


def _probe(folder: Path, p: Path, what: str) -> None:
    """Create and remove a temporary file in `folder`: catches read-only file systems and permissions
    exactly as the final write will meet them."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{p.name}.", suffix=".probe")
    except OSError as exc:
        raise OutputPathError(f"{what} {p}: cannot write in {folder} ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and os.replace (atomic on POSIX).
    Makes missing parent folders. Raises OSError on failure, leaving any previous file untouched."""
    p = Path(path)
    if p.exists() and not p.is_file():
        with open(p, "wb") as f:
            f.write(data)
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(p))
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """atomic_write_bytes of `text` encoded (UTF-8 by default)."""
    atomic_write_bytes(path, text.encode(encoding))


def _mode_for(p: Path) -> int:
    """The existing file's permissions, else 0o666 less the umask (what open() would give)."""
    try:
        return p.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def write_or_keep(path: str | os.PathLike, text: str, what: str) -> None:
    """atomic_write_text, and on failure keep `text` elsewhere and raise OutputWriteError saying where."""
    p = Path(path)
    try:
        atomic_write_text(p, text)
        return
    except OSError as exc:
        reason = _reason(exc)
    special = p.exists() and not p.is_file()  # /dev/full: never keep files in /dev
    for folder in ((() if special else (p.parent,)) + (Path.cwd(), Path(tempfile.gettempdir()))):
        kept = _keep_in(folder, p, text)
        if kept is not None:
            raise OutputWriteError(f"could not write {what} {p} ({reason}); the results were kept in {kept}",
                                   kept=kept)
    raise OutputWriteError(f"could not write {what} {p} ({reason}) nor keep it in a file; the results follow "
                           f"on stdout", unsaved_text=text)


def _keep_in(folder: Path, p: Path, text: str) -> Path | None:
    """Write `text` to a fresh file named after `p` in `folder`; None when that fails."""
    try:
        fd, kept = tempfile.mkstemp(dir=folder, prefix=f"{p.stem}.kept-", suffix=p.suffix or ".txt")
    except OSError:
        return None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        try:
            os.unlink(kept)
        except OSError:
            pass
        return None
    return Path(kept)
