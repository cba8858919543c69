"""CoeffSums: in-place sums and slice scatters equal the zero-padded sums, and never write into a tensor
an op handed over (shared between nodes or between the two sides)."""
from __future__ import annotations

import torch

from certnn.engine.accumulate import CoeffSums


def _padded(A, shape, index):
    out = A.new_zeros(A.shape[:2] + shape)
    out[(slice(None), slice(None)) + index] = A
    return out


def _r(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def test_slices_then_full_term_equal_the_padded_sum():
    g = torch.Generator().manual_seed(0)
    shape = (4, 12)
    parts = [((1, slice(0, 3)), torch.randn(2, 5, 3, generator=g, dtype=torch.float64)),
             ((1, slice(3, 12)), torch.randn(2, 5, 9, generator=g, dtype=torch.float64)),
             ((2, slice(0, 12)), torch.randn(2, 5, 12, generator=g, dtype=torch.float64)),
             ((1, slice(0, 3)), torch.randn(2, 5, 3, generator=g, dtype=torch.float64))]
    full = torch.randn(2, 5, *shape, generator=g, dtype=torch.float64)
    s = CoeffSums()
    want_l = want_u = None
    for index, A in parts:
        s.add_slice("x", shape, index, A, -A)
        p = _padded(A, shape, index)
        want_l = p if want_l is None else want_l + p
        want_u = -p if want_u is None else want_u - p
    s.add("x", full, full)
    lo, up = s.pop("x")
    assert torch.equal(lo, want_l + full) and torch.equal(up, want_u + full)
    assert "x" not in s


def test_inputs_are_never_written():
    A, B, C = _r(2, 3, 6), _r(2, 3, 6), _r(2, 3, 2)
    keep = [t.clone() for t in (A, B, C)]
    s = CoeffSums()
    s.add("x", A, A)          # taken as it is: shared with the caller
    s.add("x", B, B)          # a fresh sum, then ours
    s.add_slice("x", (6,), (slice(0, 2),), C, C)
    s.add("x", A, B)          # the sides part
    lo, up = s.pop("x")
    for t, k in zip((A, B, C), keep):
        assert torch.equal(t, k)
    want = A + B + _padded(C, (6,), (slice(0, 2),))
    assert torch.equal(lo, want + A) and torch.equal(up, want + B)
    assert lo is not up


def test_shared_sides_split_when_their_terms_differ():
    A, D = _r(1, 2, 4), _r(1, 2, 2)
    s = CoeffSums()
    s.add_slice("x", (4,), (slice(0, 2),), D, D)
    lo, up = s.get("x")
    assert lo is up  # one tensor while both sides get the same terms
    s.add_slice("x", (4,), (slice(2, 4),), D, -D)
    s.add("x", A, A)
    lo, up = s.pop("x")
    base = _padded(D, (4,), (slice(0, 2),)) + A
    assert torch.equal(lo, base + _padded(D, (4,), (slice(2, 4),)))
    assert torch.equal(up, base + _padded(-D, (4,), (slice(2, 4),)))


def test_one_sided_passes_and_late_sides():
    A, D = _r(1, 2, 4), _r(1, 2, 2)
    s = CoeffSums()
    s.add_slice("x", (4,), (slice(0, 2),), D, None)
    s.add("x", A, None)
    s.add("x", None, A)  # the upper side's first term
    s.add_slice("x", (4,), (slice(2, 4),), None, D)
    lo, up = s.pop("x")
    assert torch.equal(lo, _padded(D, (4,), (slice(0, 2),)) + A)
    assert torch.equal(up, A + _padded(D, (4,), (slice(2, 4),)))


def test_gradients_flow_through_in_place_sums():
    A = _r(1, 2, 4).requires_grad_()
    D = _r(1, 2, 2).requires_grad_()
    s = CoeffSums()
    s.add_slice("x", (4,), (slice(1, 3),), D, D)
    s.add("x", A, A)
    s.add_slice("x", (4,), (slice(0, 2),), D * 2, D * 2)
    lo, up = s.pop("x")
    (lo.sum() + 3 * up.sum()).backward()
    assert torch.allclose(A.grad, torch.full_like(A, 4.0))
    assert torch.allclose(D.grad, torch.full_like(D, 12.0))
