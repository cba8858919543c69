"""VNN-LIB parser: every construct on hand-written properties (exact boxes, C and d), error messages with
positions, counterexample checking and writing, and every VNN-COMP 2022 property in ../shared/data."""
from __future__ import annotations

import csv
import gzip
import math
import re
import time
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from certnn.errors import CertnnError, DataError, SpecError
from certnn.specs import (DEFAULT_MAX_DISJUNCTS, VnnlibProperty, load_vnnlib, parse_vnnlib, property_violated,
                          read_counterexample, write_counterexample)


def decls(n: int, m: int) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + \
        "".join(f"(declare-const Y_{j} Real)\n" for j in range(m))


def unit_box(n: int, lo: float = 0.0, hi: float = 1.0) -> str:
    return "".join(f"(assert (>= X_{i} {lo}))\n(assert (<= X_{i} {hi}))\n" for i in range(n))


def only_region(prop: VnnlibProperty):
    assert len(prop.regions) == 1
    return prop.regions[0]


def assert_cd(conj, C, d):
    np.testing.assert_array_equal(conj.C, np.array(C, dtype=np.float64).reshape(len(d), -1))
    np.testing.assert_array_equal(conj.d, np.array(d, dtype=np.float64))


# ------------------------------------------------------------------------------------------------------
# Constructs
# ------------------------------------------------------------------------------------------------------

def test_box_and_single_output_atom():
    text = decls(2, 3) + """
; ACAS Xu style: plain bounds, one output atom
(assert (<= X_0 0.679857769))
(assert (>= X_0 0.6))
(assert (>= X_1 -0.5))  ; trailing comment
(assert (<= X_1 0.5))
(assert (>= Y_0 3.991125645861615))
"""
    prop = parse_vnnlib(text)
    assert (prop.n_inputs, prop.n_outputs) == (2, 3)
    (lower, upper), out = only_region(prop)
    np.testing.assert_array_equal(lower, [0.6, -0.5])
    np.testing.assert_array_equal(upper, [0.679857769, 0.5])
    assert lower.dtype == np.float64 and upper.dtype == np.float64
    assert len(out) == 1
    assert_cd(out[0], [[-1, 0, 0]], [-3.991125645861615])


def test_output_or_of_ands_mnist_style():
    text = decls(1, 4) + unit_box(1) + """
(assert (or
    (and (>= Y_0 Y_2))
    (and (>= Y_1 Y_2))
    (and (>= Y_3 Y_2) (<= Y_0 7))
))"""
    out = only_region(parse_vnnlib(text)).output_constraint
    assert len(out) == 3
    assert_cd(out[0], [[-1, 0, 1, 0]], [0])
    assert_cd(out[1], [[0, -1, 1, 0]], [0])
    assert_cd(out[2], [[0, 0, 1, -1], [1, 0, 0, 0]], [0, 7])


def test_input_regions_mixed_with_outputs_inside_disjuncts():
    # each disjunct carries its own box and its own output constraints
    text = decls(2, 2) + """
(assert (or
    (and (>= X_0 0) (<= X_0 1) (>= X_1 -1) (<= X_1 0) (<= Y_0 Y_1))
    (and (>= X_0 2) (<= X_0 3) (>= X_1 -1) (<= X_1 0) (>= Y_0 5))
    (and (>= X_0 0) (<= X_0 1) (>= X_1 -1) (<= X_1 0) (>= Y_1 6))
))"""
    prop = parse_vnnlib(text)
    assert len(prop.regions) == 2                      # the first and third disjunct share a box
    (lo0, hi0), out0 = prop.regions[0]
    (lo1, hi1), out1 = prop.regions[1]
    np.testing.assert_array_equal(lo0, [0, -1])
    np.testing.assert_array_equal(hi0, [1, 0])
    np.testing.assert_array_equal(lo1, [2, -1])
    np.testing.assert_array_equal(hi1, [3, 0])
    assert len(out0) == 2 and len(out1) == 1
    assert_cd(out0[0], [[1, -1]], [0])
    assert_cd(out0[1], [[0, -1]], [-6])
    assert_cd(out1[0], [[-1, 0]], [-5])


def test_input_or_times_output_or_acasxu_prop6_style():
    text = decls(2, 3) + """
(assert (or
    (and (<= X_0 1) (>= X_0 0) (<= X_1 1) (>= X_1 0.5))
    (and (<= X_0 1) (>= X_0 0) (<= X_1 -0.5) (>= X_1 -1))
))
(assert (or (and (<= Y_1 Y_0)) (and (<= Y_2 Y_0))))
"""
    prop = parse_vnnlib(text)
    assert len(prop.regions) == 2
    np.testing.assert_array_equal(prop.regions[0].input_box.lower, [0, 0.5])
    np.testing.assert_array_equal(prop.regions[1].input_box.upper, [1, -0.5])
    for region in prop.regions:
        assert len(region.output_constraint) == 2
        assert_cd(region.output_constraint[0], [[-1, 1, 0]], [0])
        assert_cd(region.output_constraint[1], [[-1, 0, 1]], [0])


def test_multiple_output_asserts_are_a_conjunction():
    text = decls(1, 3) + unit_box(1) + """
(assert (<= Y_2 -2.5))
(assert (>= Y_0 -0.0))
(assert (or (<= Y_1 1) (>= Y_1 4)))
(assert (or (<= Y_0 Y_2) (<= Y_2 Y_0)))
"""
    out = only_region(parse_vnnlib(text)).output_constraint
    assert len(out) == 4
    common_C, common_d = [[0, 0, 1], [-1, 0, 0]], [-2.5, 0.0]
    tails = [([[0, 1, 0], [1, 0, -1]], [1, 0]), ([[0, 1, 0], [-1, 0, 1]], [1, 0]),
             ([[0, -1, 0], [1, 0, -1]], [-4, 0]), ([[0, -1, 0], [-1, 0, 1]], [-4, 0])]
    for conj, (C, d) in zip(out, tails):
        assert_cd(conj, common_C + C, common_d + d)


def test_nested_and_or_inside_one_assert():
    text = decls(1, 2) + unit_box(1) + """
(assert (and (or (<= Y_0 0) (<= Y_1 0)) (or (and (>= Y_0 -1) (>= Y_1 -1)) (<= Y_0 -5))))"""
    out = only_region(parse_vnnlib(text)).output_constraint
    assert len(out) == 4
    assert_cd(out[0], [[1, 0], [-1, 0], [0, -1]], [0, 1, 1])
    assert_cd(out[3], [[0, 1], [1, 0]], [0, -5])


def test_linear_terms():
    text = decls(2, 3) + """
(assert (<= (* 2 X_0) 1))              ; X_0 <= 0.5
(assert (>= (* X_0 4) -2))             ; X_0 >= -0.5
(assert (>= (- X_1) -1))               ; X_1 <= 1
(assert (<= (- 0 X_1) 0.25))           ; X_1 >= -0.25
(assert (<= (+ Y_0 Y_1 2) (- Y_2 Y_1)))      ; Y_0 + 2 Y_1 - Y_2 <= -2
(assert (>= (* -1.5 Y_1) (+ (* Y_0 0.5) 3)))   ; -0.5 Y_0 - 1.5 Y_1 >= 3
(assert (<= (- (- Y_2 Y_0) Y_1 1) (+ 0.5)))  ; n-ary minus, unary plus
(assert (<= (/ Y_2 4) 2))              ; division by a constant
(assert (<= (* 2 3 Y_0) (* 2 3)))      ; constants multiply out
"""
    (lower, upper), out = only_region(parse_vnnlib(text))
    np.testing.assert_array_equal(lower, [-0.5, -0.25])
    np.testing.assert_array_equal(upper, [0.5, 1.0])
    assert len(out) == 1
    assert_cd(out[0], [[1, 2, -1], [0.5, 1.5, 0], [-1, -1, 1], [0, 0, 0.25], [6, 0, 0]],
              [-2, -3, 1.5, 2, 6])


def test_fast_and_general_paths_agree():
    fast = decls(1, 2) + "(assert (<= X_0 0.3))(assert (>= X_0 -0.7))(assert (<= Y_0 1.1))(assert (<= Y_1 Y_0))"
    slow = decls(1, 2) + ("(assert (<= (+ X_0 0) 0.3))(assert (>= (* 1 X_0) (- 0.7)))"
                          "(assert (<= (+ Y_0) 1.1))(assert (<= (- Y_1 Y_0) 0))")
    (lf, uf), [cf] = only_region(parse_vnnlib(fast))
    (ls, us), [cs] = only_region(parse_vnnlib(slow))
    np.testing.assert_array_equal(lf, ls)
    np.testing.assert_array_equal(uf, us)
    np.testing.assert_array_equal(cf.C, cs.C)
    np.testing.assert_array_equal(cf.d, cs.d)


def test_derived_bounds_are_rounded_outward():
    text = decls(2, 1) + """
(assert (<= (* 3 X_0) 1)) (assert (>= (* 3 X_0) -1))
(assert (<= (+ X_1 0.1) 0.3)) (assert (>= (+ X_1 0.1) 0.2))
(assert (<= (+ Y_0 0.1) 0.3))"""
    (lower, upper), [conj] = only_region(parse_vnnlib(text))
    third = Fraction(1, 3)
    assert Fraction(upper[0]) >= third and Fraction(math.nextafter(upper[0], -math.inf)) < third
    assert Fraction(lower[0]) <= -third and Fraction(math.nextafter(lower[0], math.inf)) > -third
    exact_hi = Fraction(0.3) - Fraction(0.1)
    exact_lo = Fraction(0.2) - Fraction(0.1)
    assert Fraction(upper[1]) >= exact_hi and Fraction(math.nextafter(upper[1], -math.inf)) < exact_hi
    assert Fraction(lower[1]) <= exact_lo and Fraction(math.nextafter(lower[1], math.inf)) > exact_lo
    assert Fraction(conj.d[0]) >= exact_hi and Fraction(math.nextafter(conj.d[0], -math.inf)) < exact_hi


def test_strict_comparisons_equal_chained_true_false():
    text = decls(2, 2) + """
(assert (< X_0 1)) (assert (> X_0 0))
(assert (<= -1 X_1 2))                 ; chained: -1 <= X_1 <= 2
(assert (and true (< Y_0 Y_1)))
(assert (or false (> Y_0 3)))
(assert (= Y_1 4))
"""
    (lower, upper), [conj] = only_region(parse_vnnlib(text))
    np.testing.assert_array_equal(lower, [0, -1])
    np.testing.assert_array_equal(upper, [1, 2])
    assert_cd(conj, [[1, -1], [-1, 0], [0, 1], [0, -1]], [0, -3, 4, -4])


def test_equality_fixes_an_input_and_constant_atoms():
    text = decls(2, 1) + """(assert (= X_0 0.25)) (assert (>= X_1 0)) (assert (<= X_1 1))
(assert (<= 1 2)) (assert (or (<= 3 2) (<= Y_0 0)))"""
    (lower, upper), [conj] = only_region(parse_vnnlib(text))
    np.testing.assert_array_equal(lower, [0.25, 0])
    np.testing.assert_array_equal(upper, [0.25, 1])
    assert_cd(conj, [[1]], [0])


def test_no_output_constraint_means_any_output():
    (lower, upper), [conj] = only_region(parse_vnnlib(decls(1, 2) + unit_box(1)))
    assert conj.C.shape == (0, 2) and conj.d.shape == (0,)


@pytest.mark.parametrize("literal,value", [
    ("1", 1.0), ("-2", -2.0), ("+3", 3.0), ("0.5", 0.5), ("-0.25", -0.25), (".5", 0.5), ("5.", 5.0),
    ("1e-3", 1e-3), ("2.5E+2", 250.0), ("-1.5e2", -150.0), ("5.8147645177086815e-05", 5.8147645177086815e-05),
    ("0.029999999329447746", 0.029999999329447746), ("-0.0", 0.0), ("007", 7.0)])
def test_number_forms(literal, value):
    text = decls(1, 1) + f"(assert (>= X_0 {literal}))(assert (<= X_0 1000))"
    (lower, _), _ = only_region(parse_vnnlib(text))
    assert lower[0] == value


def test_whitespace_comments_and_layout():
    text = ("; header comment\r\n(declare-const X_0 Real)(declare-const Y_0 Real) ; two on a line\r\n"
            "(declare-const\n\tY_1\n\tReal)\n"
            "(assert\n\t(<=\tX_0 ; a comment inside an expression\n 1))\n"
            "(assert(>= X_0 0))\n"
            "(assert (or\n\t(and (<= Y_0 Y_1)(<= Y_0 2))\n))")       # no final newline, no space between )(
    (lower, upper), [conj] = only_region(parse_vnnlib(text))
    np.testing.assert_array_equal(lower, [0])
    np.testing.assert_array_equal(upper, [1])
    assert_cd(conj, [[1, -1], [1, 0]], [0, 2])


def test_declare_fun_ignored_commands_and_declaration_order():
    text = """(set-logic QF_LRA)
(declare-fun Y_0 () Real)
(declare-const X_1 Real)
(declare-const X_0 Real)
(assert (<= 0 X_0 1)) (assert (<= 0 X_1 1)) (assert (<= Y_0 0))
(check-sat)
(get-model)
(exit)"""
    prop = parse_vnnlib(text)
    assert (prop.n_inputs, prop.n_outputs) == (2, 1)


def test_arrays_are_read_only_and_repr_is_short():
    prop = parse_vnnlib(decls(784, 10) + unit_box(784) + "(assert (or (>= Y_0 Y_1) (>= Y_2 Y_1)))")
    (lower, upper), out = only_region(prop)
    for arr in (lower, upper, out[0].C, out[0].d):
        with pytest.raises(ValueError):
            arr[0] = 1.0
    assert "n_inputs=784" in repr(prop) and len(repr(prop)) < 200
    with pytest.raises(AttributeError):
        prop.n_inputs = 3  # type: ignore[misc]


def test_load_plain_and_gzip(tmp_path):
    text = decls(1, 1) + unit_box(1) + "(assert (<= Y_0 0))"
    plain = tmp_path / "p.vnnlib"
    plain.write_text(text)
    zipped = tmp_path / "p.vnnlib.gz"
    zipped.write_bytes(gzip.compress(text.encode()))
    bom = tmp_path / "bom.vnnlib"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_vnnlib(bom).n_inputs == 1
    a, b = load_vnnlib(plain), load_vnnlib(zipped)
    assert a.source == str(plain) and b.source == str(zipped)
    np.testing.assert_array_equal(a.regions[0].input_box.upper, b.regions[0].input_box.upper)
    np.testing.assert_array_equal(a.regions[0].output_constraint[0].C, b.regions[0].output_constraint[0].C)


def test_load_truncated_gzip_is_a_spec_error(tmp_path):
    data = gzip.compress((decls(1, 1) + unit_box(1) + "(assert (<= Y_0 0))").encode())
    path = tmp_path / "t.vnnlib.gz"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(SpecError, match="t.vnnlib.gz: corrupt gzip data"):
        load_vnnlib(path)


# ------------------------------------------------------------------------------------------------------
# Counterexamples
# ------------------------------------------------------------------------------------------------------

REGIONS_TEXT = decls(2, 2) + """
(assert (or
    (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_0 Y_1))
    (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (>= Y_0 5) (<= Y_1 0))
))"""


def test_property_violated():
    prop = parse_vnnlib(REGIONS_TEXT)
    assert property_violated(prop, [0.5, 0.5], [1.0, 2.0])
    assert property_violated(prop, [0.5, 0.5], [2.0, 2.0])            # boundary counts (non-strict)
    assert not property_violated(prop, [0.5, 0.5], [3.0, 2.0])
    assert not property_violated(prop, [1.5, 0.5], [1.0, 2.0])        # between the boxes
    assert property_violated(prop, [2.5, 1.0], [6.0, -1.0])           # second region, second output set
    assert not property_violated(prop, [0.5, 0.5], [6.0, -1.0])       # output set of the other region
    assert not property_violated(prop, [1.00001, 0.5], [1.0, 2.0])
    assert property_violated(prop, [1.00001, 0.5], [1.0, 2.0], tol=1e-4)
    assert property_violated(prop, [[0.5, 0.5]], np.array([[1.0, 2.0]], dtype=np.float32))  # any shape
    assert not property_violated(prop, [0.5, 0.5], [np.nan, 2.0])
    with pytest.raises(DataError, match="x has 3 elements but the property has 2"):
        property_violated(prop, [0.5, 0.5, 0.5], [1.0, 2.0])
    with pytest.raises(DataError, match="y has 1 elements"):
        property_violated(prop, [0.5, 0.5], [1.0])


def test_write_counterexample_format_and_round_trip(tmp_path):
    path = tmp_path / "result.txt"
    write_counterexample(path, np.array([[0.5, -0.25]]), [1.0])
    assert path.read_text() == "sat\n((X_0 0.5)\n (X_1 -0.25)\n (Y_0 1.0))\n"
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 4)) * 1e-7, rng.normal(size=10) * 1e5
    write_counterexample(path, x, y)
    lines = path.read_text().splitlines()
    assert lines[0] == "sat" and lines[1].startswith("((X_0 ") and lines[-1].startswith(" (Y_9 ")
    assert lines[-1].endswith("))") and len(lines) == 1 + 12 + 10
    x2, y2 = read_counterexample(path)
    np.testing.assert_array_equal(x2, x.reshape(-1))                 # repr(float) round-trips exactly
    np.testing.assert_array_equal(y2, y)
    with pytest.raises(DataError, match="X_1 is nan"):
        write_counterexample(path, [0.0, np.nan], [1.0])


def test_read_counterexample_errors(tmp_path):
    path = tmp_path / "ce.txt"
    path.write_text("sat\n((X_0 1)\n (X_2 1))")
    with pytest.raises(DataError, match=r"ce.txt:3:2: expected X_1"):
        read_counterexample(path)
    path.write_text("((X_0 1) (Y_0 abc))")
    with pytest.raises(DataError, match="expected"):
        read_counterexample(path)


def _random_formula(rng: np.random.Generator, depth: int) -> str:
    if depth == 0 or rng.random() < 0.3:
        c = round(float(rng.uniform(-1, 1)), 3)
        kind = rng.integers(4)
        if kind == 0:
            return f"({rng.choice(['<=', '>='])} X_{rng.integers(2)} {c})"
        if kind == 1:
            return f"({rng.choice(['<=', '>='])} Y_{rng.integers(2)} Y_{rng.integers(2)})"
        a, b = (round(float(v), 2) for v in rng.uniform(-2, 2, size=2))
        return f"({rng.choice(['<=', '>='])} (+ (* {a} Y_0) (* Y_1 {b})) {c})"
    op = rng.choice(["and", "or"])
    return f"({op} " + " ".join(_random_formula(rng, depth - 1) for _ in range(rng.integers(1, 4))) + ")"


def _evaluate(text: str, x, y) -> bool:
    """Direct evaluation of the conjunction of all assertions at the point (x, y), independent of the parser."""
    tokens = re.findall(r"[()]|[^\s()]+", re.sub(r";[^\n]*", " ", text))

    def read(i):
        if tokens[i] != "(":
            return tokens[i], i + 1
        items, i = [], i + 1
        while tokens[i] != ")":
            item, i = read(i)
            items.append(item)
        return items, i + 1

    def value(t):
        if isinstance(t, str):
            return x[int(t[2:])] if t.startswith("X_") else y[int(t[2:])] if t.startswith("Y_") else float(t)
        vals = [value(a) for a in t[1:]]
        return sum(vals) if t[0] == "+" else vals[0] * vals[1]

    def holds(f):
        if f[0] == "and":
            return all(holds(g) for g in f[1:])
        if f[0] == "or":
            return any(holds(g) for g in f[1:])
        a, b = value(f[1]), value(f[2])
        return a <= b if f[0] == "<=" else a >= b

    i, result = 0, True
    while i < len(tokens):
        cmd, i = read(i)
        if cmd[0] == "assert":
            result = result and holds(cmd[1])
    return result


def test_random_formulas_agree_with_direct_evaluation():
    rng = np.random.default_rng(1234)
    checked = 0
    for _ in range(150):
        text = decls(2, 2) + unit_box(2, -1, 1) + "".join(
            f"(assert {_random_formula(rng, 3)})\n" for _ in range(rng.integers(1, 4)))
        try:
            prop = parse_vnnlib(text)
        except SpecError as e:
            assert "contradictory" in str(e) or "always false" in str(e), str(e)
            continue
        xs = rng.uniform(-1.2, 1.2, size=(60, 2))
        ys = rng.uniform(-2, 2, size=(60, 2))
        for x, y in zip(xs, ys):
            assert property_violated(prop, x, y) == _evaluate(text, x, y), (text, x, y)
        checked += 1
    assert checked > 100


# ------------------------------------------------------------------------------------------------------
# Errors: every message names the place
# ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,fragments", [
    (decls(1, 1) + "(assert (<= X_0 1)))\n", ["<string>:3:20", "')' without a matching '('"]),
    (decls(1, 1) + "(assert (>= X_0 0))\n(assert (<= X_0 1)\n(assert (<= Y_0 0))",
     ["<string>:4:1", "never closed"]),
    (decls(1, 1) + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (<= X_7 1))",
     ["<string>:5:13", "X_7 is not declared"]),
    ("(assert (<= X_0 1))\n(declare-const X_0 Real)", ["<string>:1:13", "X_0 is not declared"]),
    (decls(1, 1) + unit_box(1) + "(assert (<= Y_0 foo))", ["<string>:5:17", "unknown symbol 'foo'"]),
    (decls(1, 1) + unit_box(1) + "(assert (<= Y_0 1.2.3))", ["malformed number '1.2.3'"]),
    (decls(1, 1) + unit_box(1) + "(assert (<= Y_0 inf))", ["unknown symbol 'inf'"]),
    (decls(1, 1) + unit_box(1) + "(assert (<= Y_0 1e999))", ["out of the range"]),
    (decls(2, 1) + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))",
     ["X_1 (declared at <string>:2:16) has no finite upper bound", "(assert (<= X_1 ...))"]),
    (decls(1, 1) + "(assert (<= X_0 1))", ["X_0", "no finite lower bound"]),
    (decls(2, 1) + unit_box(2) + "(assert (<= (+ X_0 X_1) 1))",
     ["<string>:8:9", "several inputs (X_0, X_1)", "only boxes are supported on inputs"]),
    (decls(2, 1) + unit_box(2) + "(assert (<= X_0 X_1))", ["several inputs"]),
    (decls(1, 1) + unit_box(1) + "(assert (<= X_0 Y_0))", ["mixes inputs (X_0) and outputs (Y_0)"]),
    ("(declare-const X_0 Real)(declare-const X_2 Real)(declare-const Y_0 Real)",
     ["X_0 .. X_2 without gaps", "X_1 is not declared"]),
    ("(declare-const X_0 Real)", ["no outputs declared"]),
    (decls(1, 2) + unit_box(1) + "(assert (<= (* Y_0 Y_1) 1))", ["<string>:6:13", "nonlinear"]),
    (decls(1, 2) + unit_box(1) + "(assert (<= (/ Y_0 Y_1) 1))", ["division by a variable"]),
    (decls(1, 2) + unit_box(1) + "(assert (<= (/ Y_0 0) 1))", ["division by zero"]),
    (decls(1, 1) + unit_box(1) + "(assert (not (<= Y_0 1)))",
     ["<string>:5:10", "unsupported operator 'not'", "and, or, <=, >=, <, >, ="]),
    (decls(1, 1) + unit_box(1) + "(assert (<= (abs Y_0) 1))", ["'abs' is an operator not allowed in a term"]),
    (decls(1, 1) + unit_box(1) + "(assert (+ Y_0 1))", ["is a term, not a formula"]),
    (decls(1, 1) + unit_box(1) + "(assert Y_0)", ["expected a formula"]),
    (decls(1, 1) + unit_box(1) + "(assert (<= Y_0))", ["needs at least two arguments"]),
    (decls(1, 1) + unit_box(1) + "(assert (<= Y_0 1) (<= Y_0 2))", ["<string>:5:1", "exactly one formula"]),
    (decls(1, 1) + "(push 1)", ["<string>:3:2", "unsupported command 'push'"]),
    (decls(1, 1) + "X_0", ["<string>:3:1", "outside parentheses"]),
    ("(declare-const X_0 Real)\n(declare-const X_0 Real)",
     ["<string>:2:16", "declared twice (first at <string>:1:16)"]),
    ("(declare-const X_0 Int)", ["unsupported sort 'Int'"]),
    ("(declare-const x Real)", ["unsupported variable name 'x'"]),
    ("(declare-const X_01 Real)", ["unsupported variable name 'X_01'"]),
    ("(declare-const X_0)", ["malformed declaration"]),
    (decls(1, 1) + "(assert (>= X_0 1))\n(assert (<= X_0 0))",
     ["contradictory", "X_0 (declared at <string>:1:16) has lower bound 1.0 above its upper bound 0.0"]),
    (decls(1, 1) + "(assert (or (and (>= X_0 1) (<= X_0 0)) (and (>= X_0 3) (<= X_0 2))))", ["contradictory"]),
    (decls(1, 1) + unit_box(1) + "(assert (<= 2 1))", ["<string>:5:1", "always false"]),
])
def test_spec_errors(text, fragments):
    with pytest.raises(SpecError) as info:
        parse_vnnlib(text)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert isinstance(info.value, CertnnError)


def test_dnf_cap():
    ors = "".join(f"(assert (or {' '.join(f'(<= Y_0 {k})' for k in range(10))}))\n" for _ in range(5))
    text = decls(1, 1) + unit_box(1) + ors
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match=r"<string>:5:1: .*expands to 100000 disjuncts.*max_disjuncts=10000"):
        parse_vnnlib(text)
    assert time.perf_counter() - t0 < 1.0                                 # checked before expanding
    assert DEFAULT_MAX_DISJUNCTS == 10_000
    four = decls(1, 1) + unit_box(1) + ors.split("\n", 4)[-1]            # one or: 10 disjuncts
    assert len(parse_vnnlib(four).regions[0].output_constraint) == 10
    with pytest.raises(SpecError, match="expands to 100 disjuncts"):
        parse_vnnlib(decls(1, 1) + unit_box(1) + ors, max_disjuncts=99)
    nested = decls(1, 1) + unit_box(1) + "(assert (and " + " ".join(
        "(or (<= Y_0 1) (<= Y_0 2) (<= Y_0 3))" for _ in range(9)) + "))"
    with pytest.raises(SpecError, match="expands to 19683 disjuncts"):
        parse_vnnlib(nested)


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.vnnlib"
    bad.write_text(decls(1, 1) + "(assert (<= X_0 1)\n")
    with pytest.raises(SpecError, match=re.escape(f"{bad}:3:1: unbalanced")):
        load_vnnlib(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_vnnlib(tmp_path / "missing.vnnlib")
    binary = tmp_path / "bin.vnnlib"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_vnnlib(binary)


# ------------------------------------------------------------------------------------------------------
# VNN-COMP 2022 benchmark files (../shared/data)
# ------------------------------------------------------------------------------------------------------

def _shared_data() -> Path | None:
    """The shared data directory, found as tests/conftest.py finds it: ``CERTNN_SHARED_DATA`` if set,
    else ``../shared/data`` next to the repository root."""
    env = os.environ.get("CERTNN_SHARED_DATA")
    data = Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return data if data.is_dir() else None


def _vnncomp_root() -> Path:
    data = _shared_data()
    if data is None or not (data / "vnncomp2022").is_dir():
        pytest.skip("../shared/data/vnncomp2022 is not available")
    return data / "vnncomp2022"


def _instances(root: Path) -> list[tuple[str, Path, Path]]:
    """(family, onnx path, vnnlib.gz path) for every row of every instances.csv."""
    rows = []
    for csv_path in sorted(root.glob("*/instances.csv")):
        with open(csv_path, newline="") as f:
            for row in csv.reader(f):
                if row:
                    rows.append((csv_path.parent.name, csv_path.parent / row[0].strip(),
                                 csv_path.parent / (row[1].strip() + ".gz")))
    return rows


# (family, file-name pattern) -> (n_inputs, n_outputs); checked against the ONNX models by the slow test
EXPECTED_SIZES = [
    ("acasxu", r"prop_\d+", (5, 5)),
    ("mnist_fc", r"prop_\d+_", (784, 10)),
    ("oval21", r"cifar_", (3072, 10)),
    ("collins_rul_cnn", r"_w20\.", (400, 1)),
    ("collins_rul_cnn", r"_w40\.", (800, 1)),
    ("reach_prob_density", r"vdp_", (3, 3)),
    ("reach_prob_density", r"robot_", (5, 5)),
    ("reach_prob_density", r"gcas_", (14, 14)),
    ("rl_benchmarks", r"cartpole_", (4, 2)),
    ("rl_benchmarks", r"lunarlander_", (8, 4)),
    ("rl_benchmarks", r"dubinsrejoin_", (8, 8)),
]


def _expected_size(family: str, name: str) -> tuple[int, int]:
    hits = [size for fam, pat, size in EXPECTED_SIZES if fam == family and re.search(pat, name)]
    assert len(hits) == 1, f"no expected size for {family}/{name}"
    return hits[0]


def _check_well_formed(prop: VnnlibProperty) -> None:
    assert prop.regions
    for (lower, upper), out in prop.regions:
        assert lower.shape == upper.shape == (prop.n_inputs,)
        assert np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))
        assert np.all(lower <= upper)
        assert out
        for C, d in out:
            assert C.ndim == 2 and C.shape[1] == prop.n_outputs and d.shape == (C.shape[0],)
            assert np.all(np.isfinite(C)) and np.all(np.isfinite(d))


@pytest.mark.shared_data
def test_every_vnncomp2022_property_parses():
    root = _vnncomp_root()
    files = sorted({(fam, v) for fam, _, v in _instances(root)})
    families = {fam for fam, _ in files}
    assert families == {"acasxu", "mnist_fc", "oval21", "collins_rul_cnn", "reach_prob_density", "rl_benchmarks"}
    assert len(files) == 443
    for family, path in files:
        prop = load_vnnlib(path)
        assert (prop.n_inputs, prop.n_outputs) == _expected_size(family, path.name), path
        _check_well_formed(prop)


@pytest.mark.shared_data
def test_vnncomp2022_meaning_of_known_properties():
    root = _vnncomp_root()
    # ACAS Xu property 6: two input boxes (or) times "COC is not minimal" (4 disjuncts)
    prop = load_vnnlib(root / "acasxu/vnnlib/prop_6.vnnlib.gz")
    assert [len(r.output_constraint) for r in prop.regions] == [4, 4]
    assert prop.regions[0].input_box.lower[1] == 0.11140846
    assert prop.regions[1].input_box.upper[1] == -0.11140846
    for k, (C, d) in enumerate(prop.regions[0].output_constraint):   # (<= Y_{k+1} Y_0)
        expected = np.zeros((1, 5))
        expected[0, 0], expected[0, k + 1] = -1, 1
        np.testing.assert_array_equal(C, expected)
        np.testing.assert_array_equal(d, [0])
    # ACAS Xu property 1: COC >= 3.991... is unsafe
    ((lower, upper), [(C, d)]), = load_vnnlib(root / "acasxu/vnnlib/prop_1.vnnlib.gz").regions
    np.testing.assert_array_equal(lower, [0.6, -0.5, -0.5, 0.45, -0.5])
    np.testing.assert_array_equal(upper, [0.679857769, 0.5, 0.5, 0.5, -0.45])
    np.testing.assert_array_equal(C, [[-1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(d, [-3.991125645861615])
    # MNIST: misclassification of the labelled class is unsafe; the label is in the file's first comment
    for path in sorted((root / "mnist_fc/vnnlib").glob("*.gz"))[:6]:
        label = int(re.search(r"label: (\d+)", gzip.decompress(path.read_bytes()).decode()).group(1))
        prop = load_vnnlib(path)
        ((lower, upper), out), = prop.regions
        assert np.all(lower >= 0) and np.all(upper <= 1)
        assert len(out) == 9
        for C, d in out:
            assert C.shape == (1, 10) and C[0, label] == 1 and C[0].sum() == 0 and d[0] == 0
        x = (lower + upper) / 2
        assert not property_violated(prop, x, np.eye(10)[label] * 5)
        assert property_violated(prop, x, np.eye(10)[(label + 1) % 10] * 5)
        assert not property_violated(prop, upper + 1e-3, np.eye(10)[(label + 1) % 10] * 5)


@pytest.mark.slow
@pytest.mark.shared_data
def test_vnncomp2022_sizes_match_onnx_models():
    onnx = pytest.importorskip("onnx")
    root = _vnncomp_root()
    sizes: dict[Path, tuple[int, int]] = {}
    for _, onnx_path, vnnlib_path in _instances(root):
        if onnx_path not in sizes:
            src = onnx_path if onnx_path.exists() else onnx_path.with_name(onnx_path.name + ".gz")
            raw = src.read_bytes()
            model = onnx.load_model_from_string(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
            inits = {t.name for t in model.graph.initializer}
            inputs = [i for i in model.graph.input if i.name not in inits]   # collins lists initializers
            assert len(inputs) == 1

            def numel(value_info):
                return int(np.prod([d.dim_value if d.dim_value > 0 else 1
                                    for d in value_info.type.tensor_type.shape.dim]))
            sizes[onnx_path] = (numel(inputs[0]), numel(model.graph.output[0]))
        prop = load_vnnlib(vnnlib_path)
        assert (prop.n_inputs, prop.n_outputs) == sizes[onnx_path], (onnx_path, vnnlib_path)
