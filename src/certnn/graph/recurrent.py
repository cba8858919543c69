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

Embeddings: tokens are discrete, so certnn certifies over the *embedded* sequence. Import with
``from_torch(model, (T, E), embedded=True)``: the model's first nn.Embedding (applied to the model input)
becomes the identity and the IR input is the (T, E) sequence of embeddings; build ball centres with
:func:`embed_tokens`. Without ``embedded=True`` an nn.Embedding raises ModelImportError saying so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ModelImportError, UnsupportedOpError
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.product import SigmoidMul, SigmoidTanhMul
from ..ops.shape import Add, Concat, Permute, Reshape, Slice
from .gru_update import gru_update
from .ir import GraphBuilder

RECURRENT_LAYERS: tuple[type, ...] = (nn.RNN, nn.LSTM, nn.GRU)
RECURRENT_CELLS: tuple[type, ...] = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)
RECURRENT_SUPPORTED = ["nn.RNN(tanh|relu)", "nn.LSTM", "nn.GRU", "nn.RNNCell", "nn.LSTMCell", "nn.GRUCell",
                       "nn.Embedding (with embedded=True)", "out[:, t]", "out.mean(1)", "h_n[-1]", "(h, c)"]

NOT_HANDLED = object()


# ---------------------------------------------------------------- virtual values

@dataclass
class Seq:
    """A sequence of per-step nodes, each of shape (F,); torch layout (B, T, F) or (T, B, F)."""

    steps: list[str]
    time_major: bool
    _node: str | None = field(default=None, repr=False)

    def node(self, b: GraphBuilder) -> str:
        """The sequence as one IR node of shape (T, F) (built once)."""
        if self._node is None:
            rows = [b.add(Reshape(b.shape(s), (1,) + b.shape(s)), [s]) for s in self.steps]
            self._node = rows[0] if len(rows) == 1 else b.add(Concat(0, (1,) * len(rows)), rows)
        return self._node


@dataclass
class Stacked:
    """h_n / c_n of a recurrent layer: torch shape (L*D, B, H); items are (H,) nodes."""

    items: list[str]


@dataclass
class TimeMajor:
    """A node whose IR value is (B, T, ...) while torch's tensor is (T, B, ...)."""

    name: str


@dataclass
class Zeros:
    """A zero tensor; `shape` is torch's shape with None at the batch position."""

    shape: tuple


class BatchSize:
    """x.size(0) / x.shape[0] of a traced input."""


@dataclass
class ShapeOf:
    name: str


BATCH = BatchSize()


def is_virtual(v) -> bool:
    return isinstance(v, (Seq, Stacked, TimeMajor, Zeros, BatchSize, ShapeOf))


def materialize(b: GraphBuilder, v, where: str, what: str):
    """A value for the generic converters: a Seq in batch-first layout becomes its (T, F) node; other
    virtual values cannot be used there and raise a clear error."""
    if isinstance(v, Seq) and not v.time_major:
        return v.node(b)
    if isinstance(v, (list, tuple)):
        return type(v)(materialize(b, a, where, what) for a in v)
    if isinstance(v, (Seq, TimeMajor)):
        raise UnsupportedOpError(f"{what} on a time-major tensor (T, B, ...)", RECURRENT_SUPPORTED, where=where,
                                 hint="index a time step (out[-1]), pool over dim 0, or transpose(0, 1) first")
    if isinstance(v, Stacked):
        raise UnsupportedOpError(f"{what} on a stacked recurrent state (h_n of shape (L*D, B, H))",
                                 RECURRENT_SUPPORTED, where=where, hint="index a layer first: h_n[-1]")
    if isinstance(v, Zeros):
        raise UnsupportedOpError(f"{what} on a zero tensor", RECURRENT_SUPPORTED, where=where,
                                 hint="zeros are supported as initial states of recurrent layers and cells")
    if isinstance(v, (BatchSize, ShapeOf)):
        raise UnsupportedOpError(f"{what} using the batch size", RECURRENT_SUPPORTED, where=where,
                                 hint="use x.flatten(1) or x.view(x.size(0), -1)")
    return v


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


# ---------------------------------------------------------------- unrolling

def _w(b: GraphBuilder, m: nn.Module, name: str) -> Tensor | None:
    """A weight of a recurrent layer, detached unless the graph is built with keep_grad=True."""
    t = getattr(m, name, None)
    if t is None:
        return None
    return t if getattr(b, "options", {}).get("keep_grad") else t.detach()


def _slice(b: GraphBuilder, x: str, lo: int, hi: int) -> str:
    return b.add(Slice(b.shape(x), (slice(lo, hi),)), [x])


def _mode(m: nn.Module) -> str:
    if isinstance(m, (nn.LSTM, nn.LSTMCell)):
        return "lstm"
    if isinstance(m, (nn.GRU, nn.GRUCell)):
        return "gru"
    nl = getattr(m, "nonlinearity", "tanh")
    if nl not in ("tanh", "relu"):
        raise UnsupportedOpError(f"RNN nonlinearity {nl!r}", ["tanh", "relu"])
    return "rnn_" + nl


def _input_bias(mode: str, b_ih: Tensor | None, b_hh: Tensor | None, H: int) -> Tensor | None:
    if b_ih is None:
        return None
    if mode == "gru":  # b_hn stays inside r * (W_hn h + b_hn)
        return b_ih + torch.cat([b_hh[:2 * H], torch.zeros_like(b_hh[2 * H:])])
    return b_ih + b_hh


def _step(b: GraphBuilder, mode: str, xp: str, h: str | None, c: str | None, W_hh: Tensor,
          b_hh: Tensor | None, H: int) -> tuple[str, str | None]:
    """One cell step from the input projection xp (G*H,) (input biases folded in) and the previous
    state (None = zero). Returns (h_t, c_t) (c_t None except for LSTM)."""
    if mode.startswith("rnn"):
        pre = xp if h is None else b.add(Add(), [xp, b.add(Linear(W_hh, None), [h])])
        return b.add(Activation(mode[4:]), [pre]), None
    if mode == "lstm":
        pre = xp if h is None else b.add(Add(), [xp, b.add(Linear(W_hh, None), [h])])
        i, f, g, o = (_slice(b, pre, k * H, (k + 1) * H) for k in range(4))
        ig = b.add(SigmoidTanhMul(), [i, g])
        c_new = ig if c is None else b.add(Add(), [b.add(SigmoidMul(), [f, c]), ig])
        return b.add(SigmoidTanhMul(), [o, c_new]), c_new
    # GRU
    b_hn = None if b_hh is None else b_hh[2 * H:]
    xr, xz, xn = (_slice(b, xp, k * H, (k + 1) * H) for k in range(3))
    if h is None:
        r_pre, z_pre = xr, xz
        if b_hn is None:
            n_pre = xn
        else:  # r * (0 + b_hn) = b_hn * sigmoid(r)
            rb = b.add(ElementwiseAffine(b_hn, None), [b.add(Activation("sigmoid"), [r_pre])])
            n_pre = b.add(Add(), [xn, rb])
    else:
        hb = None if b_hh is None else torch.cat([torch.zeros_like(b_hh[:2 * H]), b_hn])
        hp = b.add(Linear(W_hh, hb), [h])
        hr, hz, hn = (_slice(b, hp, k * H, (k + 1) * H) for k in range(3))
        r_pre = b.add(Add(), [xr, hr])
        z_pre = b.add(Add(), [xz, hz])
        n_pre = b.add(Add(), [xn, b.add(SigmoidMul(), [r_pre, hn])])
    return gru_update(b, z_pre, n_pre, h), None


def _state_node(v, where: str, what: str) -> str | None:
    if v is None or isinstance(v, Zeros):
        return None
    if isinstance(v, str):
        return v
    raise UnsupportedOpError(f"{what} of type {type(v).__name__}", RECURRENT_SUPPORTED, where=where,
                             hint="pass a layer output or a zero state")


def convert_cell(b: GraphBuilder, m: nn.Module, args: list, where: str):
    """nn.RNNCell / nn.LSTMCell / nn.GRUCell called as cell(x) or cell(x, h) or cell(x, (h, c))."""
    mode = _mode(m)
    x = args[0]
    if not isinstance(x, str):
        x = materialize(b, x, where, f"{type(m).__name__} input")
    if b.shape(x) != (m.input_size,):
        raise ModelImportError(f"{type(m).__name__} at {where} expects inputs of shape ({m.input_size},) per "
                               f"sample, got {b.shape(x)}")
    H = m.hidden_size
    h = c = None
    if len(args) > 1 and args[1] is not None:
        st = args[1]
        if mode == "lstm":
            if not isinstance(st, (tuple, list)) or len(st) != 2:
                raise ModelImportError(f"LSTMCell at {where}: the state must be a pair (h, c)")
            h, c = _state_node(st[0], where, "LSTMCell h"), _state_node(st[1], where, "LSTMCell c")
            if h is None and c is not None:
                h = None  # zero h with given c is fine: no recurrent matmul
        else:
            h = _state_node(st, where, f"{type(m).__name__} state")
    bias = _input_bias(mode, _w(b, m, "bias_ih"), _w(b, m, "bias_hh"), H)
    xp = b.add(Linear(_w(b, m, "weight_ih"), bias), [x])
    h_new, c_new = _step(b, mode, xp, h, c, _w(b, m, "weight_hh"), _w(b, m, "bias_hh"), H)
    if mode == "lstm":
        return (h_new, c_new)
    return h_new


def _sequence_input(b: GraphBuilder, m: nn.Module, x, where: str) -> tuple[str | None, list[str] | None]:
    """(node (T, d), None) or (None, per-step nodes) for the layer input x in its torch layout."""
    bf = m.batch_first
    if isinstance(x, Seq):
        if x.time_major == bf:
            raise ModelImportError(f"{type(m).__name__} at {where}: batch_first={bf} but its input sequence is "
                                   f"{'time' if x.time_major else 'batch'}-major")
        return None, list(x.steps)
    if isinstance(x, TimeMajor):
        if bf:
            raise ModelImportError(f"{type(m).__name__}(batch_first=True) at {where} gets a time-major tensor")
        name = x.name
    elif isinstance(x, str):
        if not bf:
            raise ModelImportError(
                f"{type(m).__name__}(batch_first=False) at {where} is applied to a batch-first tensor. If the "
                "model's input is time-major (T, B, d), import with from_torch(..., time_major=True); else "
                "permute(1, 0, 2) the input first, as torch would need")
        name = x
    else:
        raise UnsupportedOpError(f"{type(m).__name__} input of type {type(x).__name__}", RECURRENT_SUPPORTED,
                                 where=where)
    shape = b.shape(name)
    if len(shape) != 2:
        raise ModelImportError(f"{type(m).__name__} at {where} expects a sequence (T, {m.input_size}) per sample "
                               f"(unbatched or 4-D inputs are not supported), got {shape}")
    if shape[1] != m.input_size:
        raise ModelImportError(f"{type(m).__name__} at {where}: input_size={m.input_size} but the sequence has "
                               f"{shape[1]} features")
    return name, None


def convert_layer(b: GraphBuilder, m: nn.Module, args: list, where: str):
    """nn.RNN / nn.LSTM / nn.GRU called as layer(x) or layer(x, h0) with a zero h0; returns torch's
    (out, h_n) or (out, (h_n, c_n)) as virtual values."""
    mode = _mode(m)
    if getattr(m, "proj_size", 0):
        raise UnsupportedOpError("nn.LSTM with proj_size > 0", RECURRENT_SUPPORTED, where=where)
    if len(args) > 1 and args[1] is not None:
        st = args[1]
        parts = st if isinstance(st, (tuple, list)) else [st]
        if not all(isinstance(p, Zeros) for p in parts):
            raise UnsupportedOpError(f"{type(m).__name__} with a non-zero initial state", RECURRENT_SUPPORTED,
                                     where=where, hint="the initial state must be zero (omit it)")
    node, steps = _sequence_input(b, m, args[0], where)
    H, D, L = m.hidden_size, 2 if m.bidirectional else 1, m.num_layers
    T = b.shape(node)[0] if node is not None else len(steps)
    h_n: list[str] = []
    c_n: list[str] = []
    for layer in range(L):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            W_ih, W_hh = _w(b, m, "weight_ih" + sfx), _w(b, m, "weight_hh" + sfx)
            b_hh = _w(b, m, "bias_hh" + sfx)
            bias = _input_bias(mode, _w(b, m, "bias_ih" + sfx), b_hh, H)
            if node is not None:
                xp_all = b.add(Linear(W_ih, bias), [node])
                xps = [b.add(Slice(b.shape(xp_all), (t,)), [xp_all]) for t in range(T)]
            else:
                xps = [None] * T
            hs: list[str | None] = [None] * T
            h = c = None
            order = range(T - 1, -1, -1) if d else range(T)
            for t in order:
                xp = xps[t] if node is not None else b.add(Linear(W_ih, bias), [steps[t]])
                h, c = _step(b, mode, xp, h, c, W_hh, b_hh, H)
                hs[t] = h
            h_n.append(h)
            if c is not None:
                c_n.append(c)
            outs.append(hs)
        if D == 1:
            steps = outs[0]
        else:
            steps = [b.add(Concat(0, (H, H)), [outs[0][t], outs[1][t]]) for t in range(T)]
        node = None
    out = Seq(steps, time_major=not m.batch_first)
    if mode == "lstm":
        return (out, (Stacked(h_n), Stacked(c_n)))
    return (out, Stacked(h_n))


# ---------------------------------------------------------------- indexing, pooling, layout

def _norm_index(idx) -> tuple:
    return idx if isinstance(idx, tuple) else (idx,)


def _apply_rest(b: GraphBuilder, name: str, rest: tuple) -> str:
    if all(r == slice(None) for r in rest) or not rest:
        return name
    return b.add(Slice(b.shape(name), rest), [name])


def getitem(b: GraphBuilder, obj, idx, where: str):
    if isinstance(obj, (tuple, list)):
        return obj[idx]
    if isinstance(obj, ShapeOf):
        if idx == 0:
            return BATCH
        if isinstance(idx, int):
            return b.shape(obj.name)[idx - 1 if idx > 0 else idx]
        raise UnsupportedOpError(f"x.shape[{idx!r}]", RECURRENT_SUPPORTED, where=where)
    if isinstance(obj, Stacked):
        idx = _norm_index(idx)
        first, rest = idx[0], idx[1:]
        if rest and rest[0] != slice(None):
            raise UnsupportedOpError("indexing h_n along the batch dimension", RECURRENT_SUPPORTED, where=where)
        rest = rest[1:]
        if isinstance(first, int):
            return _apply_rest(b, obj.items[first], rest)
        if isinstance(first, slice) and not rest:
            return Stacked(obj.items[first])
        raise UnsupportedOpError(f"indexing h_n with {idx!r}", RECURRENT_SUPPORTED, where=where)
    if isinstance(obj, Seq):
        idx = _norm_index(idx)
        if obj.time_major:
            t, rest = idx[0], idx[1:]
            if rest and rest[0] != slice(None):
                raise UnsupportedOpError("indexing a time-major output along the batch", RECURRENT_SUPPORTED,
                                         where=where)
            rest = rest[1:]
        else:
            if idx[0] != slice(None):
                raise UnsupportedOpError("indexing along the batch dimension", RECURRENT_SUPPORTED, where=where)
            t, rest = (idx[1] if len(idx) > 1 else slice(None)), idx[2:]
        if isinstance(t, int):
            return _apply_rest(b, obj.steps[t], rest)
        if isinstance(t, slice):
            return Seq([_apply_rest(b, s, rest) for s in obj.steps[t]], obj.time_major)
        raise UnsupportedOpError(f"indexing a recurrent output with {idx!r}", RECURRENT_SUPPORTED, where=where)
    if isinstance(obj, TimeMajor):
        idx = _norm_index(idx)
        t, rest = idx[0], idx[1:]
        if rest and rest[0] != slice(None):
            raise UnsupportedOpError("indexing a time-major tensor along the batch", RECURRENT_SUPPORTED,
                                     where=where)
        rest = rest[1:]
        if not isinstance(t, (int, slice)) or not all(isinstance(r, (int, slice)) for r in rest):
            raise UnsupportedOpError(f"indexing with {idx!r}", ["basic slices and integers"], where=where)
        out = b.add(Slice(b.shape(obj.name), (t,) + rest), [obj.name])
        return out if isinstance(t, int) else TimeMajor(out)
    return NOT_HANDLED


def reduce_dim(b: GraphBuilder, x, dim, keepdim: bool, mean: bool, where: str):
    """sum / mean over one torch dim of x (a node, Seq or TimeMajor), as Permute + Linear + Reshape."""
    if isinstance(dim, (tuple, list)):
        if len(dim) != 1:
            raise UnsupportedOpError("reduction over several dims", ["sum/mean over one dim"], where=where)
        dim = dim[0]
    if dim is None:
        raise UnsupportedOpError("reduction over all dims (incl. the batch)", ["sum/mean over one dim"], where=where)
    wrap = False
    if isinstance(x, Seq):
        x = x.node(b) if not x.time_major else TimeMajor(x.node(b))
    if isinstance(x, TimeMajor):
        nd = len(b.shape(x.name)) + 1
        dim = dim % nd
        if dim == 1:
            raise UnsupportedOpError("reduction over the batch dimension", ["sum/mean over per-sample dims"],
                                     where=where)
        k = 0 if dim == 0 else dim - 1
        wrap = dim != 0
        name = x.name
    elif isinstance(x, str):
        nd = len(b.shape(x)) + 1
        dim = dim % nd
        if dim == 0:
            raise UnsupportedOpError("reduction over the batch dimension", ["sum/mean over per-sample dims"],
                                     where=where)
        k, name = dim - 1, x
    else:
        return NOT_HANDLED
    shape = b.shape(name)
    n = shape[k]
    if len(shape) == 1 and not keepdim:
        raise UnsupportedOpError("reduction to a scalar per sample", ["sum/mean keeping a feature dim"], where=where)
    perm = [i for i in range(len(shape)) if i != k] + [k]
    y = name if perm == list(range(len(shape))) else b.add(Permute(tuple(perm)), [name])
    w = torch.full((1, n), (1.0 / n) if mean else 1.0, dtype=b.dtype)
    y = b.add(Linear(w, None), [y])
    kept = tuple(s for i, s in enumerate(shape) if i != k)
    out_shape = shape[:k] + (1,) + shape[k + 1:] if keepdim else kept
    y = b.add(Reshape(b.shape(y), out_shape), [y])
    return TimeMajor(y) if wrap else y


def swap01(b: GraphBuilder, x, perm: list[int], where: str):
    """permute/transpose that swaps torch dims 0 and 1 (batch <-> time) and keeps the rest."""
    nd = len(perm)
    if sorted(perm) != list(range(nd)) or perm[:2] != [1, 0] or perm[2:] != list(range(2, nd)):
        return NOT_HANDLED
    if isinstance(x, TimeMajor):
        return x.name
    if isinstance(x, Seq):
        return Seq(x.steps, not x.time_major)
    if isinstance(x, Stacked):  # (L*D, B, H) -> (B, L*D, H)
        return Seq(x.items, False).node(b)
    if isinstance(x, str):
        return TimeMajor(x)
    return NOT_HANDLED


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
    import operator
    if kind == "call_module":
        m = target
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
    if kind == "call_function":
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
    if kind == "call_method":
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
    return NOT_HANDLED
