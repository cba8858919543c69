"""The op protocol: how one IR node maps concrete values, intervals and backward linear bounds.

An op never stores run state: intermediate bounds and method choices come in through the run context.
Shapes: concrete values are (B, *shape); backward coefficient tensors are (B, S, *shape), S = spec rows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..domains.interval import Interval

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.context import RunContext

# (lA, uA) for one input of an op; either side may be None when not needed.
Coeffs = tuple[Tensor | None, Tensor | None]


class Op:
    """Base class of IR ops."""

    kind: str = "op"
    #: True for ops that are affine in their inputs (the backward rule is a transpose, no bounds needed)
    affine: bool = True
    #: True when the backward rule needs interval bounds of the inputs (nonlinear ops)
    needs_input_bounds: bool = False

    def forward(self, *xs: Tensor) -> Tensor:
        raise NotImplementedError

    def to(self, dtype: torch.dtype | None = None, device: Any = None) -> "Op":
        """A copy with tensor parameters converted (ops without parameters return self)."""
        return self

    def interval(self, ctx: "RunContext", *xs: Interval) -> Interval:
        raise NotImplementedError(f"{type(self).__name__} has no interval rule")

    def backward(self, ctx: "RunContext", node_name: str, inputs: tuple[str, ...], lA: Tensor | None,
                 uA: Tensor | None) -> tuple[list[Coeffs], Tensor | None, Tensor | None]:
        """Push coefficients of this op's output back to its inputs.

        Returns ([(lA_i, uA_i) per input], lbias, ubias) with biases of shape (B, S) (or None for 0).
        """
        raise NotImplementedError(f"{type(self).__name__} has no backward rule")

    def describe(self) -> str:
        return self.kind


class AffineOp(Op):
    """An op y = T(x) + c that is affine in a single input: backward is the transpose of T."""

    def transpose(self, A: Tensor) -> Tensor:
        """A (B, S, *out_shape) -> A∘T (B, S, *in_shape)."""
        raise NotImplementedError

    def bias_term(self, A: Tensor) -> Tensor | None:
        """A . c summed over the output dims, shape (B, S); None if the op has no constant part."""
        return None

    def interval(self, ctx, x: Interval) -> Interval:  # type: ignore[override]
        raise NotImplementedError

    def backward(self, ctx, node_name, inputs, lA, uA):
        if lA is not None and lA is uA:  # both sides share coefficients (e.g. Fast-Lin, or a fresh spec)
            A_in = self.transpose(lA)
            b = self.bias_term(lA)
            return [(A_in, A_in)], b, b
        lA_in = self.transpose(lA) if lA is not None else None
        uA_in = self.transpose(uA) if uA is not None else None
        lb = self.bias_term(lA) if lA is not None else None
        ub = self.bias_term(uA) if uA is not None else None
        return [(lA_in, uA_in)], lb, ub


def sum_out(t: Tensor) -> Tensor:
    """Sum a (B, S, *shape) tensor over the shape dims -> (B, S)."""
    return t.reshape(t.shape[0], t.shape[1], -1).sum(-1)
