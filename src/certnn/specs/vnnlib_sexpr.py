"""VNN-LIB text: reading files (plain or gzip), tokens and s-expressions with their positions.

Shared by certnn's VNN-LIB 1.0 parser (:mod:`certnn.specs.vnnlib`), the counterexample reader and the
VNN-LIB 2.0 route (:mod:`certnn.specs.vnnlib2`).
"""
from __future__ import annotations

import bisect
import re
from pathlib import Path
from typing import Union

from ..errors import SpecError
from ..io_gzip import gunzip_if_gzipped

_COMMENT = re.compile(r";[^\n]*")
_TOKEN = re.compile(r"[()]|[^\s()]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_VAR_NAME = re.compile(r"([XY])_(0|[1-9]\d*)\Z")


class _Atom:
    """A symbol or number token and its character offset in the text."""

    __slots__ = ("text", "off")

    def __init__(self, text: str, off: int):
        self.text = text
        self.off = off


class _List(list):
    """A parenthesised list of nodes with the offset of its ``(``."""

    __slots__ = ("off",)


_Node = Union[_Atom, _List]


class _Source:
    """The text being parsed and its name; turns character offsets into ``name:line:column``."""

    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self._line_starts: list[int] | None = None

    def where(self, off: int) -> str:
        if self._line_starts is None:
            self._line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        line = bisect.bisect_right(self._line_starts, off)
        col = off - self._line_starts[line - 1] + 1
        return f"{self.name}:{line}:{col}"

    def error(self, off: int | None, msg: str) -> SpecError:
        return SpecError(f"{self.where(off)}: {msg}" if off is not None else f"{self.name}: {msg}")


def _read_sexprs(src: _Source) -> list[_Node]:
    """Tokenise (``;`` comments to end of line, any whitespace) and build the top-level s-expressions."""
    text = _COMMENT.sub(lambda m: " " * len(m.group()), src.text)
    top: list[_Node] = []
    stack: list[list] = []
    cur: list = top
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok == "(":
            node = _List()
            node.off = m.start()
            cur.append(node)
            stack.append(cur)
            cur = node
        elif tok == ")":
            if not stack:
                raise src.error(m.start(), "unbalanced parentheses: ')' without a matching '('")
            cur = stack.pop()
        else:
            cur.append(_Atom(tok, m.start()))
    if stack:
        raise src.error(top[-1].off, "unbalanced parentheses: this '(' is never closed "
                                      "(missing ')' in this command or the file is truncated)")
    return top


def _read_text(path: Path, what: type[Exception]) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise what(f"cannot read {path}: {e.strerror or e}") from e
    raw = gunzip_if_gzipped(raw, str(path), what)
    try:
        return raw.decode("utf-8-sig")   # tolerate a byte-order mark
    except UnicodeDecodeError as e:
        raise what(f"{path}: not UTF-8 text (byte {e.start}); is this a VNN-LIB file?") from e
