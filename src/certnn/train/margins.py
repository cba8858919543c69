"""Differentiable lower bounds of the classification margins, for verified robust training.

For a batch x (B, *in) with labels y and the spec C with rows e_y - e_j (j != y, shape (B, K-1, K)),
:func:`margin_lower_bounds` returns m (B, K-1) with m_j <= f_y(x') - f_j(x') for every x' in the input set,
computed on a graph whose weights are the module's parameters (``from_torch(..., keep_grad=True)``), so
``m`` is differentiable with respect to them:

| method    | m                                                                                   |
|-----------|-------------------------------------------------------------------------------------|
| ibp       | interval bounds of C f (Gowal et al. 2018): C applied to the output box, center/radius form |
| crown-ibp | beta * m_CROWN-IBP + (1 - beta) * m_IBP (Zhang et al. ICLR 2020): CROWN's backward pass from the margins with IBP intermediate bounds, mixed with the IBP margins; beta = 0 skips the backward pass |
| certrnn   | the forward zonotope pass of Cert-RNN (Du et al. CCS 2021) on the margins, intersected with IBP |

The graph and the engine's run state (RunContext, ZonotopeRun: intermediate bounds, relaxation caches,
symbol table) are built anew on every call: nothing survives from one training step to the next, and an
optimizer's in-place parameter updates never meet a stale derived tensor (e.g. an RNN's b_ih + b_hh).

Soundness: a convex combination of two lower bounds is a lower bound, so every m above is one (in the
arithmetic it is computed in; training runs in the parameters' dtype, usually float32, where matrix
products are not rounded outwards). These bounds only train; certificates come from the float64
certification path (`certnn.Certifier`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..certify.targets import margin_matrix
from ..engine.backward import backward_bounds
from ..engine.context import RunContext
from ..engine.interval import interval_pass, interval_spec
from ..engine.methods import get_method
from ..errors import DataError, ModelImportError
from ..graph.from_torch import from_torch
from ..graph.ir import Graph
from ..graph.recurrent import first_embedding
from ..specs.lp import LpBall

TRAIN_METHODS = ("ibp", "crown-ibp", "certrnn")


def param_dtype(model: nn.Module) -> torch.dtype:
    p = next(iter(model.parameters()), None)
    return p.dtype if p is not None else torch.float32


def training_graph(model: nn.Module, input_shape: tuple[int, ...], embedded: bool = False) -> Graph:
    """The IR of `model` for one training step: weights are the parameters (keep_grad), in their dtype,
    without the import parity check (the module is the same object; parity is checked at certification)."""
    return from_torch(model, tuple(input_shape), dtype=param_dtype(model), check=False, embedded=embedded,
                      keep_grad=True)


def ball_center(model: nn.Module, x: Tensor, embedded: bool = False) -> Tensor:
    """The ball's center in the graph's input space: x itself, or for embedded=True the embedding of the
    integer tokens x (B, T) by the model's first nn.Embedding (differentiable in the embedding table)."""
    if not embedded:
        return x.to(param_dtype(model))
    emb = first_embedding(model)
    if emb is None:
        raise ModelImportError("embedded=True but the model has no nn.Embedding")
    if torch.is_floating_point(x):
        raise DataError("embedded=True: x must hold integer tokens (B, T)")
    return emb(x.long()).to(param_dtype(model))


def margin_lower_bounds(model: nn.Module, x: Tensor, y: Tensor, input_shape: tuple[int, ...], method: str,
                        eps: float, norm: str = "inf", beta: float = 1.0, scale: Tensor | None = None,
                        clip: tuple[float, float] | None = None, embedded: bool = False) -> Tensor:
    """Lower bounds m (B, K-1) of f_y - f_j (j != y, in class order) over the Lp ball of radius eps around
    each x (∩ clip box; `scale` (broadcastable to one input) weights or freezes input features, e.g. the
    frames of specs.frames.frame_scale), differentiable with respect to the model's parameters.

    method: 'ibp', 'crown-ibp' (beta mixes CROWN-IBP and IBP, see the module docstring) or 'certrnn'.
    """
    if method not in TRAIN_METHODS:
        raise DataError(f"method {method!r} is not a training method; choose one of {', '.join(TRAIN_METHODS)}")
    graph = training_graph(model, input_shape, embedded)
    center = ball_center(model, x, embedded)
    if tuple(center.shape[1:]) != graph.input_shape:
        raise DataError(f"inputs have shape {tuple(center.shape[1:])} per sample; the model expects "
                        f"{graph.input_shape}")
    K = 1
    for s in graph.output_shape:
        K *= s
    y = torch.as_tensor(y).long().reshape(-1)
    C = margin_matrix(y, K, None, center.dtype).to(center.device)
    spec = LpBall.make(center, float(eps), norm, clip, scale)
    ctx = RunContext(graph, spec, get_method(method))
    if method == "certrnn":
        from ..engine.zonotope import zonotope_bounds

        lo, _ = zonotope_bounds(ctx, C, lower=True, upper=False)
        return lo
    boxes = interval_pass(ctx)
    m_ibp, _ = interval_spec(boxes[graph.output_name], C)
    if method == "ibp" or beta <= 0.0:
        return m_ibp
    # CROWN-IBP: the IBP boxes are the intermediate bounds of the backward pass from the margins
    ctx.bounds.update(boxes)
    m_crown, _ = backward_bounds(ctx, graph.output_name, C, lower=True, upper=False)
    if beta >= 1.0:
        return m_crown
    return beta * m_crown + (1.0 - beta) * m_ibp


def robust_cross_entropy(margins: Tensor) -> Tensor:
    """Cross-entropy on the worst-case logits (Gowal et al. 2018; Zhang et al. 2020): the logit vector
    (0 for the true class, -m_j for class j) with the true class as label, i.e. the mean over the batch
    of log(1 + sum_j exp(-m_j)). It upper-bounds the clean cross-entropy whenever m_j <= f_y - f_j, with
    equality when the bounds are the exact margins (eps = 0)."""
    z = torch.cat([margins.new_zeros(margins.shape[0], 1), -margins], dim=1)
    return torch.logsumexp(z, dim=1).mean()


__all__ = ["TRAIN_METHODS", "margin_lower_bounds", "robust_cross_entropy", "training_graph", "ball_center"]
