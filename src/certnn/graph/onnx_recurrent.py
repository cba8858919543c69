"""ONNX ``RNN``, ``LSTM`` and ``GRU`` ops, unrolled into the same IR as ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

The converter reorders ONNX's gates into PyTorch's order (LSTM: ONNX ``i, o, f, c`` -> ``i, f, g, o``;
GRU: ``z, r, h`` -> ``r, z, n``) and, for the common case (default activations, no clip, no peepholes,
zero or computed initial states, GRU with ``linear_before_reset=1``), emits exactly the nodes
:mod:`certnn.graph.recurrent` emits for the torch module: one ``Linear`` over the whole sequence for the
input projection, one ``Slice`` per step, ``Linear(R)`` for the recurrence and the fused products
``SigmoidTanhMul`` / ``SigmoidMul`` on the gates' pre-activations. A model exported by
``torch.onnx.export`` therefore gets the graph of the module it came from, and the same certified radii.

Everything else the ONNX specification allows is supported too, with the general step below (still only
batched tensor ops):

* ``direction`` forward / reverse / bidirectional, ``layout`` 0 (time-major ``[T, B, I]``) and 1
  (batch-first), ``hidden_size``; outputs ``Y``, ``Y_h`` (and ``Y_c``), each built only when used;
* ``activations`` with ``activation_alpha`` / ``activation_beta`` (consumed in order by the activations
  that take parameters): ``Sigmoid``, ``Tanh``, ``Relu``, ``LeakyRelu``, ``Affine``, ``ScaledTanh``,
  ``HardSigmoid``. A gate product F(a) * G(b) uses the fused plane relaxations when F is the sigmoid and G
  the tanh or the identity, and the general product ``Mul`` (McCormick planes) otherwise. ``Elu``,
  ``Softsign``, ``Softplus`` and ``ThresholdedRelu`` have no certnn relaxation: a clear error;
* ``clip`` (every gate's pre-activation bounded to [-clip, clip], as a ``hardtanh`` node; as onnxruntime
  does, an LSTM's cell state is not clipped before h);
* LSTM peepholes ``P`` (``P_i * c_{t-1}`` and ``P_f * c_{t-1}`` add to the i / f pre-activations,
  ``P_o * c_t`` to o's) and ``input_forget`` (f = 1 - i);
* GRU ``linear_before_reset`` 0 (``h = g(x W_h + (r * H_{t-1}) R_h + b)``) and 1 (PyTorch's);
* ``initial_h`` / ``initial_c`` as constants (zeros drop the terms they multiply) or as layer outputs;
* ``sequence_lens`` as a constant equal for every sample: steps past it are skipped (their ``Y`` rows are
  zero, ``Y_h`` is the last processed state, the reverse direction starts at the last valid step).

Soundness: every emitted node is an existing certnn op with its own sound rules; import parity against
onnxruntime checks the unrolling on random inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..ops.affine import Linear
from ..ops.shape import Concat, Reshape, Slice
from .onnx_importer import Importer, Val, variable
from .onnx_recurrent_step import _Act, _Unroller
from .onnx_registry import register_onnx
from .onnx_select import const_node
from .recurrent_unroll import cell_step, input_bias

#: ONNX gate blocks in PyTorch's order
_LSTM_ORDER = (0, 2, 3, 1)  # ONNX i, o, f, c -> i, f, g(c), o
_GRU_ORDER = (1, 0, 2)  # ONNX z, r, h -> r, z, n
_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
_DEFAULT_ACTS = {"RNN": ["Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
#: activations and how many of (alpha, beta) they take, with the ONNX defaults
_ACT_PARAMS = {"Sigmoid": (), "Tanh": (), "Relu": (), "LeakyRelu": (0.01,), "Affine": (1.0, 0.0),
               "ScaledTanh": (1.0, 1.0), "HardSigmoid": (0.2, 0.5)}
_NO_RELAXATION = ("Elu", "Softsign", "Softplus", "ThresholdedRelu")


def _reorder(a: np.ndarray, order: tuple[int, ...], H: int) -> np.ndarray:
    """Gate blocks of H rows of a (G*H, ...) array in the given order."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order], 0)


def _activations(imp: Importer, kind: str, attrs: dict, D: int) -> list[list[_Act]]:
    """Per direction, the activation list (f, g[, h])."""
    k = len(_DEFAULT_ACTS[kind])
    names = [a.decode() if isinstance(a, bytes) else str(a) for a in attrs.get("activations", [])]
    if not names:
        names = _DEFAULT_ACTS[kind] * D
    if len(names) != k * D:
        raise imp.error(f"{kind} has {len(names)} activations; {k} per direction ({k * D} in all) expected")
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    out = []
    for n in names:
        canon = next((c for c in list(_ACT_PARAMS) + list(_NO_RELAXATION) if c.lower() == n.lower()), n)
        if canon not in _ACT_PARAMS:
            raise imp.unsupported(f"{kind} activation {n!r}",
                                  hint=f"supported recurrent activations: {', '.join(_ACT_PARAMS)}")
        defaults = _ACT_PARAMS[canon]
        vals = []
        for j, d in enumerate(defaults):
            src = alphas if j == 0 else betas
            vals.append(float(src.pop(0)) if src else d)
        out.append(_Act(canon, tuple(vals)))
    acts = [out[d * k:(d + 1) * k] for d in range(D)]
    return acts


def _const(imp: Importer, v: Val | None, what: str) -> np.ndarray | None:
    if v is None:
        return None
    if not v.is_const:
        raise imp.unsupported(f"{imp.node.op_type} with a computed {what} (it must be a constant)")
    return np.asarray(v.const, dtype=np.float64)


def _state(imp: Importer, v: Val | None, D: int, H: int, layout: int, what: str) -> list:
    """Initial states per direction: None (zero), a constant (H,) vector, or a node (H,)."""
    if v is None:
        return [None] * D
    b = imp.b
    if v.is_const:
        a = np.asarray(v.const, dtype=np.float64)
        if a.ndim != 3:
            raise imp.error(f"{what} must have rank 3, got shape {a.shape}")
        a = a if layout == 0 else np.swapaxes(a, 0, 1)  # (D, B, H)
        if a.shape[0] != D or a.shape[2] != H or a.shape[1] < 1:
            raise imp.error(f"{what} of shape {a.shape} does not fit {D} direction(s) of {H} units")
        if not np.all(a == a[:, :1]):
            raise imp.unsupported(f"{what} that differs between samples of the batch")
        return [None if not np.any(a[d, 0]) else a[d, 0].copy() for d in range(D)]
    want = 1 if layout == 0 else 0
    if v.batched and v.batch != want:
        raise imp.unsupported(f"{what} with the batch in dimension {v.batch} (layout={layout} expects {want})")
    name = v.name
    per = b.shape(name)
    if not v.batched:
        if len(per) != 3 or per[want] != 1:
            raise imp.unsupported(f"{what} of shape {per} without a batch dimension of size 1")
        name = b.add(Reshape(per, (per[0] * per[1] * per[2] // H, H)), [name])
    if b.shape(name) != (D, H):
        raise imp.error(f"{what} has {b.shape(name)} values per sample; ({D}, {H}) expected")
    return [b.add(Slice((D, H), (d,)), [name]) for d in range(D)]


def _sequence_length(imp: Importer, v: Val | None, T: int) -> int:
    if v is None:
        return T
    if not v.is_const:
        raise imp.unsupported(f"{imp.node.op_type} with computed sequence_lens (only constants)")
    lens = np.asarray(v.const).reshape(-1)
    if lens.size == 0:
        return T
    if not np.all(lens == lens[0]):
        raise imp.unsupported(f"{imp.node.op_type} with sequence_lens differing between samples {lens.tolist()}")
    L = int(lens[0])
    if not 1 <= L <= T:
        raise imp.error(f"sequence_lens {L} outside 1..{T} (the sequence has {T} steps)")
    return L


@dataclass(frozen=True)
class _Layer:
    """An ONNX RNN / LSTM / GRU node's checked attributes: G gates, D directions, H units, I inputs."""

    kind: str
    G: int
    D: int
    H: int
    I: int
    layout: int
    direction: str
    clip: float | None
    input_forget: bool
    lbr: bool
    acts: list


def _layer(imp: Importer, kind: str, W: np.ndarray, R: np.ndarray, attrs: dict) -> _Layer:
    G = _GATES[kind]
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise imp.error(f"{kind} layout={layout}; the specification defines 0 and 1")
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if direction not in ("forward", "reverse", "bidirectional"):
        raise imp.error(f"unknown direction {direction!r}")
    D = 2 if direction == "bidirectional" else 1
    if W.ndim != 3 or W.shape[0] != D or W.shape[1] % G:
        raise imp.error(f"{kind} W of shape {W.shape} does not fit direction={direction}")
    H = int(attrs.get("hidden_size", W.shape[1] // G))
    if W.shape[1] != G * H or R.shape != (D, G * H, H):
        raise imp.error(f"{kind} W {W.shape} / R {R.shape} do not fit hidden_size={H}")
    clip = attrs.get("clip", None)
    clip = None if clip is None else float(clip)
    if clip is not None and not clip > 0:
        raise imp.error(f"{kind} clip must be positive, got {clip}")
    input_forget = bool(attrs.get("input_forget", 0))
    lbr = bool(attrs.get("linear_before_reset", 0))
    acts = _activations(imp, kind, attrs, D)
    return _Layer(kind, G, D, H, W.shape[2], layout, direction, clip, input_forget, lbr, acts)


@register_onnx("RNN", "LSTM", "GRU")
def _recurrent(imp: Importer, node, ins, attrs):
    kind = node.op_type
    X = variable(imp, ins[0], "X")
    W = _const(imp, ins[1], "W")
    R = _const(imp, ins[2], "R")
    Bv = _const(imp, ins[3] if len(ins) > 3 else None, "B")
    seq = ins[4] if len(ins) > 4 else None
    h0v = ins[5] if len(ins) > 5 else None
    c0v = ins[6] if len(ins) > 6 and kind == "LSTM" else None
    Pv = _const(imp, ins[7] if len(ins) > 7 and kind == "LSTM" else None, "P")
    ly = _layer(imp, kind, W, R, attrs)
    G, D, H = ly.G, ly.D, ly.H
    xnode, out_batch = _input_sequence(imp, ly, X)
    T = imp.b.shape(xnode)[0]
    L = _sequence_length(imp, seq, T)
    Bm = np.zeros((D, 2 * G * H)) if Bv is None else Bv.reshape(D, 2 * G * H)
    # the biases in their own precision: PyTorch and onnxruntime add b_ih + b_hh in it (float32), and the
    # plane relaxations are discrete choices, so the same bias bits give the same bounds as nn.LSTM
    Braw = (np.zeros((D, 2 * G * H), dtype=np.float32) if Bv is None
            else np.asarray(ins[3].const).reshape(D, 2 * G * H))
    Pm = Pv.reshape(D, 3 * H) if Pv is not None else None
    h0 = _state(imp, h0v, D, H, ly.layout, "initial_h")
    c0 = _state(imp, c0v, D, H, ly.layout, "initial_c") if kind == "LSTM" else [None] * D
    hs: list[list] = []  # per direction, per step
    h_last, c_last = [], []
    for d in range(D):
        steps, h, c = _direction(imp, ly, d, xnode, T, L, W[d], R[d], Bm[d], Braw[d],
                                 None if Pm is None else Pm[d], h0[d], c0[d])
        hs.append(steps)
        h_last.append(h)
        c_last.append(c)
    return _outputs(imp, node, ly, xnode, out_batch, T, L, hs, h_last, c_last)


def _input_sequence(imp: Importer, ly: _Layer, X: Val) -> tuple[str, bool]:
    """The input sequence as a per-sample (T, I) node, and whether it is batched (else: one sample)."""
    b, kind, layout = imp.b, ly.kind, ly.layout
    want = 1 if layout == 0 else 0
    xs = imp.shape(X)
    if len(xs) != 3:
        raise imp.error(f"{kind} X must have rank 3, got shape {xs}")
    if X.batched:
        if X.batch != want:
            raise imp.unsupported(f"{kind} X with the batch in dimension {X.batch} while layout={layout} puts it "
                                  f"in dimension {want}")
        xnode = X.name
        out_batch = True
    else:
        if xs[want] != 1:
            raise imp.unsupported(f"{kind} X of shape {xs} with no batch dimension (of size 1)")
        xnode = b.add(Reshape(xs, tuple(d for i, d in enumerate(xs) if i != want)), [X.name])
        out_batch = False
    _, I_x = b.shape(xnode)
    if I_x != ly.I:
        raise imp.error(f"{kind} X has {I_x} features per step; W expects {ly.I}")
    return xnode, out_batch


def _direction(imp: Importer, ly: _Layer, d: int, xnode: str, T: int, L: int, Wd0: np.ndarray, Rd0: np.ndarray,
               Bmd: np.ndarray, Brawd: np.ndarray, Pmd: np.ndarray | None, h, c):
    """Direction d unrolled over the first L of T steps: (hidden state node per step, None past L; last
    hidden state; last cell state). nn.RNN / LSTM / GRU-like settings use the torch importer's steps (same
    graph, same bounds), any other through _Unroller."""
    b, kind, H, G = imp.b, ly.kind, ly.H, ly.G
    order = {"LSTM": _LSTM_ORDER, "GRU": _GRU_ORDER, "RNN": (0,)}[kind]
    mode = {"LSTM": "lstm", "GRU": "gru", "RNN": None}[kind]
    Wd = _reorder(Wd0, order, H)
    Rd = _reorder(Rd0, order, H)
    Wb = _reorder(Bmd[:G * H], order, H)
    Rb = _reorder(Bmd[G * H:], order, H)
    P = None
    if Pmd is not None and np.any(Pmd):
        P = (Pmd[:H], Pmd[H:2 * H], Pmd[2 * H:])  # ONNX P order: i, o, f
    a = ly.acts[d]
    torch_like = (ly.clip is None and P is None and not ly.input_forget and not (h is not None and not
                  isinstance(h, str)) and not (c is not None and not isinstance(c, str)))
    if kind == "RNN":
        torch_like = torch_like and a[0].name in ("Tanh", "Relu")
        mode = "rnn_" + a[0].name.lower()
    elif kind == "LSTM":
        torch_like = torch_like and a[0].sigmoid and a[1].tanh and a[2].tanh
    else:
        torch_like = torch_like and a[0].sigmoid and a[1].tanh and ly.lbr
    tW = imp.torch_const(Wd)
    tR = imp.torch_const(Rd)
    if torch_like:
        bias = input_bias(mode, torch.as_tensor(_reorder(Brawd[:G * H], order, H)),
                           torch.as_tensor(_reorder(Brawd[G * H:], order, H)), H)
    else:
        # R's biases fold into the input projection except GRU's reset-gated n block
        fold = Rb.copy()
        if kind == "GRU":
            fold[2 * H:] = 0.0
        bias = imp.torch_const(Wb + fold)
    xp_all = b.add(Linear(tW, bias), [xnode])
    xps = [b.add(Slice(b.shape(xp_all), (t,)), [xp_all]) for t in range(L)]
    un = _Unroller(imp, kind, H, ly.clip, a, ly.input_forget, ly.lbr)
    steps: list = [None] * T
    for t in (range(L - 1, -1, -1) if (d == 1 or ly.direction == "reverse") else range(L)):
        if torch_like:
            h, c = cell_step(b, mode, xps[t], h, c, tR, imp.torch_const(Rb), H)
        else:
            h, c = un.step(xps[t], h, c, Rd, Rb, P)
        steps[t] = h
    return steps, h, c


def _outputs(imp: Importer, node, ly: _Layer, xnode: str, out_batch: bool, T: int, L: int, hs: list,
             h_last: list, c_last: list) -> list:
    """The node's outputs Y (T, D, H; zeros past L), Y_h and Y_c (D, H), where used, in the ONNX layout."""
    b, D, H, layout = imp.b, ly.D, ly.H, ly.layout
    outs: list = [None, None, None]
    names = list(node.output) + [""] * 3
    used = [bool(n) and imp.consumers.get(n, 0) > 0 for n in names[:3]]

    def per_dir(vals: list) -> str:
        """(D, H) node of per-direction (H,) values (a node, or a constant for an untouched zero state)."""
        items = [v if isinstance(v, str) else _const_node(imp, xnode, np.zeros(H) if v is None else v) for v in vals]
        cat = items[0] if D == 1 else b.add(Concat(0, (H,) * D), items)
        return b.add(Reshape((D * H,), (D, H)), [cat])

    def batched(name: str, shape_without: tuple, batch_axis: int):
        if out_batch:
            return Val(name=name, batch=batch_axis)
        full = shape_without[:batch_axis] + (1,) + shape_without[batch_axis:]
        return Val(name=b.add(Reshape(b.shape(name), full), [name]), batch=None)

    if used[0]:
        zero = None
        rows = []
        for t in range(T):
            if t < L:
                rows.append(per_dir([hs[d][t] for d in range(D)]))
            else:
                if zero is None:
                    zero = _const_node(imp, xnode, np.zeros((D, H)))
                rows.append(zero)
        rows = [b.add(Reshape((D, H), (1, D, H)), [r]) for r in rows]
        y = rows[0] if T == 1 else b.add(Concat(0, (1,) * T), rows)
        outs[0] = batched(y, (T, D, H), 2 if layout == 0 else 0)
    if used[1]:
        outs[1] = batched(per_dir(h_last), (D, H), 1 if layout == 0 else 0)
    if len(node.output) > 2 and used[2]:
        if ly.kind != "LSTM":
            raise imp.error(f"{ly.kind} has no third output")
        outs[2] = batched(per_dir(c_last), (D, H), 1 if layout == 0 else 0)
    return outs


def _const_node(imp: Importer, like: str, value: np.ndarray) -> str:
    return const_node(imp, like, value)
