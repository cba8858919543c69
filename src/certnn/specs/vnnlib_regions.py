"""VNN-LIB assertions to regions: the conjunction of the assertions' disjunctive normal forms is multiplied
out and grouped by input box into :class:`~certnn.specs.vnnlib_property.Region` objects.

A disjunct whose input box is empty cannot be satisfied and is dropped; if nothing remains (or an assertion
is false on its own), the file is contradictory and :class:`~certnn.errors.SpecError` says where.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .vnnlib_atoms import _AtomReader, _Bound, _Conj, _count_product, _Dnf, _Row
from .vnnlib_property import InputBox, OutputConjunction, Region
from .vnnlib_sexpr import _List


class _RegionBuilder(_AtomReader):
    """Region building on top of the atom reader. Subclasses define ``decl_where(kind, idx)``, where a
    variable is declared, for the error messages."""

    def regions(self, asserts: list[tuple[_List, _Dnf]], n: int, m: int) -> list[Region]:
        common, multi, false = self.conjoin([d for _, d in asserts])
        if false:
            node = next(a for a, d in asserts if not d)
            raise self.err(node, "this assertion is always false, so the property trivially holds; "
                                 "check the file for a typo")
        total = _count_product([len(d) for d in multi], self.cap)
        if total > self.cap:
            first = next(a for a, d in asserts if len(d) > 1)
            raise self.too_many(first, total)

        base_lo, base_hi = [-math.inf] * n, [math.inf] * n
        base_rows: list[_Row] = []
        self.apply(common, base_lo, base_hi, base_rows)
        bad = next((i for i in range(n) if base_lo[i] > base_hi[i]), None)
        if bad is not None:   # disjuncts only tighten bounds, so every disjunct is empty
            raise self.err(None, self.empty_msg(bad, base_lo[bad], base_hi[bad]))
        groups = self._group_disjuncts(multi, base_lo, base_hi, base_rows)
        return [self._region(key, disjuncts, base_lo, base_hi, m,
                             f" in input region {r + 1} of {len(groups)}" if len(groups) > 1 else "")
                for r, (key, disjuncts) in enumerate(groups.items())]

    def _group_disjuncts(self, multi: list[_Dnf], base_lo: list, base_hi: list, base_rows: list) -> dict:
        """The non-empty disjuncts' output rows grouped by input box. A disjunct's box is the common box with
        a few inputs tightened; the tightened (index, lower, upper) triples identify it without copying n
        values."""
        groups: dict[tuple, list] = {}
        first_empty: str | None = None
        for combo in itertools.product(*multi):
            over, rows = self._tighten(combo, base_lo, base_hi, base_rows)
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
        return groups

    @staticmethod
    def _tighten(combo: tuple, base_lo: list, base_hi: list, base_rows: list) -> tuple[dict, list]:
        """One disjunct (a choice of one conjunction per assertion): the inputs it tightens, {index: [lower,
        upper]}, and its output rows after the common ones."""
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
        return over, rows

    def _region(self, key: tuple, disjuncts: list, base_lo: list, base_hi: list, m: int, where: str) -> Region:
        """One region: the common box with ``key``'s inputs tightened (every bound finite), and one output
        conjunction per disjunct; arrays read-only."""
        lower, upper = np.array(base_lo, dtype=np.float64), np.array(base_hi, dtype=np.float64)
        for i, lo_i, hi_i in key:
            lower[i], upper[i] = lo_i, hi_i
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
        return Region(InputBox(lower, upper), [self._conjunction(rows, m) for rows in disjuncts])

    @staticmethod
    def _conjunction(rows: list[_Row], m: int) -> OutputConjunction:
        C = np.zeros((len(rows), m), dtype=np.float64)
        d = np.empty(len(rows), dtype=np.float64)
        for k, row in enumerate(rows):
            for j, c in row.coefs:
                C[k, j] += c
            d[k] = row.rhs
        C.setflags(write=False)
        d.setflags(write=False)
        return OutputConjunction(C, d)

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
