"""conv_transpose_rows (rows as the depth of one conv_transpose3d on CPU) against conv_transpose2d over
the folded batch: the same values to a few ulps, for strides, padding, output padding, dilation, groups,
several samples and row chunks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from certnn.ops import conv as conv_ops
from certnn.ops.conv import conv_transpose_rows


@pytest.mark.parametrize("stride,padding,opad,dilation,groups", [
    ((1, 1), (0, 0), (0, 0), (1, 1), 1), ((2, 2), (1, 1), (1, 1), (1, 1), 1), ((2, 1), (0, 1), (0, 0), (2, 1), 2),
    ((1, 1), (2, 2), (0, 0), (2, 2), 1)])
@pytest.mark.parametrize("chunk", [None, 50])
def test_rows_equal_folded_batch(monkeypatch, stride, padding, opad, dilation, groups, chunk):
    if chunk is not None:
        monkeypatch.setattr(conv_ops, "ROWS_COLUMNS", chunk)  # one or a few rows per conv_transpose3d call
    g = torch.Generator().manual_seed(0)
    B, R, cout, cin, h, w = 3, 7, 4, 6, 5, 4
    A = torch.randn(B, R, cout, h, w, generator=g, dtype=torch.float64)
    W = torch.randn(cout, cin // groups, 3, 2, generator=g, dtype=torch.float64)
    got = conv_transpose_rows(A, W, stride, padding, opad, groups, dilation)
    ref = F.conv_transpose2d(A.reshape(B * R, cout, h, w), W, None, stride, padding, opad, groups, dilation)
    ref = ref.reshape((B, R) + tuple(ref.shape[1:]))
    assert got.shape == ref.shape and got.is_contiguous()
    assert ((got - ref).abs() <= 1e-13 * (1 + ref.abs())).all()


def test_float32_takes_the_2d_path():
    A = torch.randn(1, 4, 2, 3, 3)
    W = torch.randn(2, 2, 3, 3)
    ref = F.conv_transpose2d(A.reshape(4, 2, 3, 3), W).reshape(1, 4, 2, 5, 5)
    assert torch.equal(conv_transpose_rows(A, W, (1, 1), (0, 0), (0, 0), 1, (1, 1)), ref)


def test_rows_of_a_view_and_one_row():
    """Non-contiguous coefficients (a transposed view) and a single row (the conv_transpose2d path)."""
    A = torch.randn(2, 5, 3, 4, 4, dtype=torch.float64).transpose(3, 4)
    W = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    for rows in (A, A[:, :1]):
        got = conv_transpose_rows(rows, W, (1, 1), (0, 0), (0, 0), 1, (1, 1))
        B, R = rows.shape[:2]
        ref = F.conv_transpose2d(rows.reshape(B * R, 3, 4, 4), W).reshape(B, R, 2, 6, 6)
        assert torch.allclose(got, ref, rtol=1e-13, atol=1e-13)


def test_rows_gradient(monkeypatch):
    """Verified training differentiates through the chunked result (weights and coefficients)."""
    monkeypatch.setattr(conv_ops, "ROWS_COLUMNS", 100)
    A = torch.randn(2, 6, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    W = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 6, 2, 6, 6, dtype=torch.float64)
    (conv_transpose_rows(A, W, (1, 1), (0, 0), (0, 0), 1, (1, 1)) * v).sum().backward()
    ga, gw = A.grad.clone(), W.grad.clone()
    A.grad, W.grad = None, None
    (F.conv_transpose2d(A.reshape(12, 3, 4, 4), W).reshape(2, 6, 2, 6, 6) * v).sum().backward()
    assert torch.allclose(ga, A.grad, rtol=1e-12, atol=1e-12) and torch.allclose(gw, W.grad, rtol=1e-12, atol=1e-12)
