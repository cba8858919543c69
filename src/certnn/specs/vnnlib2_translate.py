"""VNN-LIB 1.0 -> 2.0: :func:`translate_v1` rewrites a 1.0 file into the equal 2.0 query, exactly, for the
vnnlib package to parse (:mod:`certnn.specs.vnnlib2`)."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .vnnlib2_query import REAL

__all__ = ["translate_v1"]

_V1_VAR = re.compile(r"([XY])_(0|[1-9]\d*)\Z")
_V1_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")


class _Untranslatable(Exception):
    """A VNN-LIB 1.0 construct with no exact VNN-LIB 2.0 equivalent (left to certnn's own parser)."""


def _decimal(text: str) -> str:
    """A VNN-LIB 1.0 number as a VNN-LIB 2.0 literal with the same value: plain decimal with a point."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise _Untranslatable(f"number {text!r}") from None
    s = format(d, "f")
    if s.startswith("+"):
        s = s[1:]
    if "." not in s:
        s += ".0"
    if s.startswith("-."):
        s = "-0" + s[1:]
    elif s.startswith("."):
        s = "0" + s
    return s


_V1_COMMENT = re.compile(r";[^\n]*")
_V1_DECL = re.compile(r"\(\s*declare-const\s+([XY])_(0|[1-9]\d*)\s+Real\s*\)|"
                      r"\(\s*declare-fun\s+([XY])_(0|[1-9]\d*)\s*\(\s*\)\s*Real\s*\)")
_V1_SKIP = re.compile(r"\(\s*(?:set-logic|set-info|set-option|check-sat|get-model|get-value|exit)\b[^()]*\)")
_V1_TOKEN = re.compile(r"[()]|[^\s()]+")
_V2_DECIMAL = re.compile(r"-?\d+\.\d+\Z")
_V1_KEEP = frozenset({"assert", "<=", ">=", "<", ">", "and", "or", "+", "-", "*"})


def translate_v1(text: str, name: str = "<string>") -> str:
    """The VNN-LIB 2.0 query equal to a VNN-LIB 1.0 file: network ``N`` with input ``X real [n]`` and output
    ``Y real [m]``, ``X_i`` -> ``X[i]``, numbers as exact decimals with a point (``1e-05`` -> ``0.00001``,
    ``3`` -> ``3.0``), ``=`` -> ``==``, the ignored SMT-LIB commands dropped. Line breaks are kept, so the
    parser's line numbers are the file's (the header goes on line 1). Raises _Untranslatable for a construct
    without an exact 2.0 spelling (``/``, ``true`` / ``false``, other commands); a malformed file is
    left for the parser to reject."""
    body = _V1_COMMENT.sub("", text)
    n = {"X": 0, "Y": 0}

    def decl(m: re.Match) -> str:
        kind, idx = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        n[kind] = max(n[kind], int(idx) + 1)
        return " " * (m.end() - m.start() - m.group(0).count("\n")) + "\n" * m.group(0).count("\n")

    body = _V1_DECL.sub(decl, body)
    body = _V1_SKIP.sub("", body)
    if not n["X"] or not n["Y"]:
        raise _Untranslatable("no inputs or outputs declared")

    def token(m: re.Match) -> str:
        t = m.group(0)
        if t in "()" or t in _V1_KEEP:
            return t
        v = _V1_VAR.match(t)
        if v:
            return f"{v.group(1)}[{v.group(2)}]"
        if _V2_DECIMAL.match(t):
            return t
        if _V1_NUMBER.match(t):
            return _decimal(t)
        if t == "=":
            return "=="
        raise _Untranslatable(f"{t!r}")

    body = _V1_TOKEN.sub(token, body)
    head = (f"(vnnlib-version <2.0>) (declare-network N (declare-input X {REAL} [{n['X']}]) "
            f"(declare-output Y {REAL} [{n['Y']}]))")
    return head + body
