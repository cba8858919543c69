"""VNN-LIB 2.0 queries through the maintained vnnlib package, VNN-LIB 1.0 files through its translation,
and the same regions as certnn's own 1.0 parser on every VNN-COMP 2022 file of the shared data."""
from __future__ import annotations

import gzip
import time

import numpy as np
import pytest

pytest.importorskip("vnnlib")

from certnn.errors import SpecError  # noqa: E402
from certnn.specs import vnnlib2  # noqa: E402
from certnn.specs.vnnlib import load_vnnlib, parse_vnnlib  # noqa: E402
from certnn.specs.vnnlib2 import _Untranslatable, parse_query, translate_v1  # noqa: E402


def canon(prop):
    """Regions as {(box lower, box upper): {rows of each conjunction}}, by value (-0.0 == 0.0)."""
    out = {}
    for r in prop.regions:
        key = (tuple(r.input_box.lower + 0.0), tuple(r.input_box.upper + 0.0))
        s = out.setdefault(key, set())
        for C, d in r.output_constraint:
            s.add(tuple(sorted((tuple(C[i] + 0.0), float(d[i]) + 0.0) for i in range(C.shape[0]))))
    return out


def same(a, b) -> bool:
    return (a.n_inputs, a.n_outputs) == (b.n_inputs, b.n_outputs) and canon(a) == canon(b)


V1 = """; a comment
(set-logic QF_LRA)
(declare-const X_0 Real)
(declare-fun X_1 () Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (>= X_0 -1e-05))   ; scientific notation
(assert (<= X_0 2.5E+1))
(assert (and (>= X_1 0) (<= X_1 +3)))
(assert (or (and (>= Y_0 Y_1) (<= (+ Y_1 (* 2 Y_2)) .5))
            (and (= Y_2 5.) (< Y_0 0.1))))
(check-sat)
(exit)
"""


def test_v1_translation_is_exact():
    t = translate_v1(V1)
    assert "X[0]" in t and "0.00001" in t and "25.0" in t and "3.0" in t and "0.5" in t and "(== Y[2] 5.0)" in t
    q = parse_query(V1, "v1")
    assert q.version == "1.0" and "vnnlib" in q.parser and q.real_valued
    assert same(q.property(), parse_vnnlib(V1))
    # line numbers survive (errors point into the file)
    assert translate_v1(V1).count("\n") == V1.count("\n")


def test_v1_constructs_without_2_0_spelling_fall_back_to_certnn(tmp_path):
    div = V1.replace("(<= X_0 2.5E+1)", "(<= X_0 (/ 50 2))")
    with pytest.raises(_Untranslatable):
        translate_v1(div)
    p = tmp_path / "div.vnnlib"
    p.write_text(div)
    prop = load_vnnlib(p)
    assert prop.parser == "certnn" and same(prop, parse_vnnlib(div))
    # a malformed file: certnn's parser reports the line and column
    bad = tmp_path / "bad.vnnlib"
    bad.write_text(V1.replace("(<= X_0 2.5E+1)", "(<= X_0 2.5E+1 +)"))
    with pytest.raises(SpecError, match=r"bad.vnnlib:\d+:\d+"):
        load_vnnlib(bad)
    good = tmp_path / "good.vnnlib"
    good.write_text(V1)
    assert load_vnnlib(good).parser.startswith("vnnlib")
    assert load_vnnlib(good, parser="certnn").parser == "certnn"


V2 = """(vnnlib-version <2.0>)
(declare-network net
    (declare-input  X real [1,2,2])
    (declare-output Y real [1,3])
)
(assert (>= X[0,0,0] -1.0))
(assert (<= X[0,0,0] 1.0))
(assert (and (>= X[0,0,1] 0.0) (<= X[0,0,1] 0.5)))
(assert (and (>= X[0,1,0] 0.25) (<= X[0,1,0] 0.75) (== X[0,1,1] 0.125)))
(assert (or (and (<= Y[0,0] Y[0,1]) (< Y[0,2] 0.1))
            (>= (+ (* 2.0 Y[0,0]) (- Y[0,1] 3.0)) 0.3)
            (!= Y[0,2] 0.0)))
"""


def test_v2_query_structure_and_regions():
    q = parse_query(V2, "v2")
    assert q.version == "2.0" and q.real_valued and q.unsupported is None
    (net,) = q.networks
    assert [(d.name, d.kind, d.element_type, d.shape) for d in net.declarations] == [
        ("X", "input", "real", (1, 2, 2)), ("Y", "output", "real", (1, 3))]
    prop = q.property()
    assert (prop.n_inputs, prop.n_outputs) == (4, 3)
    (region,) = prop.regions
    np.testing.assert_array_equal(region.input_box.lower, [-1.0, 0.0, 0.25, 0.125])
    np.testing.assert_array_equal(region.input_box.upper, [1.0, 0.5, 0.75, 0.125])
    # the same property written in VNN-LIB 1.0 (!= has the whole space as closure: an empty conjunction)
    v1 = "\n".join([f"(declare-const X_{i} Real)" for i in range(4)] + [f"(declare-const Y_{j} Real)" for j in range(3)]
                   + ["(assert (>= X_0 -1.0))", "(assert (<= X_0 1.0))", "(assert (>= X_1 0.0))",
                      "(assert (<= X_1 0.5))", "(assert (>= X_2 0.25))", "(assert (<= X_2 0.75))",
                      "(assert (= X_3 0.125))",
                      "(assert (or (and (<= Y_0 Y_1) (<= Y_2 0.1)) (>= (+ (* 2.0 Y_0) (- Y_1 3.0)) 0.3) (and)))"])
    v1 = v1.replace("(and)))", "(>= Y_0 Y_0)))")
    assert same(prop, parse_vnnlib(v1))


def test_exact_check_of_counterexamples():
    q = parse_query(V2, "v2")
    x = np.array([0.0, 0.25, 0.5, 0.125]).reshape(1, 2, 2)
    ok = {"X": x, "Y": np.array([[0.0, 1.0, 0.05]])}
    assert q.satisfied_by(ok)
    assert q.satisfied_by({"X": x, "Y": np.array([[0.0, 1.0, 0.1]])})  # not Y < 0.1, but via the != disjunct
    assert not q.satisfied_by({"X": x, "Y": np.array([[0.5, 0.0, 0.0]])})  # no disjunct: != is exact
    # strict: Y[0,2] = 0.1 fails (< 0.1) when the other disjuncts do; the closure would accept it
    q1 = parse_query(V2.replace("(!= Y[0,2] 0.0)", "(<= Y[0,0] -5.0)"), "v")
    assert not q1.satisfied_by({"X": x, "Y": np.array([[0.0, 1.0, 0.1]])})
    # the literal 0.1 is the exact decimal: the double nearest to 0.1 is above it
    q2 = parse_query(V2.replace("(< Y[0,2] 0.1)", "(<= Y[0,2] 0.1)").replace("(!= Y[0,2] 0.0)", "(<= Y[0,0] -5.0)"), "v")
    assert not q2.satisfied_by({"X": x, "Y": np.array([[0.0, 1.0, 0.1]])})
    assert q2.satisfied_by({"X": x, "Y": np.array([[0.0, 1.0, np.nextafter(0.1, 0)]])})
    # inputs outside the box, NaN
    assert not q.satisfied_by({"X": x + 2.0, "Y": ok["Y"]})
    assert not q.satisfied_by({"X": x, "Y": np.array([[np.nan, 1.0, 0.05]])})


def _net(body, extra=""):
    return f"(vnnlib-version <2.0>)\n{extra}\n{body}"


@pytest.mark.parametrize("text,theory", [
    (_net("(assert (>= X[0] 0.0))", "(declare-network f (declare-input X real [1]) (declare-hidden H real [1] \"h\") "
          "(declare-output Y real [1]))"), "hidden nodes"),
    (_net("(assert (>= X[0] 0.0))", "(declare-network f (declare-input X real [1]) (declare-output Y real [1])) "
          "(declare-network g (declare-input U real [1]) (declare-output W real [1]))"), "2 networks"),
    (_net("(assert (>= X[0] 0.0))", "(declare-network f (declare-input X real [1]) (declare-input Z real [1]) "
          "(declare-output Y real [1]))"), "MIO"),
])
def test_theories_outside_certnn_are_named(text, theory):
    q = parse_query(text, "q")
    assert q.prop is None and theory in q.unsupported
    with pytest.raises(SpecError, match=theory):
        q.property()


@pytest.mark.parametrize("assertion,theory", [
    ("(assert (<= (+ X[0] Y[0]) 1.0))", "MNC"),
    ("(assert (<= (+ X[0] X[1]) 1.0))", "LIN"),
    ("(assert (<= (* X[0] X[1]) 1.0))", "POLY"),
])
def test_constraints_outside_certnn_are_named(assertion, theory):
    text = _net("(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) (assert (>= X[1] 0.0)) (assert (<= X[1] 1.0))\n"
                + assertion, "(declare-network f (declare-input X real [2]) (declare-output Y real [1]))")
    with pytest.raises(SpecError, match=theory):
        parse_query(text, "q")


def test_errors_are_spec_errors():
    with pytest.raises(SpecError, match="syntax error"):
        parse_query("(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [1])", "q")
    with pytest.raises(SpecError, match="no finite"):
        parse_query(_net("(assert (>= X[0] 0.0))", "(declare-network f (declare-input X real [1]) "
                         "(declare-output Y real [1]))"), "q")
    big = " ".join(f"(or (<= Y[0] {i}.0) (>= Y[0] {i}.5))" for i in range(16))
    with pytest.raises(SpecError, match="disjuncts"):
        parse_query(_net(f"(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) (assert (and {big}))",
                         "(declare-network f (declare-input X real [1]) (declare-output Y real [1]))"), "q",
                    max_disjuncts=1000)


def _families(shared):
    return sorted((shared / "vnncomp2022").glob("*/vnnlib/*.vnnlib.gz"))


@pytest.mark.shared_data
def test_shared_vnncomp_files_parse_identically_fast(shared_data):
    """One file per VNN-COMP 2022 family (the slow test below covers all)."""
    seen = {}
    for p in _families(shared_data):
        seen.setdefault(p.parts[-3], p)
    for p in seen.values():
        text = gzip.decompress(p.read_bytes()).decode()
        assert same(parse_query(text, str(p)).property(), parse_vnnlib(text, str(p))), p
        assert load_vnnlib(p).parser.startswith("vnnlib")


@pytest.mark.slow
@pytest.mark.shared_data
def test_all_shared_vnncomp_files_parse_identically(shared_data):
    files = _families(shared_data)
    assert len(files) > 400
    t_vnnlib = t_certnn = 0.0
    for p in files:
        text = gzip.decompress(p.read_bytes()).decode()
        t = time.perf_counter()
        a = parse_vnnlib(text, str(p))
        t_certnn += time.perf_counter() - t
        t = time.perf_counter()
        b = vnnlib2.parse_query(text, str(p)).property()
        t_vnnlib += time.perf_counter() - t
        assert same(a, b), p
    print(f"{len(files)} files: certnn parser {t_certnn:.2f} s, vnnlib package {t_vnnlib:.2f} s")
