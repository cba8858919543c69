"""What a file given as a PyTorch file really is, so that errors advise only what applies.

`torch.load(weights_only=True)` refuses both a genuine pickle holding Python objects (then, and only then,
`--trust-pickle` is the remedy for a trusted file) and a file that is no PyTorch file at all (truncated,
garbage, a text file renamed .pt), where a hint toward unpickling would nudge a user into running code from
a broken or hostile file for nothing.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

#: first byte of a pickle of protocol >= 2 (what torch.save writes in its legacy format)
_PICKLE_PROTO = b"\x80"


def is_torch_pickle(path: str | Path) -> bool:
    """True when `path` is a zip archive holding a pickle (torch.save's format) or a legacy pickle stream;
    False for anything else (garbage, empty, text, an npz without pickles...)."""
    p = Path(path)
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                return any(n.endswith(".pkl") for n in zf.namelist())
        with open(p, "rb") as f:
            head = f.read(2)
    except (OSError, zipfile.BadZipFile):
        return False
    return len(head) == 2 and head[:1] == _PICKLE_PROTO and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL


def needs_unpickling(exc: BaseException) -> bool:
    """Whether a weights_only torch.load failed because the pickle holds objects outside the allowed set
    (the remedy is trusting the file), not because the file is damaged."""
    return "Weights only load failed" in str(exc) or "Unsupported global" in str(exc)


def describe_unreadable(path: str | Path, exc: BaseException) -> str:
    """A message for a file torch.load cannot read, with no unpickling advice."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not is_torch_pickle(path):
        return (f"{path} is not a PyTorch file (neither a torch.save zip archive nor a pickle); is it truncated "
                f"or another format?")
    return f"{path} is a damaged PyTorch file ({first[:200]})"
