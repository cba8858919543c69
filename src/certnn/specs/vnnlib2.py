"""VNN-LIB 2.0 queries (vnnlib.org), parsed with the maintained ``vnnlib`` package, and VNN-LIB 1.0 files
through it.

The ``vnnlib`` package (PyPI, the standard's reference parser: a BNFC-generated C++ parser with type
checking) reads the query into a typed AST and brings each assertion into disjunctive normal form
(``BoolExpr.to_dnf``). This module turns that into certnn's :class:`~certnn.specs.vnnlib.VnnlibProperty`
(input boxes and unsafe output polytopes) with the same exact arithmetic and outward rounding as certnn's
own VNN-LIB 1.0 parser (:mod:`certnn.specs.vnnlib`): numbers are read as the nearest double, bounds that
need arithmetic are computed exactly (:class:`fractions.Fraction`) and rounded outward, strict comparisons
become their closure. It also keeps the formula exactly (:meth:`Query.satisfied_by`), so that a
counterexample is accepted only if it satisfies the query as written: strict comparisons strictly, ``!=``,
and literals as exact decimals.

VNN-LIB 1.0 files (``declare-const X_i Real``) are not VNN-LIB 2.0 syntax; the package reads neither them
nor 1.0 idioms such as ``1e-05`` or integer constants compared with reals. :func:`translate_v1` rewrites a
1.0 file into the equivalent 2.0 query exactly (one network ``N`` with ``real`` input ``X`` and output
``Y``, ``X_i`` -> ``X[i]``, numbers as exact decimals, ``=`` -> ``==``) and the package parses that. What the
translation cannot express exactly (``/``, chained comparisons, ``true`` / ``false``) is left to certnn's
own parser, which :func:`certnn.specs.vnnlib.load_vnnlib` also uses to report the position of an error in
a malformed 1.0 file.

What certnn verifies (the standard's theories, chapter 4): one network (SNET), one input and one output
node (SIO), no hidden nodes (NH), comparisons within one node (SNC), input constraints that bound single
input elements by constants and linear output constraints (BND, OUTC). Queries outside these raise
:class:`~certnn.errors.SpecError` naming the theory they need.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import SpecError
from .vnnlib2_convert import _build
from .vnnlib2_query import REAL, Declaration, NetworkDecl, Query, _vnnlib
from .vnnlib2_translate import _Untranslatable, translate_v1
from .vnnlib_property import DEFAULT_MAX_DISJUNCTS
from .vnnlib_sexpr import _read_text

__all__ = ["Declaration", "NetworkDecl", "Query", "parse_query", "load_query", "translate_v1", "vnnlib_available",
           "VNNLIB_VERSIONS", "REAL"]

#: the VNN-LIB versions certnn reads: 1.0 (through translate_v1) and 2.0 (the vnnlib package)
VNNLIB_VERSIONS = ("1.0", "2.0")


def vnnlib_available() -> bool:
    try:
        import vnnlib  # noqa: F401
    except ImportError:
        return False
    return True


def _exc_message(exc: Exception) -> str:
    """One line from a vnnlib exception (plain text, or a JSON report of type errors)."""
    import json

    body = str(exc).strip()
    try:
        rep = json.loads(body)
    except ValueError:
        return " ".join(body.split())
    errs = rep.get("errors") if isinstance(rep, dict) else None
    if not errs:
        return " ".join(body.split())
    e = errs[0]
    parts = [f"line {e['line']}" if e.get("line") is not None else "", e.get("message", ""), e.get("hint", "")]
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return ": ".join(p for p in parts if p) + more


def _vnnlib_version() -> str:
    try:
        from importlib.metadata import version
        return version("vnnlib")
    except Exception:  # noqa: BLE001
        return "?"


def parse_query(text: str, source: str = "<string>", *, max_disjuncts: int = DEFAULT_MAX_DISJUNCTS) -> Query:
    """Parse a VNN-LIB 2.0 query, or a 1.0 file through :func:`translate_v1`, with the vnnlib package.
    Raises SpecError for malformed or untranslatable text (the message says which)."""
    vnnlib = _vnnlib()
    is_v2 = re.search(r"\(\s*vnnlib-version\b", text) is not None
    parser = f"vnnlib {_vnnlib_version()}"
    if is_v2:
        body, version = text, "2.0"
    else:
        try:
            body = translate_v1(text, source)
        except _Untranslatable as exc:
            raise SpecError(f"{source}: VNN-LIB 1.0 construct without a VNN-LIB 2.0 equivalent ({exc})") from None
        version, parser = "1.0", parser + " (VNN-LIB 1.0 translated)"
    try:
        q = vnnlib.parse_query_string(body)
    except vnnlib.VNNLibException as exc:
        raise SpecError(f"{source}: {_exc_message(exc)}") from None
    if q is None:  # pragma: no cover - the parser reports some failures by returning None
        raise SpecError(f"{source}: the vnnlib parser could not read the query")
    if is_v2:
        m = re.search(r"\(\s*vnnlib-version\s*<(\d+)\.(\d+)>", text)
        version = f"{m.group(1)}.{m.group(2)}" if m else "2.0"
    return _build(q, vnnlib, source, version, parser, max_disjuncts)


def load_query(path: str | Path, *, max_disjuncts: int = DEFAULT_MAX_DISJUNCTS) -> Query:
    """Read a query file (plain or gzip-compressed) and parse it (parse_query)."""
    path = Path(path)
    return parse_query(_read_text(path, SpecError), str(path), max_disjuncts=max_disjuncts)
