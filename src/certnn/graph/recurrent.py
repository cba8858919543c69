"""Recurrent layers to the certnn IR: nn.RNN / nn.LSTM / nn.GRU and their cells, unrolled over time.

The IR input of a sequence model is (T, d) per sample (batch first: (B, T, d)); a model whose forward
takes time-major input (T, B, d) is imported with ``from_torch(..., time_major=True)`` and the IR input
is still (T, d) per sample. Unrolling emits, per layer, direction and time step t, only batched tensor
ops (no per-neuron code):

    layer 0:  xp = Linear(W_ih, b)(x)            one node for all steps and all gates, (T, G*H)
              xp_t = Slice(xp, t)                 (G*H,)
    layer>0:  xp_t = Linear(W_ih, b)(h^{l-1}_t)   per step (the previous layer's outputs are per step)
    all:      pre_t = xp_t + Linear(W_hh)(h_{t-1})   (G*H,), gate pre-activations by Slice

with G = 1 (RNN), 4 (LSTM, PyTorch's gate order i, f, g, o) or 3 (GRU, r, z, n), and b = b_ih + b_hh
(for GRU the n-gate's b_hn stays inside r * (W_hn h + b_hn)). The nonlinear parts are

    RNN:   h_t = tanh(pre_t) or relu(pre_t)                                     (Activation)
    LSTM:  c_t = SigmoidMul(f, c_{t-1}) + SigmoidTanhMul(i, g)                   (sigma(f) c + sigma(i) tanh(g))
           h_t = SigmoidTanhMul(o, c_t)                                          (sigma(o) tanh(c_t))
    GRU:   n_pre = xp_n + SigmoidMul(r, W_hn h_{t-1} + b_hn)                     (x_n + sigma(r) (U_n h + b_hn))
           h_t = Mul(1 - sigmoid(z), tanh(n_pre)) + Mul(sigmoid(z), h_{t-1})    ((1 - sigma(z)) tanh(n) + sigma(z) h)

(graph/gru_update.py: sigma(z) relaxed once for both uses; at t = 0 SigmoidTanhMul(-z, n_pre), using
1 - sigma(z) = sigma(-z)). A zero initial state (the default, or
``x.new_zeros(...)``/``torch.zeros_like``) drops the terms it multiplies, so step 0 has no recurrent
matmul. Learned or data-dependent initial states are rejected.

What torch returns is kept as *virtual values* while the fx graph is converted, so that users' code on
them works as written and nothing is built that the output does not use:

    Seq       the output sequence ``out`` (per-step nodes; batch- or time-major as the layer was)
    Stacked   ``h_n`` / ``c_n``: torch shape (L*D, B, H), so ``h_n[-1]``, ``h_n[-2:]``, ``h_n.squeeze(0)``
    TimeMajor a node whose torch tensor is (T, B, ...) while the IR keeps (B, T, ...)
    Zeros     a zero tensor (an initial state)
    BatchSize ``x.size(0)`` / ``x.shape[0]`` (only as the batch entry of view/reshape/new_zeros)

The pieces: ``recurrent_values`` (the virtual values), ``recurrent_unroll`` (layers and cells),
``recurrent_views`` (indexing, pooling, layout); this module has the embeddings and ``dispatch``, which
the fx converter (graph/from_torch.py) asks first for every call.

Embeddings: tokens are discrete, so certnn certifies over the *embedded* sequence. Import with
``from_torch(model, (T, E), embedded=True)``: the model's first nn.Embedding (applied to the model input)
becomes the identity and the IR input is the (T, E) sequence of embeddings; build ball centres with
:func:`embed_tokens`. Without ``embedded=True`` an nn.Embedding raises ModelImportError saying so.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ModelImportError, UnsupportedOpError
from .ir import GraphBuilder
from .recurrent_unroll import convert_cell, convert_layer
from .recurrent_values import (BATCH, NOT_HANDLED, RECURRENT_CELLS, RECURRENT_LAYERS, RECURRENT_SUPPORTED,  # noqa: F401
                               Seq, ShapeOf, Stacked, TimeMajor, Zeros, is_virtual, materialize)
from .recurrent_views import getitem, reduce_dim, swap01

# ---------------------------------------------------------------- embeddings

def first_embedding(module: nn.Module) -> nn.Embedding | None:
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            return m
    return None


def embed_tokens(module: nn.Module, tokens: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """The embedded sequence (B, T, E) of integer tokens (B, T) by the model's first nn.Embedding: the
    centre of a ball for a graph imported with ``embedded=True``."""
    emb = first_embedding(module)
    if emb is None:
        raise ModelImportError("the model has no nn.Embedding")
    with torch.no_grad():
        return emb(tokens.long()).to(dtype)


def embedding_module(b: GraphBuilder, m: nn.Embedding, x: str, where: str) -> str:
    opts = getattr(b, "options", {})
    if not opts.get("embedded"):
        raise ModelImportError(
            f"nn.Embedding at {where or '<root>'}: tokens are discrete, certnn certifies over the embedded "
            "sequence. Import with from_torch(model, (T, embedding_dim), embedded=True) and build the ball's "
            "centre with certnn.graph.recurrent.embed_tokens(model, tokens)")
    if x != b.input_name:
        raise ModelImportError(f"nn.Embedding at {where or '<root>'} is not applied to the model input; with "
                               "embedded=True only the first embedding (on the input tokens) is split off")
    shape = b.shape(x)
    if len(shape) != 2 or shape[1] != m.embedding_dim:
        raise ModelImportError(f"embedded=True: the IR input must be (T, {m.embedding_dim}) (the embedded "
                               f"sequence), got {shape}")
    return x


def _perm_of(op: str, args: list, nd: int) -> list[int] | None:
    if op == "transpose":
        d0, d1 = args[1] % nd, args[2] % nd
        p = list(range(nd))
        p[d0], p[d1] = p[d1], p[d0]
        return p
    dims = args[1:]
    dims = list(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else list(dims)
    return [d % nd for d in dims]


def _ndim(b: GraphBuilder, x) -> int | None:
    if isinstance(x, str):
        return len(b.shape(x)) + 1
    if isinstance(x, TimeMajor):
        return len(b.shape(x.name)) + 1
    if isinstance(x, Seq):
        return 3
    if isinstance(x, Stacked):
        return 3
    return None


# ---------------------------------------------------------------- dispatch from the fx converter

_TIME_MAJOR_SAFE = (nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.Dropout, nn.Identity)


def dispatch(b: GraphBuilder, kind: str, target: Any, args: list, kwargs: dict, where: str, convert_module):
    """Convert an fx node that involves recurrent layers or virtual values; NOT_HANDLED otherwise.

    kind: fx op ('call_module' with target the module, 'call_function', 'call_method')."""
    if kind == "call_module":
        return _dispatch_module(b, target, args, where, convert_module)
    if kind == "call_function":
        return _dispatch_function(b, target, args, kwargs, where)
    if kind == "call_method":
        return _dispatch_method(b, target, args, kwargs, where)
    return NOT_HANDLED


def _dispatch_module(b: GraphBuilder, m: nn.Module, args: list, where: str, convert_module):
    if isinstance(m, RECURRENT_LAYERS):
        return convert_layer(b, m, args, where)
    if isinstance(m, RECURRENT_CELLS):
        return convert_cell(b, m, args, where)
    if isinstance(m, nn.Embedding):
        if len(args) != 1 or not isinstance(args[0], str):
            raise ModelImportError(f"nn.Embedding at {where} must be applied to the model input")
        return embedding_module(b, m, args[0], where)
    if len(args) == 1 and isinstance(args[0], TimeMajor) and isinstance(m, _TIME_MAJOR_SAFE):
        return TimeMajor(convert_module(b, m, args[0].name, where))
    return NOT_HANDLED


def _dispatch_function(b: GraphBuilder, target: Any, args: list, kwargs: dict, where: str):
    if target is operator.getitem:
        return getitem(b, args[0], args[1], where)
    if target is getattr and len(args) == 2 and args[1] == "shape" and isinstance(args[0], str):
        return ShapeOf(args[0])
    if target in (torch.mean, torch.sum) and (len(args) > 1 or "dim" in kwargs):
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        return reduce_dim(b, args[0], dim, bool(keep), target is torch.mean, where)
    if target is torch.zeros_like and isinstance(args[0], str):
        return Zeros((None,) + b.shape(args[0]))
    if target is torch.zeros_like and isinstance(args[0], Zeros):
        return args[0]
    if target is torch.transpose and _ndim(b, args[0]):
        p = _perm_of("transpose", list(args), _ndim(b, args[0]))
        return swap01(b, args[0], p, where)
    return NOT_HANDLED


def _dispatch_method(b: GraphBuilder, target: str, args: list, kwargs: dict, where: str):
    x = args[0] if args else None
    if target == "size":
        if len(args) > 1 and args[1] == 0 or kwargs.get("dim") == 0:
            return BATCH
        if len(args) > 1 and isinstance(args[1], int) and isinstance(x, str):
            return b.shape(x)[args[1] - 1 if args[1] > 0 else args[1]]
        return NOT_HANDLED
    if target in ("new_zeros",):
        shape = args[1:]
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
        if BATCH not in shape:
            raise UnsupportedOpError("new_zeros without the batch size", RECURRENT_SUPPORTED, where=where)
        return Zeros(tuple(None if s is BATCH else s for s in shape))
    if target in ("mean", "sum") and x is not None and (is_virtual(x) or len(args) > 1 or "dim" in kwargs):
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        return reduce_dim(b, x, dim, bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False)),
                          target == "mean", where)
    if target in ("permute", "transpose") and _ndim(b, x):
        p = _perm_of(target, list(args), _ndim(b, x))
        return swap01(b, x, p, where)
    if target == "squeeze" and isinstance(x, Stacked):
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if dim == 0 and len(x.items) == 1:
            return x.items[0]
        raise UnsupportedOpError("squeeze of h_n with several layers/directions", RECURRENT_SUPPORTED,
                                 where=where, hint="index a layer: h_n[-1]")
    if target in ("contiguous", "clone", "detach", "float", "double") and is_virtual(x):
        return x
    return NOT_HANDLED
