"""Sound bounds in low precision (dtype "float32-sound"): a priori bounds on floating-point rounding.

Every bound of the interval and backward engines is a sum of products computed in the working precision.
In this mode each step widens its result by a bound on the rounding error it can have made, so the bounds
hold for the real-valued network (Higham, *Accuracy and Stability of Numerical Algorithms*, 2002, §3.1:
a dot product of length n computed in any order, with or without FMA, has error at most
gamma_n |a|.|b|, gamma_n = n u / (1 - n u), u the unit roundoff; plus an absolute term per product for
underflow, taken as the smallest normal number so flush-to-zero is covered).

Where the widening goes (one place per kind of operation):
* interval images (`widen_interval`): an affine op's image of [l, u] is computed as W c + b +- |W| r;
  its error is at most gamma_k (|W| m + |b|) with m = max(|l|, |u|) and k the op's fan-in. That vector is
  the magnitude of the op's own interval image of the symmetric box [-m, m] (`affine_magnitude`, one
  extra interval call per node, cached), so no op needs its own rule. Elementwise nonlinear images
  (f(l), f(u), products of endpoints) are widened by a few ulps of their magnitude.
* backward steps (`step_error`): a coefficient row Lambda_out pushed through an affine op gives
  Lambda_in = Lambda_out J and a bias Lambda_out b, both rounded. The computed Lambda_in is then used as
  it is (any coefficients are valid from there on); the error of the step, (Lambda_out J - Lambda_in)
  z + rounding of the bias, is at most gamma_k sum_j |Lambda_out,j| (|J| m_in + |b|)_j: the same
  magnitude vector, one pass over |Lambda_out|. Through an activation (lines a z + b, a per-element
  product and a sum of Lambda_out b), the error is at most u sum |Lambda_in| m_in plus
  gamma_n sum_j |Lambda_out,j| |b_j|, and |b_j| <= M_out,j + |a_j| m_in,j because every line certnn
  uses touches f on [l, u] (its intercept is an exact extreme of f - a z, relax/; products' planes
  likewise), so the bound is gamma_n (sum |Lambda_out| M_out + 2 sum |Lambda_in| m_in).
* concretisation (`concretize_error`): A . x0 +- eps ||A||_q + bias over a set inside the box [l, u]
  has error at most gamma_n (sum |A| max(|l|, |u|) + |bias|), whatever the norm (eps ||A s||_q <=
  sum |A| r for the box radius r).
* running sums of biases: u |sum| per addition.
Each gamma carries a factor 2 and n + 4 terms: slack for the magnitude vectors' own rounding.

Soundness: the widened result contains the real-valued result of the same relaxations at every step, by
the error bounds above; the input set itself is rounded outward (certify/bounds.py: eps enlarged by the
distance of the float32 centre from the given one, clip boxes rounded outward, weights required to be
float32 numbers). Matrix products on CUDA with TF32 allowed use u = 2^-11.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..domains.interval import Interval


@dataclass(frozen=True)
class Rounding:
    """unit: unit roundoff of the products; tiny: absolute error per product (underflow)."""

    unit: float
    tiny: float

    @staticmethod
    def for_dtype(dtype: torch.dtype, device: torch.device | str | None = None) -> "Rounding":
        u = torch.finfo(dtype).eps / 2
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if dtype == torch.float32 and dev.type == "cuda" and (
                torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32):
            u = 2.0 ** -11  # TF32 products: 10-bit mantissa
        return Rounding(u, torch.finfo(dtype).tiny)

    def gamma(self, n: int) -> float:
        nu = (n + 4) * self.unit
        if nu >= 0.5:
            raise ValueError(f"sums of {n} terms are too long for an a priori rounding bound in this precision")
        return 2.0 * nu / (1.0 - nu)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _mag(iv: Interval) -> Tensor:
    return torch.maximum(iv.lower.abs(), iv.upper.abs())


def fan_in(ctx, name: str) -> int:
    """Terms of the longest dot product an op's output element is: a weight's row for Linear / conv
    (weight (out, in...) -> numel of weight[0]), else the number of input elements of a sample."""
    node = ctx.graph.nodes[name]
    w = getattr(node.op, "weight", None)
    if isinstance(w, Tensor) and w.dim() >= 2 and getattr(node.op, "kind", "") in ("linear", "conv"):
        return int(w[0].numel())
    return sum(_numel(ctx.shape(i)) for i in node.inputs)


def magnitude(ctx, name: str) -> Tensor:
    """max(|l|, |u|) of a node's value (B, *shape), from the bounds the engine recorded."""
    return ctx.magnitudes[name]


def affine_magnitude(ctx, name: str) -> Tensor:
    """|J| m_in + |b| of an affine node (B, *shape): the magnitude of its interval image of [-m_in, m_in]."""
    hit = ctx.affine_mags.get(name)
    if hit is None:
        node = ctx.graph.nodes[name]
        probes = [Interval(-magnitude(ctx, i), magnitude(ctx, i)) for i in node.inputs]
        hit = _mag(node.op.interval(ctx, *probes)) * (1 + 4 * ctx.rounding.unit)
        ctx.affine_mags[name] = hit
    return hit


def widen_interval(ctx, name: str, iv: Interval) -> Interval:
    """The interval image `iv` of node `name`, widened by its rounding error; records the magnitude."""
    r: Rounding = ctx.rounding
    node = ctx.graph.nodes[name]
    if node.op.affine:
        k = fan_in(ctx, name)
        w = r.gamma(k) * affine_magnitude(ctx, name) + r.tiny * (k + 1)
    else:
        w = 8 * r.unit * _mag(iv) + 4 * r.tiny
    out = Interval(iv.lower - w, iv.upper + w)
    record(ctx, name, out)
    return out


def record(ctx, name: str, iv: Interval) -> None:
    ctx.magnitudes[name] = _mag(iv)


def _row_sum(A: Tensor, v: Tensor) -> Tensor:
    """sum_j |A[b, s, j]| v[b, j] for A (B, S, *shape), v (B, *shape): (B, S)."""
    B, S = A.shape[:2]
    return torch.bmm(A.reshape(B, S, -1).abs(), v.reshape(B, -1, 1).to(A.dtype)).squeeze(-1)


def step_error(ctx, name: str, A_out: Tensor, ins: list[tuple[Tensor | None, Tensor | None]], side: int) -> Tensor:
    """Bound (B, S) on the rounding error of one backward step through node `name` (coefficients A_out of
    its output, `ins` the computed coefficients of its inputs; side 0 lower, 1 upper)."""
    r: Rounding = ctx.rounding
    node = ctx.graph.nodes[name]
    n_out = _numel(ctx.shape(name))
    if node.op.affine:
        k = fan_in(ctx, name)
        err = r.gamma(k) * _row_sum(A_out, affine_magnitude(ctx, name))
        return err + r.tiny * float(n_out * (k + 1))
    err = r.gamma(n_out) * _row_sum(A_out, magnitude(ctx, name))
    for inp, coeffs in zip(node.inputs, ins):
        A_in = coeffs[side]
        if A_in is not None:
            err = err + (2 * r.gamma(n_out) + r.unit) * _row_sum(A_in, magnitude(ctx, inp))
    return err + r.tiny * float(4 * n_out + 4)


def merge_errors(ctx, name: str, lA: Tensor | None, uA: Tensor | None, lerr, uerr):
    """Errors after adding two paths' coefficients of node `name` (sums lA / uA, rounded: u |sum| m)."""
    m = magnitude(ctx, name)
    out = []
    for A, acc in ((lA, lerr), (uA, uerr)):
        if A is None:
            out.append(acc)
            continue
        e = ctx.rounding.unit * _row_sum(A, m)
        out.append(e if acc is None else acc + e)
    return out[0], out[1]


def sum_error(ctx, total: Tensor) -> Tensor:
    """Rounding of one addition of bias terms whose result is `total` (B, S)."""
    return ctx.rounding.unit * total.abs()


def concretize_error(ctx, A: Tensor, bias: Tensor) -> Tensor:
    """Bound (B, S) on the rounding error of concretising A (B, S, *in) with bias (B, S) over the spec."""
    r: Rounding = ctx.rounding
    n = A[0, 0].numel()
    m = _mag(ctx.spec.box())
    return r.gamma(n + 2) * (_row_sum(A, m) + bias.abs()) + r.tiny * float(2 * n + 2)


def spec_error(ctx, C: Tensor, iv: Interval) -> Tensor:
    """Bound (B, S) on the rounding of C . v over the box iv (C (B, S, *shape)): interval_spec's sums."""
    n = C[0, 0].numel()
    return ctx.rounding.gamma(n + 2) * _row_sum(C, _mag(iv)) + ctx.rounding.tiny * float(2 * n + 2)
