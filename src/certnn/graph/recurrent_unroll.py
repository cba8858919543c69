"""Unrolling nn.RNN / nn.LSTM / nn.GRU and their cells over time into batched IR ops (the node pattern is
in graph/recurrent.py's docstring); ``cell_step`` and ``input_bias`` are shared with the ONNX recurrent
ops (graph/onnx_recurrent.py)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ModelImportError, UnsupportedOpError
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.product import SigmoidMul, SigmoidTanhMul
from ..ops.shape import Add, Concat, Slice
from .gru_update import gru_update
from .ir import GraphBuilder
from .recurrent_values import RECURRENT_SUPPORTED, Seq, Stacked, TimeMajor, Zeros, materialize


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


def input_bias(mode: str, b_ih: Tensor | None, b_hh: Tensor | None, H: int) -> Tensor | None:
    """The input projection's bias: b_ih + b_hh (GRU: without b_hn, which stays inside the reset product)."""
    if b_ih is None:
        return None
    if mode == "gru":  # b_hn stays inside r * (W_hn h + b_hn)
        return b_ih + torch.cat([b_hh[:2 * H], torch.zeros_like(b_hh[2 * H:])])
    return b_ih + b_hh


def cell_step(b: GraphBuilder, mode: str, xp: str, h: str | None, c: str | None, W_hh: Tensor,
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
    bias = input_bias(mode, _w(b, m, "bias_ih"), _w(b, m, "bias_hh"), H)
    xp = b.add(Linear(_w(b, m, "weight_ih"), bias), [x])
    h_new, c_new = cell_step(b, mode, xp, h, c, _w(b, m, "weight_hh"), _w(b, m, "bias_hh"), H)
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
            bias = input_bias(mode, _w(b, m, "bias_ih" + sfx), b_hh, H)
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
                h, c = cell_step(b, mode, xp, h, c, W_hh, b_hh, H)
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
