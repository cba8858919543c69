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

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import SpecError
from .vnnlib import _Parser
from .vnnlib_atoms import _Bound, _Row
from .vnnlib_property import DEFAULT_MAX_DISJUNCTS, VnnlibProperty
from .vnnlib_sexpr import _read_text, _Source

__all__ = ["Declaration", "NetworkDecl", "Query", "parse_query", "load_query", "translate_v1", "vnnlib_available",
           "VNNLIB_VERSIONS", "REAL"]

REAL = "real"
#: the VNN-LIB versions certnn reads: 1.0 (through translate_v1) and 2.0 (the vnnlib package)
VNNLIB_VERSIONS = ("1.0", "2.0")
#: DType member names of the vnnlib package -> the standard's element type names (ONNX Set 1, plus real)
DTYPE_NAMES = {"Real": "real", "F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16",
               "F8E4M3FN": "float8e4m3fn", "F8E5M2": "float8e5m2", "F8E4M3FNUZ": "float8e4m3fnuz",
               "F8E5M2FNUZ": "float8e5m2fnuz", "F4E2M1": "float4e2m1", "I8": "int8", "I16": "int16",
               "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
               "C64": "complex64", "C128": "complex128", "Bool": "bool"}


def vnnlib_available() -> bool:
    try:
        import vnnlib  # noqa: F401
    except ImportError:
        return False
    return True


def _vnnlib():
    try:
        import vnnlib
    except ImportError as exc:
        raise SpecError("reading VNN-LIB 2.0 queries needs the vnnlib package (pip install vnnlib)") from exc
    return vnnlib


@dataclass(frozen=True)
class Declaration:
    """A declared input, hidden or output tensor: its name, kind, element type (the standard's name, e.g.
    ``float32`` or ``real``), shape, network and (hidden nodes) ONNX node name."""

    name: str
    kind: str  # "input" | "hidden" | "output"
    element_type: str
    shape: tuple[int, ...]
    network: str
    onnx_name: str | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class NetworkDecl:
    name: str
    equal_to: str | None
    isomorphic_to: str | None
    declarations: tuple[Declaration, ...]

    def of_kind(self, kind: str) -> list[Declaration]:
        return [d for d in self.declarations if d.kind == kind]


@dataclass(frozen=True, eq=False)
class Query:
    """A parsed VNN-LIB query: its networks and declarations (in declaration order), the property certnn
    verifies (None with ``unsupported`` saying why when the query is outside certnn's theories), and the
    parsed formula, kept to check counterexamples exactly (:meth:`satisfied_by`)."""

    version: str
    networks: tuple[NetworkDecl, ...]
    prop: VnnlibProperty | None
    unsupported: str | None
    parser: str
    source: str = "<string>"
    _ast: object = field(default=None, repr=False)

    @property
    def declarations(self) -> list[Declaration]:
        return [d for n in self.networks for d in n.declarations]

    @property
    def real_valued(self) -> bool:
        """Every declaration uses the element type real (section 3.5: consent to real-valued analysis)."""
        return all(d.element_type == REAL for d in self.declarations)

    def property(self) -> VnnlibProperty:
        if self.prop is None:
            raise SpecError(f"{self.source}: {self.unsupported}")
        return self.prop

    def satisfied_by(self, values: dict[str, np.ndarray]) -> bool:
        """Whether concrete values (variable name -> array in the declared shape, row-major) satisfy every
        assertion as written, in exact arithmetic: literals as exact decimals, strict comparisons strictly,
        ``!=`` and ``==`` exactly. NaN and infinities satisfy nothing."""
        vn = _vnnlib()
        flat = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in values.items()}
        shapes = {d.name: d.shape for d in self.declarations}

        def val(e) -> Fraction:
            if isinstance(e, vn.Var):
                shape = shapes[e.name]
                i = int(np.ravel_multi_index(tuple(int(j) for j in e.indices), shape)) if shape else 0
                v = float(flat[e.name][i])
                if not math.isfinite(v):
                    raise ValueError("not finite")
                return Fraction(v)
            if isinstance(e, vn.Literal):
                return Fraction(Decimal(e.lexeme))
            if isinstance(e, vn.Negate):
                return -val(e.expr)
            if isinstance(e, vn.Plus):
                return sum((val(a) for a in e.args), Fraction(0))
            if isinstance(e, vn.Minus):
                out = val(e.head)
                for a in e.rest:
                    out -= val(a)
                return out
            if isinstance(e, vn.Multiply):
                out = Fraction(1)
                for a in e.args:
                    out *= val(a)
                return out
            raise SpecError(f"unsupported term {e}")

        def holds(b) -> bool:
            if isinstance(b, vn.And):
                return all(holds(a) for a in b.args)
            if isinstance(b, vn.Or):
                return any(holds(a) for a in b.args)
            a, c = val(b.lhs), val(b.rhs)
            if isinstance(b, vn.LessEqual):
                return a <= c
            if isinstance(b, vn.LessThan):
                return a < c
            if isinstance(b, vn.GreaterEqual):
                return a >= c
            if isinstance(b, vn.GreaterThan):
                return a > c
            if isinstance(b, vn.Equal):
                return a == c
            return a != c

        try:
            return all(holds(a.expr) for a in self._ast.assertions)
        except ValueError:
            return False


# ----------------------------------------------------------------------------------------------------
# VNN-LIB 1.0 -> 2.0
# ----------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------
# The AST -> VnnlibProperty
# ----------------------------------------------------------------------------------------------------

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


def _dnf_size(expr, vnnlib, cap: int) -> int:
    """Number of disjuncts of expr's DNF (stops counting above cap)."""
    if isinstance(expr, vnnlib.And):
        total = 1
        for a in expr.args:
            total *= _dnf_size(a, vnnlib, cap)
            if total > cap:
                return total
        return total
    if isinstance(expr, vnnlib.Or):
        total = 0
        for a in expr.args:
            total += _dnf_size(a, vnnlib, cap)
            if total > cap:
                return total
        return total
    return 1


class _Converter(_Parser):
    """certnn's exact atom classification and region building (specs/vnnlib.py) on the vnnlib AST."""

    def __init__(self, query, name: str, max_disjuncts: int, vnnlib):
        super().__init__(_Source("", name), max_disjuncts)
        self.vn = vnnlib
        self.keys: dict[str, tuple[str, tuple[int, ...]]] = {}  # variable name -> ("X" | "Y" | other, shape)
        self.names = {"X": "X", "Y": "Y"}

    def decl_where(self, kind: str, idx: int) -> str:
        name = self.names.get(kind, kind)
        shape = self.shapes.get(kind, ())
        index = list(np.unravel_index(idx, shape)) if shape else []
        return f"{name}[{','.join(map(str, index))}]"

    def name(self, key: tuple[str, int]) -> str:
        return self.decl_where(key[0], key[1])

    # -- terms ------------------------------------------------------------------------------------------
    def lin(self, e) -> tuple[dict, Fraction]:
        """(coefficients by certnn key, constant) of a term, exactly; literals read as the nearest double
        (as certnn's 1.0 parser reads them)."""
        vn = self.vn
        if isinstance(e, vn.Var):
            return {self.key(e): Fraction(1)}, Fraction(0)
        if isinstance(e, vn.Literal):
            return {}, Fraction(float(e.lexeme))
        if isinstance(e, vn.Negate):
            c, k = self.lin(e.expr)
            return {a: -v for a, v in c.items()}, -k
        if isinstance(e, (vn.Plus, vn.Minus)):
            parts = [e.head, *e.rest] if isinstance(e, vn.Minus) else list(e.args)
            signs = [1] + [-1] * (len(parts) - 1) if isinstance(e, vn.Minus) else [1] * len(parts)
            coefs: dict = {}
            const = Fraction(0)
            for p, sg in zip(parts, signs):
                c, k = self.lin(p)
                for a, v in c.items():
                    coefs[a] = coefs.get(a, 0) + sg * v
                const += sg * k
            return {a: v for a, v in coefs.items() if v != 0}, const
        if isinstance(e, vn.Multiply):
            product = self._linear_product([self.lin(a) for a in e.args])
            if product is None:
                raise SpecError(f"{self.src.name}: a product of variables ({e}) is polynomial arithmetic (theory "
                                "POLY); certnn supports linear constraints on outputs (BND, OUTC)")
            return product
        raise SpecError(f"{self.src.name}: unsupported term {e}")

    def key(self, v) -> tuple[str, int]:
        kind, shape = self.keys[v.name]
        idx = v.indices
        if not shape:
            return kind, 0
        if len(shape) == 1:
            return kind, int(idx[0])
        return kind, int(np.ravel_multi_index(tuple(int(i) for i in idx), shape))

    def leaf_atoms(self, c, strict_ok: bool = True) -> list | None | bool:
        """Fast path for a comparison of two leaves (variables or literals); False when not two leaves.
        Same atoms as certnn's parser makes for such a comparison."""
        vn = self.vn
        a, b = c.lhs, c.rhs
        va, vb = isinstance(a, vn.Var), isinstance(b, vn.Var)
        if not (va or isinstance(a, vn.Literal)) or not (vb or isinstance(b, vn.Literal)):
            return False
        if isinstance(c, vn.NotEqual):
            return []  # the closure of a != b is everything (checked exactly on counterexamples)
        if va and vb:
            return False
        if not va and not vb:
            return False
        if isinstance(c, (vn.LessEqual, vn.LessThan)):
            sides = [(a, b)]
        elif isinstance(c, (vn.GreaterEqual, vn.GreaterThan)):
            sides = [(b, a)]
        else:  # Equal
            sides = [(a, b), (b, a)]
        out = []
        for lo, hi in sides:  # lo <= hi
            if isinstance(lo, vn.Var):
                kind, idx = self.key(lo)
                cst = float(hi.lexeme)
                out.append(_Bound(idx, True, cst) if kind == "X" else _Row(((idx, 1.0),), cst))
            else:
                kind, idx = self.key(hi)
                cst = float(lo.lexeme)
                out.append(_Bound(idx, False, cst) if kind == "X" else _Row(((idx, -1.0),), -cst))
        return out

    def comparison(self, c) -> list | None:
        """certnn atoms of one vnnlib comparison ([]: true, None: false)."""
        vn = self.vn
        fast = self.leaf_atoms(c)
        if fast is not False:
            return fast
        ca, ka = self.lin(c.lhs)
        cb, kb = self.lin(c.rhs)
        le = dict(ca)
        for a, v in cb.items():
            le[a] = le.get(a, 0) - v
        le = {a: v for a, v in le.items() if v != 0}
        lk = ka - kb  # lhs - rhs = le . v + lk
        kinds = {k[0] for k in le}
        if "X" in kinds and len(kinds) > 1:
            raise SpecError(f"{self.src.name}: {c} compares input and output elements (theory MNC); certnn "
                            "verifies comparisons within one node (SNC)")
        if sum(1 for k in le if k[0] == "X") > 1:
            raise SpecError(f"{self.src.name}: {c} constrains several input elements (theory LIN); certnn "
                            "verifies input constraints that bound one input element by a constant (BND, OUTC)")
        neg = {a: -v for a, v in le.items()}
        if isinstance(c, (vn.LessEqual, vn.LessThan)):
            return self.atom_le0(le, lk, None)
        if isinstance(c, (vn.GreaterEqual, vn.GreaterThan)):
            return self.atom_le0(neg, -lk, None)
        if isinstance(c, vn.Equal):
            a1, a2 = self.atom_le0(le, lk, None), self.atom_le0(neg, -lk, None)
            return None if a1 is None or a2 is None else a1 + a2
        if isinstance(c, vn.NotEqual):
            return [] if le or lk != 0 else None
        raise SpecError(f"{self.src.name}: unsupported comparison {c}")  # pragma: no cover


def _declarations(q, vnnlib) -> tuple[NetworkDecl, ...]:
    nets = []
    for net in q.networks:
        decls = []
        for kind, group in (("input", net.inputs), ("hidden", net.hidden), ("output", net.outputs)):
            for d in group:
                et = DTYPE_NAMES.get(d.dtype.name)
                if et is None:
                    raise SpecError(f"{kind} {d.name} of network {net.name} has an element type the standard does "
                                    f"not define ({d.dtype.name}); element types: {', '.join(sorted(DTYPE_NAMES.values()))}")
                decls.append(Declaration(d.name, kind, et, tuple(int(s) for s in d.shape), net.name,
                                         d.onnx_name or None))
        nets.append(NetworkDecl(net.name, net.equal_to or None, net.isometric_to or None, tuple(decls)))
    return tuple(nets)


def _unsupported_theories(nets: tuple[NetworkDecl, ...]) -> str | None:
    if len(nets) != 1:
        return (f"the query declares {len(nets)} networks (theory MNET/MENET/MINET); certnn verifies queries "
                "over one network (SNET)")
    net = nets[0]
    if net.of_kind("hidden"):
        return "the query declares hidden nodes (theory H); certnn verifies queries without them (NH)"
    if len(net.of_kind("input")) != 1 or len(net.of_kind("output")) != 1:
        return (f"network {net.name} declares {len(net.of_kind('input'))} inputs and {len(net.of_kind('output'))} "
                "outputs (theory MIO); certnn verifies networks with one input and one output (SIO)")
    return None


def _build(q, vnnlib, source: str, version: str, parser: str, max_disjuncts: int) -> Query:
    nets = _declarations(q, vnnlib)
    why = _unsupported_theories(nets)
    conv = _Converter(q, source, max_disjuncts, vnnlib)
    conv.shapes = {}
    for net in nets:
        for d in net.declarations:
            kind = {"input": "X", "output": "Y"}.get(d.kind, "H")
            conv.keys[d.name] = (kind if why is None else d.name, d.shape)
            if why is None:
                conv.names[kind] = d.name
                conv.shapes[kind] = d.shape
    asserts = []
    for a in (q.assertions if why is None else ()):
        size = _dnf_size(a.expr, vnnlib, max_disjuncts)
        if size > max_disjuncts:
            raise SpecError(f"{source}: an assertion expands to {size} disjuncts in disjunctive normal form, more "
                            f"than max_disjuncts={max_disjuncts}; split the query or raise max_disjuncts")
        dnf = []
        for conj in a.expr.to_dnf():
            atoms, false = [], False
            for c in conj:
                at = conv.comparison(c)
                if at is None:
                    false = True
                    break
                atoms.extend(at)
            if not false:
                dnf.append(atoms)
        asserts.append((None, dnf))
    prop = None
    if why is None:
        net = nets[0]
        n, m = net.of_kind("input")[0].size, net.of_kind("output")[0].size
        try:
            regions = conv.regions(asserts, n, m)
        except SpecError as exc:
            raise SpecError(str(exc)) from None
        prop = VnnlibProperty(n, m, regions, source, parser)
    return Query(version, nets, prop, why, parser, source, q)


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
