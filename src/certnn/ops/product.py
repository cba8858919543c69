"""Two-input products of recurrent cells, as fused IR ops on the gates' *pre-activations*.

    SigmoidTanhMul(x, y) = sigmoid(x) * tanh(y)   (LSTM: o * tanh(c), i * tanh(g); GRU: (1 - z) * n)
    SigmoidMul(x, y)     = sigmoid(x) * y         (LSTM: f * c;  GRU: z * h, r * (U h + b))
    Mul(x, y)            = x * y                  (a plain product of two nodes)

Fusing the gate's sigmoid into the product lets a method bound the whole function with planes
(`relax.products`: Cert-RNN's parallel planes, POPQORN's lower/upper planes, McCormick), which is much
tighter than bounding sigmoid, then tanh, then a product. Both inputs have the same per-sample shape.

Interval rule: each function is monotone in each argument once the other is fixed (sigmoid > 0, tanh
increasing; the direction in x flips with the sign of the second factor), so the extremes over a box are
attained at its four corners: the interval image is the min / max over the corners.

Backward rule: planes from the method's plane table (``Method.planes``, e.g. POPQORN's lower/upper
planes, McCormick for x*y), applied per sign of the coefficient like the activations' lines.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..domains.interval import Interval
from .activation import per_row
from .base import Op, sum_out


class _Product(Op):
    affine = False
    needs_input_bounds = True

    def fn(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.fn(x, y)

    def exact_on(self, l: Tensor, u: Tensor) -> Tensor | None:
        return None

    def backward(self, ctx, node_name, inputs, lA, uA):
        """Backward linear bounds through F(x, y) with the method's planes on the input box.

        With planes a_l x + b_l y + c_l <= F <= a_u x + b_u y + c_u on [lx, ux] x [ly, uy] (from
        ``ctx.planes``, i.e. the method's plane table) and coefficients Lambda (B, S, *shape) of F:

            lower bound of Lambda . F:  Lambda+ (a_l, b_l, c_l) + Lambda- (a_u, b_u, c_u)
            upper bound of Lambda . F:  Lambda+ (a_u, b_u, c_u) + Lambda- (a_l, b_l, c_l)

        giving coefficients for x and for y and a bias (B, S).

        Soundness: each term Lambda_j F_j is replaced by a plane below it (lower bound) or above it
        (upper bound) that holds on the whole box of (x_j, y_j); the boxes are sound intermediate bounds,
        so the sum is a sound linear bound of Lambda . F over the input set.
        """
        bx, by = ctx.bounds[inputs[0]], ctx.bounds[inputs[1]]
        pl = ctx.planes(self, node_name, bx.lower, bx.upper, by.lower, by.upper, lA if uA is None else None)
        like = lA if lA is not None else uA
        al, bl, cl = (per_row(t, like) for t in (pl.lower_a, pl.lower_b, pl.lower_c))
        au, bu, cu = (per_row(t, like) for t in (pl.upper_a, pl.upper_b, pl.upper_c))
        lx = ly = ux = uy = lbias = ubias = None
        if lA is not None:
            pos, neg = lA.clamp(min=0), lA.clamp(max=0)
            lx, ly = pos * al + neg * au, pos * bl + neg * bu
            lbias = sum_out(pos * cl + neg * cu)
        if uA is not None:
            pos, neg = uA.clamp(min=0), uA.clamp(max=0)
            ux, uy = pos * au + neg * al, pos * bu + neg * bl
            ubias = sum_out(pos * cu + neg * cl)
        return [(lx, ux), (ly, uy)], lbias, ubias

    def interval(self, ctx, x: Interval, y: Interval) -> Interval:
        corners = torch.stack([self.fn(x.lower, y.lower), self.fn(x.lower, y.upper),
                               self.fn(x.upper, y.lower), self.fn(x.upper, y.upper)])
        return Interval(corners.amin(0), corners.amax(0))


class SigmoidTanhMul(_Product):
    kind = "sigmoid_tanh_mul"

    def fn(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(x) * torch.tanh(y)


class SigmoidMul(_Product):
    kind = "sigmoid_mul"

    def fn(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(x) * y


class Mul(_Product):
    kind = "mul"

    def fn(self, x: Tensor, y: Tensor) -> Tensor:
        return x * y


PRODUCTS = {c.kind: c for c in (SigmoidTanhMul, SigmoidMul, Mul)}
