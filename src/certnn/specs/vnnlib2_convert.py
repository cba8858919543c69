"""The vnnlib package's AST -> certnn's :class:`~certnn.specs.vnnlib_property.VnnlibProperty`: declarations,
the theories certnn verifies, and each comparison through certnn's exact atom classification and region
building (:mod:`certnn.specs.vnnlib_atoms`, :mod:`certnn.specs.vnnlib_regions`)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import SpecError
from .vnnlib2_query import DTYPE_NAMES, Declaration, NetworkDecl, Query
from .vnnlib_atoms import _Bound, _Row
from .vnnlib_property import VnnlibProperty
from .vnnlib_regions import _RegionBuilder
from .vnnlib_sexpr import _Source


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


class _Converter(_RegionBuilder):
    """certnn's exact atom classification and region building (specs/vnnlib_atoms.py, vnnlib_regions.py) on
    the vnnlib AST."""

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
