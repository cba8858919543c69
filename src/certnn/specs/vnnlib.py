"""VNN-LIB properties (the VNN-COMP specification format): parser, counterexample check and writer.

A VNN-LIB file is a small SMT-LIB script over real constants ``X_0 .. X_{n-1}`` (the network input,
flattened in C order) and ``Y_0 .. Y_{m-1}`` (the network output, flattened in C order)::

    (declare-const X_0 Real)
    (declare-const Y_0 Real)
    (declare-const Y_1 Real)
    (assert (>= X_0 -1.0))
    (assert (<= X_0 1.0))
    (assert (or (and (>= Y_0 Y_1))))

Meaning: the assertions describe the UNSAFE set
-----------------------------------------------
The conjunction of all ``assert`` commands describes a *counterexample*: an input/output pair satisfying
every assertion violates the property. A verifier answers ``sat`` (the property is violated, a
counterexample exists) or ``unsat`` (the property holds: no input in the input set reaches the described
output set). This module keeps that orientation and never negates anything.

:func:`parse_vnnlib` brings the assertions into disjunctive normal form and returns a
:class:`VnnlibProperty` whose ``regions`` is a list of ``Region(input_box, output_constraint)``:

* ``input_box = InputBox(lower, upper)``, float64 arrays of shape ``(n,)`` with finite entries and
  ``lower <= upper``;
* ``output_constraint`` is a list of ``OutputConjunction(C, d)`` with ``C`` of shape ``(k, m)`` and ``d`` of
  shape ``(k,)`` (``k`` may differ between entries; ``k == 0`` means "any output").

The property is **violated** iff there are a region ``r``, an input ``x`` with
``r.lower <= x <= r.upper`` and an entry ``(C, d)`` of ``r.output_constraint`` such that ``y = f(x)``
satisfies ``C @ y <= d`` in every row. It **holds** iff for every region and every entry,
``min over the box of max_i (C @ f(x) - d)_i > 0``; a certifier proves it by showing, for each region and
each ``(C, d)``, that some row (or a nonnegative combination of rows) is strictly positive on the box.

Supported language
------------------
* commands: ``declare-const`` / ``declare-fun`` (``X_i`` / ``Y_j`` of sort ``Real``), ``assert``; the
  SMT-LIB commands ``set-logic``, ``set-info``, ``set-option``, ``check-sat``, ``get-model``,
  ``get-value`` and ``exit`` are accepted and ignored;
* formulas: ``and``, ``or`` (nested arbitrarily), ``true``, ``false`` and the comparisons ``<=``, ``>=``,
  ``<``, ``>``, ``=`` (chained comparisons such as ``(<= 0 X_0 1)`` mean ``0 <= X_0 and X_0 <= 1``);
* linear terms: variables, numbers (``1``, ``-2``, ``+3``, ``0.5``, ``.5``, ``5.``, ``1e-3``, ``2.5E+2``),
  ``(+ t ...)``, ``(- t)``, ``(- t1 t2 ...)``, ``(* c t)`` / ``(* t c)`` (every factor but one constant),
  ``(/ t c)`` with a nonzero constant ``c``.

Restrictions (each reported as :class:`~certnn.errors.SpecError` with ``file:line:column``):

* every atom constrains inputs only or outputs only; an input atom mentions a single input, so inputs are
  described by boxes (one per region); every input needs a finite lower and upper bound in every region;
* variables are numbered ``X_0 .. X_{n-1}`` and ``Y_0 .. Y_{m-1}`` without gaps and declared before use;
* the disjunctive normal form has at most ``max_disjuncts`` (default 10,000) disjuncts: a conjunction
  of disjunctions multiplies out, so the size is checked before anything is expanded.

Strict comparisons ``<`` and ``>`` are read as ``<=`` and ``>=``: the unsafe set is replaced by its
closure, which contains it, so an ``unsat`` (holds) answer proved on the closure stays correct; a
counterexample found exactly on the boundary of a strict inequality would not be a strict violation.

Soundness: numeric literals are read as the nearest double, as every VNN-COMP tool reads them. Bounds that
need arithmetic (``(<= (* 3 X_0) 1)``, ``(<= (+ X_0 0.1) 0.3)``) are computed exactly from those doubles
with :class:`fractions.Fraction` and rounded outward (input upper bounds and output right-hand sides up,
input lower bounds down), so the box and the unsafe output set are never smaller than written. Output
coefficients that come out of arithmetic (``(/ Y_0 3)``) are rounded to the nearest double.

Empty pieces are dropped: a disjunct whose input box is empty (a lower bound above an upper bound) or that
contains an atom false on constants cannot be satisfied and is removed. If nothing remains, the assertions
are contradictory and :class:`~certnn.errors.SpecError` is raised (such a file is almost always a typo).

References: VNN-LIB standard (vnnlib.org) and the VNN-COMP rules, e.g. Brix et al., "The Fourth
International Verification of Neural Networks Competition (VNN-COMP 2023): Summary and Results".
"""
from __future__ import annotations

import bisect
import gzip
import itertools
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np

from ..errors import DataError, SpecError

__all__ = ["DEFAULT_MAX_DISJUNCTS", "InputBox", "OutputConjunction", "Region", "VnnlibProperty",
           "parse_vnnlib", "load_vnnlib", "property_violated", "write_counterexample",
           "read_counterexample"]

DEFAULT_MAX_DISJUNCTS = 10_000


class InputBox(NamedTuple):
    """Per-input bounds ``lower <= x <= upper``, float64 arrays of shape ``(n_inputs,)``."""

    lower: np.ndarray
    upper: np.ndarray


class OutputConjunction(NamedTuple):
    """The output set ``{y : C @ y <= d}`` (every row), ``C`` of shape ``(k, m)``, ``d`` of shape ``(k,)``."""

    C: np.ndarray
    d: np.ndarray


class Region(NamedTuple):
    """One input box with the disjunction of output sets that is unsafe for inputs in that box."""

    input_box: InputBox
    output_constraint: list[OutputConjunction]


@dataclass(frozen=True, eq=False)
class VnnlibProperty:
    """A parsed VNN-LIB property; see the module docstring for the exact meaning.

    The property is violated (``sat``) iff some region's box contains an input ``x`` whose output
    ``y = f(x)`` satisfies ``C @ y <= d`` (all rows) for some ``(C, d)`` of that region's
    ``output_constraint``. Arrays are read-only.
    """

    n_inputs: int
    n_outputs: int
    regions: list[Region]
    source: str = "<string>"
    #: which parser read the file: "certnn" or "vnnlib <version>" (specs/vnnlib2.py)
    parser: str = "certnn"

    def __repr__(self) -> str:
        sizes = [len(r.output_constraint) for r in self.regions]
        shown = str(sizes) if len(sizes) <= 8 else f"[{', '.join(map(str, sizes[:8]))}, ...]"
        return (f"VnnlibProperty(source={self.source!r}, n_inputs={self.n_inputs}, "
                f"n_outputs={self.n_outputs}, regions={len(self.regions)}, disjuncts_per_region={shown})")


# ----------------------------------------------------------------------------------------------------
# Tokens and s-expressions
# ----------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------
# Atoms after normalisation
# ----------------------------------------------------------------------------------------------------

class _Bound(NamedTuple):
    """Input box atom: ``x[idx] <= value`` if ``upper`` else ``x[idx] >= value``."""

    idx: int
    upper: bool
    value: float


class _Row(NamedTuple):
    """Output atom: ``sum(c * y[j] for j, c in coefs) <= rhs``."""

    coefs: tuple
    rhs: float


_Conj = list  # a conjunction: list of _Bound / _Row
_Dnf = list   # a disjunction of conjunctions: list of _Conj; [] is false, [[]] is true

_COMPARISONS = ("<=", ">=", "<", ">", "=")
_CONNECTIVES = ("and", "or")
_TERM_OPS = ("+", "-", "*", "/")
_IGNORED_COMMANDS = frozenset({"set-logic", "set-info", "set-option", "check-sat", "get-model",
                               "get-value", "exit"})
_COMMANDS = ("declare-const", "declare-fun", "assert") + tuple(sorted(_IGNORED_COMMANDS))


def _round_up(q: Fraction) -> float:
    try:
        f = float(q)
    except OverflowError:
        return math.inf if q > 0 else -math.inf
    if math.isfinite(f) and Fraction(f) < q:
        f = math.nextafter(f, math.inf)
    return f


def _round_down(q: Fraction) -> float:
    return -_round_up(-q)


def _count_product(sizes: list[int], cap: int) -> int:
    total = 1
    for s in sizes:
        total *= s
        if total > cap:
            return total
    return total


class _Parser:
    def __init__(self, src: _Source, max_disjuncts: int):
        self.src = src
        self.cap = max_disjuncts
        self.vars: dict[str, tuple[str, int, int]] = {}   # name -> (kind "X"/"Y", index, offset)

    @staticmethod
    def _linear_product(terms: list) -> tuple[dict, Fraction] | None:
        """The product of linear terms (coefficients, constant) when at most one factor is not a constant;
        None for a product of variables (not linear)."""
        nonconst = [i for i, (c, _) in enumerate(terms) if c]
        if len(nonconst) > 1:
            return None
        scale = Fraction(1)
        for i, (_, k) in enumerate(terms):
            if not nonconst or i != nonconst[0]:
                scale *= k
        if not nonconst:
            return {}, scale
        c1, k1 = terms[nonconst[0]]
        return {k: v * scale for k, v in c1.items() if v * scale != 0}, k1 * scale

    # -- errors -----------------------------------------------------------------------------------------
    def err(self, node_or_off, msg: str) -> SpecError:
        off = node_or_off if isinstance(node_or_off, int) or node_or_off is None else node_or_off.off
        return self.src.error(off, msg)

    def too_many(self, node, total: int) -> SpecError:
        return self.err(node, f"the formula expands to {total} disjuncts in disjunctive normal form, more "
                              f"than max_disjuncts={self.cap} (a conjunction of disjunctions multiplies "
                              f"out); split the property into several files or raise max_disjuncts")

    # -- leaves -----------------------------------------------------------------------------------------
    def number(self, atom: _Atom) -> float | None:
        t = atom.text
        if not _NUMBER.match(t):
            return None
        v = float(t)
        if not math.isfinite(v):
            raise self.err(atom, f"number {t} is out of the range of double precision")
        return v

    def var(self, atom: _Atom) -> tuple[str, int] | None:
        v = self.vars.get(atom.text)
        if v is not None:
            return v[0], v[1]
        t = atom.text
        if _VAR_NAME.match(t):
            raise self.err(atom, f"variable {t} is not declared (add '(declare-const {t} Real)' before "
                                 f"its first use)")
        return None

    def leaf_error(self, atom: _Atom) -> SpecError:
        t = atom.text
        if t[:1].isdigit() or t[:1] in "+-." and len(t) > 1:
            return self.err(atom, f"malformed number {t!r}")
        return self.err(atom, f"unknown symbol {t!r} in a term (expected a declared variable X_i / Y_j "
                              f"or a number)")

    # -- linear terms (exact arithmetic) -------------------------------------------------------------------
    def linear(self, node: _Node) -> tuple[dict, Fraction]:
        """A linear term as ({(kind, idx): coefficient}, constant), both exact."""
        if isinstance(node, _Atom):
            v = self.var(node)
            if v is not None:
                return {v: Fraction(1)}, Fraction(0)
            c = self.number(node)
            if c is None:
                raise self.leaf_error(node)
            return {}, Fraction(c)
        if not node or not isinstance(node[0], _Atom):
            raise self.err(node, "expected a term: a variable, a number or (op ...) with op one of "
                                 + ", ".join(_TERM_OPS))
        op, args = node[0].text, node[1:]
        if op not in _TERM_OPS:
            what = "a comparison or connective" if op in _COMPARISONS + _CONNECTIVES else "an operator"
            raise self.err(node[0], f"{op!r} is {what} not allowed in a term; supported term operators: "
                                    + ", ".join(_TERM_OPS) + " (linear arithmetic only)")
        if not args:
            raise self.err(node, f"'({op})' needs at least one argument")
        terms = [self.linear(a) for a in args]
        if op == "+" or (op == "-" and len(terms) > 1):
            coefs, const = dict(terms[0][0]), terms[0][1]
            sign = 1 if op == "+" else -1
            for c2, k2 in terms[1:]:
                for key, val in c2.items():
                    coefs[key] = coefs.get(key, 0) + sign * val
                const += sign * k2
            return {k: v for k, v in coefs.items() if v != 0}, const
        if op == "-":
            c1, k1 = terms[0]
            return {k: -v for k, v in c1.items()}, -k1
        if op == "*":
            product = self._linear_product(terms)
            if product is None:
                raise self.err(node, "nonlinear term: a product of variables (only linear terms are "
                                     "supported: every factor of '*' but one must be a constant)")
            return product
        # op == "/"
        if len(terms) < 2:
            raise self.err(node, "'/' needs a dividend and at least one divisor")
        coefs, const = terms[0]
        for (c2, k2), a in zip(terms[1:], args[1:]):
            if c2:
                raise self.err(a, "nonlinear term: division by a variable")
            if k2 == 0:
                raise self.err(a, "division by zero")
            coefs = {k: v / k2 for k, v in coefs.items()}
            const = const / k2
        return coefs, const

    # -- atoms ------------------------------------------------------------------------------------------
    def name(self, key: tuple[str, int]) -> str:
        return f"{key[0]}_{key[1]}"

    def atom_le0(self, coefs: dict, const: Fraction, node: _Node) -> list | None:
        """The atom ``sum(coefs) + const <= 0`` as [] (true), None (false) or [_Bound] / [_Row]."""
        coefs = {k: v for k, v in coefs.items() if v != 0}
        if not coefs:
            return [] if const <= 0 else None
        ins = sorted(k for k in coefs if k[0] == "X")
        if ins and len(ins) < len(coefs):
            outs = sorted(k for k in coefs if k[0] == "Y")
            raise self.err(node, f"this comparison mixes inputs ({', '.join(map(self.name, ins))}) and "
                                 f"outputs ({', '.join(map(self.name, outs))}); each atom must constrain "
                                 f"either inputs (a box) or outputs")
        if len(ins) > 1:
            raise self.err(node, f"this comparison constrains several inputs "
                                 f"({', '.join(map(self.name, ins))}); only boxes are supported on inputs "
                                 f"(each input atom must mention a single X_i)")
        if ins:
            (key,) = ins
            a = coefs[key]
            bound = -const / a
            if a > 0:
                return [_Bound(key[1], True, _round_up(bound))]
            return [_Bound(key[1], False, _round_down(bound))]
        row = tuple(sorted((k[1], float(v)) for k, v in coefs.items()))
        return [_Row(row, _round_up(-const))]

    def leaf_le(self, a: _Atom, b: _Atom, node: _Node) -> list | None:
        """Fast path for ``a <= b`` with two leaves (most atoms in practice); same result as the slow path."""
        va, vb = self.var(a), self.var(b)
        ca = self.number(a) if va is None else None
        cb = self.number(b) if vb is None else None
        if va is None and ca is None:
            raise self.leaf_error(a)
        if vb is None and cb is None:
            raise self.leaf_error(b)
        if va is not None and vb is None:              # v <= c
            return [_Bound(va[1], True, cb)] if va[0] == "X" else [_Row(((va[1], 1.0),), cb)]
        if va is None and vb is not None:              # c <= v
            return [_Bound(vb[1], False, ca)] if vb[0] == "X" else [_Row(((vb[1], -1.0),), -ca)]
        if va is None:                                 # c <= c
            return [] if ca <= cb else None
        return self.atom_le0({va: Fraction(1), vb: Fraction(-1)} if va != vb else {}, Fraction(0), node)

    def le(self, a: _Node, b: _Node, node: _Node) -> list | None:
        if isinstance(a, _Atom) and isinstance(b, _Atom):
            return self.leaf_le(a, b, node)
        ca, ka = self.linear(a)
        cb, kb = self.linear(b)
        coefs = dict(ca)
        for k, v in cb.items():
            coefs[k] = coefs.get(k, 0) - v
        return self.atom_le0(coefs, ka - kb, node)

    def comparison(self, node: _List, op: str, args: list) -> _Dnf:
        if len(args) < 2:
            raise self.err(node, f"'{op}' needs at least two arguments")
        conj: _Conj = []
        false = False
        for a, b in zip(args, args[1:]):
            parts = []
            if op in ("<=", "<", "="):
                parts.append(self.le(a, b, node))
            if op in (">=", ">", "="):
                parts.append(self.le(b, a, node))
            for p in parts:
                if p is None:
                    false = True
                else:
                    conj.extend(p)
        return [] if false else [conj]

    # -- formulas ---------------------------------------------------------------------------------------
    def conjoin(self, dnfs: list[_Dnf]) -> tuple[_Conj, list[_Dnf], bool]:
        """Split a conjunction of DNFs into (atoms common to all disjuncts, DNFs with >1 disjunct, false)."""
        common: _Conj = []
        multi: list[_Dnf] = []
        false = False
        for d in dnfs:
            if not d:
                false = True
            elif len(d) == 1:
                common.extend(d[0])
            else:
                multi.append(d)
        return common, multi, false

    def formula(self, node: _Node) -> _Dnf:
        if isinstance(node, _Atom):
            if node.text == "true":
                return [[]]
            if node.text == "false":
                return []
            raise self.err(node, f"expected a formula such as (<= a b), (and ...) or (or ...), got "
                                 f"{node.text!r}")
        if not node or not isinstance(node[0], _Atom):
            raise self.err(node, "expected a formula: (op ...) with op one of "
                                 + ", ".join(_CONNECTIVES + _COMPARISONS))
        op, args = node[0].text, node[1:]
        if op in _COMPARISONS:
            return self.comparison(node, op, args)
        if op == "or":
            out: _Dnf = []
            for a in args:
                out.extend(self.formula(a))
                if len(out) > self.cap:
                    raise self.too_many(node, len(out))
            return out
        if op == "and":
            common, multi, false = self.conjoin([self.formula(a) for a in args])
            if false:
                return []
            total = _count_product([len(d) for d in multi], self.cap)
            if total > self.cap:
                raise self.too_many(node, total)
            return [common + [atom for conj in combo for atom in conj]
                    for combo in itertools.product(*multi)]
        if op in _TERM_OPS:
            raise self.err(node, f"'({op} ...)' is a term, not a formula; compare it with <=, >=, <, > or =")
        raise self.err(node[0], f"unsupported operator {op!r}; supported in formulas: "
                                + ", ".join(_CONNECTIVES + _COMPARISONS) + ", true, false")

    # -- commands ---------------------------------------------------------------------------------------
    def declare(self, node: _List, cmd: str) -> None:
        args = node[1:]
        if cmd == "declare-fun":
            ok = len(args) == 3 and isinstance(args[1], _List) and not args[1]
            usage = "(declare-fun X_0 () Real)"
            args = [args[0], args[2]] if ok else args
        else:
            ok = len(args) == 2
            usage = "(declare-const X_0 Real)"
        if not ok or not all(isinstance(a, _Atom) for a in args):
            raise self.err(node, f"malformed declaration; expected {usage}")
        name, sort = args
        m = _VAR_NAME.match(name.text)
        if m is None:
            raise self.err(name, f"unsupported variable name {name.text!r}: VNN-LIB names inputs X_0, X_1, "
                                 f"... and outputs Y_0, Y_1, ...")
        if sort.text != "Real":
            raise self.err(sort, f"unsupported sort {sort.text!r} for {name.text}; only Real is supported")
        if name.text in self.vars:
            first = self.src.where(self.vars[name.text][2])
            raise self.err(name, f"{name.text} is declared twice (first at {first})")
        self.vars[name.text] = (m.group(1), int(m.group(2)), name.off)

    def count(self, kind: str) -> int:
        label = "inputs" if kind == "X" else "outputs"
        idxs = {i for k, i, _ in self.vars.values() if k == kind}
        if not idxs:
            raise self.err(None, f"no {label} declared; expected (declare-const {kind}_0 Real) and so on")
        n = max(idxs) + 1
        missing = [i for i in range(n) if i not in idxs]
        if missing:
            shown = ", ".join(f"{kind}_{i}" for i in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise self.err(None, f"{label} must be numbered {kind}_0 .. {kind}_{n - 1} without gaps, but "
                                 f"{shown}{more} {'is' if len(missing) == 1 else 'are'} not declared")
        return n

    def decl_where(self, kind: str, idx: int) -> str:
        return self.src.where(self.vars[f"{kind}_{idx}"][2])

    def run(self) -> VnnlibProperty:
        asserts: list[tuple[_List, _Dnf]] = []
        for node in _read_sexprs(self.src):
            if isinstance(node, _Atom):
                raise self.err(node, f"unexpected {node.text!r} outside parentheses; a VNN-LIB file is a "
                                     f"sequence of (declare-const ...) and (assert ...) commands")
            if not node or not isinstance(node[0], _Atom):
                raise self.err(node, "expected a command such as (declare-const X_0 Real) or (assert ...)")
            cmd = node[0].text
            if cmd in ("declare-const", "declare-fun"):
                self.declare(node, cmd)
            elif cmd == "assert":
                if len(node) != 2:
                    raise self.err(node, f"'assert' takes exactly one formula, got {len(node) - 1} "
                                         f"(a missing ')' earlier can also cause this)")
                asserts.append((node, self.formula(node[1])))
            elif cmd not in _IGNORED_COMMANDS:
                raise self.err(node[0], f"unsupported command {cmd!r}; supported: " + ", ".join(_COMMANDS))
        n, m = self.count("X"), self.count("Y")
        return VnnlibProperty(n, m, self.regions(asserts, n, m), self.src.name)

    # -- regions ----------------------------------------------------------------------------------------
    def regions(self, asserts: list[tuple[_List, _Dnf]], n: int, m: int) -> list[Region]:
        common, multi, false = self.conjoin([d for _, d in asserts])
        if false:
            node = next(a for a, d in asserts if not d)
            raise self.err(node, "this assertion is always false, so the property trivially holds; "
                                 "check the file for a typo")
        sizes = [len(d) for d in multi]
        total = _count_product(sizes, self.cap)
        if total > self.cap:
            first = next(a for a, d in asserts if len(d) > 1)
            raise self.too_many(first, total)

        base_lo, base_hi = [-math.inf] * n, [math.inf] * n
        base_rows: list[_Row] = []
        self.apply(common, base_lo, base_hi, base_rows)
        bad = next((i for i in range(n) if base_lo[i] > base_hi[i]), None)
        if bad is not None:   # disjuncts only tighten bounds, so every disjunct is empty
            raise self.err(None, self.empty_msg(bad, base_lo[bad], base_hi[bad]))
        # Group the disjuncts by input box. A disjunct's box is the common box with a few inputs
        # tightened; the tightened (index, lower, upper) triples identify it without copying n values.
        groups: dict[tuple, list] = {}
        first_empty: str | None = None
        for combo in itertools.product(*multi):
            over: dict[int, list[float]] = {}
            rows = list(base_rows)
            for conj in combo:
                for a in conj:
                    if type(a) is _Bound:
                        b = over.get(a.idx)
                        if b is None:
                            b = over[a.idx] = [base_lo[a.idx], base_hi[a.idx]]
                        if a.upper:
                            b[1] = min(b[1], a.value)
                        else:
                            b[0] = max(b[0], a.value)
                    else:
                        rows.append(a)
            empty = next((i for i, b in over.items() if b[0] > b[1]), None)
            if empty is not None:
                if first_empty is None:
                    first_empty = self.empty_msg(empty, *over[empty])
                continue
            key = tuple(sorted((i, b[0], b[1]) for i, b in over.items()
                               if b[0] != base_lo[i] or b[1] != base_hi[i]))
            groups.setdefault(key, []).append(rows)
        if not groups:
            raise self.err(None, first_empty)

        regions = []
        for r, (key, disjuncts) in enumerate(groups.items()):
            lower, upper = np.array(base_lo, dtype=np.float64), np.array(base_hi, dtype=np.float64)
            for i, lo_i, hi_i in key:
                lower[i], upper[i] = lo_i, hi_i
            where = f" in input region {r + 1} of {len(groups)}" if len(groups) > 1 else ""
            for arr, side in ((lower, "lower"), (upper, "upper")):
                bad = np.flatnonzero(~np.isfinite(arr))
                if bad.size:
                    i = int(bad[0])
                    more = f" (and {bad.size - 1} more inputs)" if bad.size > 1 else ""
                    raise self.err(None, f"input X_{i} (declared at {self.decl_where('X', i)}) has no finite "
                                         f"{side} bound{where}{more}; every input needs "
                                         f"(assert (>= X_{i} ...)) and (assert (<= X_{i} ...))")
            lower.setflags(write=False)
            upper.setflags(write=False)
            out = []
            for rows in disjuncts:
                C = np.zeros((len(rows), m), dtype=np.float64)
                d = np.empty(len(rows), dtype=np.float64)
                for k, row in enumerate(rows):
                    for j, c in row.coefs:
                        C[k, j] += c
                    d[k] = row.rhs
                C.setflags(write=False)
                d.setflags(write=False)
                out.append(OutputConjunction(C, d))
            regions.append(Region(InputBox(lower, upper), out))
        return regions

    def empty_msg(self, i: int, lo: float, hi: float) -> str:
        return (f"the input constraints are contradictory, so the property trivially holds; check the file "
                f"for a typo: X_{i} (declared at {self.decl_where('X', i)}) has lower bound {lo!r} above its "
                f"upper bound {hi!r}")

    @staticmethod
    def apply(atoms: _Conj, lo: list, hi: list, rows: list) -> None:
        for a in atoms:
            if type(a) is _Bound:
                if a.upper:
                    if a.value < hi[a.idx]:
                        hi[a.idx] = a.value
                elif a.value > lo[a.idx]:
                    lo[a.idx] = a.value
            else:
                rows.append(a)


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------

def parse_vnnlib(text: str, source: str = "<string>", *,
                 max_disjuncts: int = DEFAULT_MAX_DISJUNCTS) -> VnnlibProperty:
    """Parse VNN-LIB text into a :class:`VnnlibProperty`.

    ``source`` names the text in error messages (``source:line:column: ...``). ``max_disjuncts`` caps the
    size of the disjunctive normal form (checked before expanding). Raises
    :class:`~certnn.errors.SpecError` on any malformed or unsupported input.
    """
    if max_disjuncts < 1:
        raise SpecError(f"max_disjuncts must be at least 1, got {max_disjuncts}")
    return _Parser(_Source(text, source), max_disjuncts).run()


def _read_text(path: Path, what: type[Exception]) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise what(f"cannot read {path}: {e.strerror or e}") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise what(f"{path}: corrupt gzip data ({e})") from e
    try:
        return raw.decode("utf-8-sig")   # tolerate a byte-order mark
    except UnicodeDecodeError as e:
        raise what(f"{path}: not UTF-8 text (byte {e.start}); is this a VNN-LIB file?") from e


def load_vnnlib(path: str | Path, *, max_disjuncts: int = DEFAULT_MAX_DISJUNCTS, parser: str = "auto") -> VnnlibProperty:
    """Read a ``.vnnlib`` file, plain or gzip-compressed (detected from the content), and parse it.

    ``parser``: ``"vnnlib"`` (the maintained vnnlib package, specs/vnnlib2.py: VNN-LIB 2.0 queries, and
    1.0 files translated to 2.0), ``"certnn"`` (this module's VNN-LIB 1.0 parser) or ``"auto"``: the vnnlib
    package when it is installed, and certnn's parser for a 1.0 file the package does not read (a construct
    without a 2.0 spelling, such as ``/``, or a malformed file, whose error certnn's parser reports with
    its line and column). The property says which parser read it (``VnnlibProperty.parser``).
    """
    path = Path(path)
    text = _read_text(path, SpecError)
    if parser not in ("auto", "vnnlib", "certnn"):
        raise SpecError(f"unknown VNN-LIB parser {parser!r}; choose auto, vnnlib or certnn")
    if parser == "certnn":
        return parse_vnnlib(text, str(path), max_disjuncts=max_disjuncts)
    from . import vnnlib2

    v2 = re.search(r"\(\s*vnnlib-version\b", text) is not None
    if parser == "vnnlib" or v2 or vnnlib2.vnnlib_available():
        try:
            return vnnlib2.parse_query(text, str(path), max_disjuncts=max_disjuncts).property()
        except SpecError:
            if parser == "vnnlib" or v2:
                raise
    return parse_vnnlib(text, str(path), max_disjuncts=max_disjuncts)


def _flat(a, n: int, what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise DataError(f"{what} has {arr.size} elements but the property has {n}")
    return arr


def property_violated(prop: VnnlibProperty, x, y, *, tol: float = 0.0) -> bool:
    """True iff the concrete pair (x, y) is a counterexample: x lies in some region's box and y satisfies
    ``C @ y <= d`` for some ``(C, d)`` of that region.

    ``x`` and ``y`` may have any shape (flattened in C order, as VNN-LIB numbers them) and must hold
    ``n_inputs`` / ``n_outputs`` values. ``tol >= 0`` loosens every test by ``tol`` (VNN-COMP 2022 scoring
    used 1e-4 on both the box and the output constraints); the default 0 checks exactly. NaN never
    satisfies a constraint. This does not check that ``y`` is the network's output for ``x``.
    """
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    xf = _flat(x, prop.n_inputs, "x")
    yf = _flat(y, prop.n_outputs, "y")
    for region in prop.regions:
        lower, upper = region.input_box
        if not (np.all(xf >= lower - tol) and np.all(xf <= upper + tol)):
            continue
        for C, d in region.output_constraint:
            if np.all(C @ yf <= d + tol):
                return True
    return False


def write_counterexample(path: str | Path, x, y) -> None:
    """Write a VNN-COMP result file for a violated property::

        sat
        ((X_0 0.5)
         (X_1 -0.25)
         (Y_0 1.0))

    ``x`` and ``y`` are flattened in C order. Values are written with ``repr(float)``, which reads back
    to the identical double. Raises :class:`~certnn.errors.DataError` on non-finite values.
    """
    xf = np.asarray(x, dtype=np.float64).reshape(-1)
    yf = np.asarray(y, dtype=np.float64).reshape(-1)
    for arr, name in ((xf, "X"), (yf, "Y")):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise DataError(f"counterexample value {name}_{int(bad[0])} is {arr[bad[0]]}, not finite")
    entries = [f"(X_{i} {float(v)!r})" for i, v in enumerate(xf)]
    entries += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(yf)]
    from ..report.atomic import write_or_keep

    write_or_keep(path, "sat\n(" + "\n ".join(entries) + ")\n", "the result file")


def read_counterexample(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the assignment of a VNN-COMP result or counterexample file (plain or gzip) as (x, y) float64.

    Accepts an optional first line ``sat`` followed by ``((X_0 v) ... (Y_0 v) ...)``; indices must be
    contiguous from 0. Raises :class:`~certnn.errors.DataError` if the file is malformed.
    """
    path = Path(path)
    text = _read_text(path, DataError)
    src = _Source(text, str(path))
    try:
        nodes = _read_sexprs(src)
    except SpecError as e:
        raise DataError(str(e)) from None
    if nodes and isinstance(nodes[0], _Atom) and nodes[0].text in ("sat", "violated"):
        nodes = nodes[1:]
    if len(nodes) != 1 or not isinstance(nodes[0], _List):
        raise DataError(f"{path}: expected an optional 'sat' line and one list ((X_0 v) ... (Y_0 v) ...)")
    values: dict[str, list[float]] = {"X": [], "Y": []}
    for item in nodes[0]:
        ok = isinstance(item, _List) and len(item) == 2 and all(isinstance(a, _Atom) for a in item)
        mname = _VAR_NAME.match(item[0].text) if ok else None
        if not ok or mname is None or not _NUMBER.match(item[1].text):
            raise DataError(f"{src.where(item.off)}: expected (X_i value) or (Y_j value)")
        kind, idx = mname.group(1), int(mname.group(2))
        if idx != len(values[kind]):
            raise DataError(f"{src.where(item.off)}: expected {kind}_{len(values[kind])}, got "
                            f"{item[0].text} (indices must be contiguous from 0)")
        values[kind].append(float(item[1].text))
    return np.array(values["X"], dtype=np.float64), np.array(values["Y"], dtype=np.float64)
