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

import re
from pathlib import Path

import numpy as np

from ..errors import DataError, SpecError
from .vnnlib_property import DEFAULT_MAX_DISJUNCTS, InputBox, OutputConjunction, Region, VnnlibProperty
from .vnnlib_atoms import _Dnf
from .vnnlib_regions import _RegionBuilder
from .vnnlib_sexpr import _NUMBER, _VAR_NAME, _Atom, _List, _read_sexprs, _read_text, _Source

__all__ = ["DEFAULT_MAX_DISJUNCTS", "InputBox", "OutputConjunction", "Region", "VnnlibProperty",
           "parse_vnnlib", "load_vnnlib", "property_violated", "write_counterexample",
           "read_counterexample"]

_IGNORED_COMMANDS = frozenset({"set-logic", "set-info", "set-option", "check-sat", "get-model",
                               "get-value", "exit"})
_COMMANDS = ("declare-const", "declare-fun", "assert") + tuple(sorted(_IGNORED_COMMANDS))


class _Parser(_RegionBuilder):
    """certnn's VNN-LIB 1.0 parser: the commands (declarations, assertions) of one text."""

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
