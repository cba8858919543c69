"""VNN-LIB formulas to atoms: linear terms in exact arithmetic, comparisons to input bounds and output
rows, connectives to disjunctive normal form.

Soundness: numbers are read as the nearest double; a bound that needs arithmetic is computed exactly
(:class:`fractions.Fraction`) and rounded outward (input upper bounds and output right-hand sides up, input
lower bounds down), so the box and the unsafe output set are never smaller than written. See
:mod:`certnn.specs.vnnlib` for the language.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import NamedTuple

from ..errors import SpecError
from .vnnlib_sexpr import _NUMBER, _VAR_NAME, _Atom, _List, _Node, _Source


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


class _AtomReader:
    """Terms, atoms and formulas of one VNN-LIB text; the declared variables are in ``vars``."""

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
