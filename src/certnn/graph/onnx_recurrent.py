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

import numpy as np
import torch

from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.product import Mul, SigmoidMul, SigmoidTanhMul
from ..ops.shape import Add, Concat, Reshape, Slice
from .from_onnx import Val, _Importer, _var, const_node, register_onnx
from .recurrent import _input_bias, _step

#: ONNX gate blocks in PyTorch's order
_LSTM_ORDER = (0, 2, 3, 1)  # ONNX i, o, f, c -> i, f, g(c), o
_GRU_ORDER = (1, 0, 2)  # ONNX z, r, h -> r, z, n
_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
_DEFAULT_ACTS = {"RNN": ["Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
#: activations and how many of (alpha, beta) they take, with the ONNX defaults
_ACT_PARAMS = {"Sigmoid": (), "Tanh": (), "Relu": (), "LeakyRelu": (0.01,), "Affine": (1.0, 0.0),
               "ScaledTanh": (1.0, 1.0), "HardSigmoid": (0.2, 0.5)}
_NO_RELAXATION = ("Elu", "Softsign", "Softplus", "ThresholdedRelu")


class _Act:
    """One activation of an ONNX recurrent op (name and its alpha / beta)."""

    def __init__(self, name: str, params: tuple[float, ...]):
        self.name, self.params = name, params

    @property
    def sigmoid(self) -> bool:
        return self.name == "Sigmoid"

    @property
    def tanh(self) -> bool:
        return self.name == "Tanh"

    @property
    def identity(self) -> bool:
        return self.name == "Affine" and self.params == (1.0, 0.0)


def _reorder(a: np.ndarray, order: tuple[int, ...], H: int) -> np.ndarray:
    """Gate blocks of H rows of a (G*H, ...) array in the given order."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order], 0)


def _activations(imp: _Importer, kind: str, attrs: dict, D: int) -> list[list[_Act]]:
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


def _const(imp: _Importer, v: Val | None, what: str) -> np.ndarray | None:
    if v is None:
        return None
    if not v.is_const:
        raise imp.unsupported(f"{imp.node.op_type} with a computed {what} (it must be a constant)")
    return np.asarray(v.const, dtype=np.float64)


class _Unroller:
    """Builds the nodes of one ONNX recurrent op for one direction at a time."""

    def __init__(self, imp: _Importer, kind: str, H: int, clip: float | None, acts: list[_Act],
                 input_forget: bool, lbr: bool):
        self.imp, self.b, self.kind, self.H = imp, imp.b, kind, H
        self.clip, self.acts, self.input_forget, self.lbr = clip, acts, input_forget, lbr

    def t(self, a) -> torch.Tensor:
        return self.imp.torch_const(a)

    def add(self, op, inputs: list[str]) -> str:
        return self.b.add(op, inputs)

    def slice(self, x: str, k: int) -> str:
        return self.add(Slice(self.b.shape(x), (slice(k * self.H, (k + 1) * self.H),)), [x])

    def shift(self, x: str, c: np.ndarray) -> str:
        """x + c for a constant vector c."""
        if not np.any(c):
            return x
        return self.add(ElementwiseAffine(None, self.t(c)), [x])

    def scale(self, x: str, c: np.ndarray) -> str:
        return self.add(ElementwiseAffine(self.t(c), None), [x])

    def clipped(self, x: str) -> str:
        if self.clip is None:
            return x
        return self.add(Activation("hardtanh", min_val=-self.clip, max_val=self.clip), [x])

    def act(self, a: _Act, x: str, clip: bool = True) -> str:
        """F(x) for a pre-activation node x (clip applied unless clip=False)."""
        x = self.clipped(x) if clip else x
        if a.name == "Sigmoid":
            return self.add(Activation("sigmoid"), [x])
        if a.name == "Tanh":
            return self.add(Activation("tanh"), [x])
        if a.name == "Relu":
            return self.add(Activation("relu"), [x])
        if a.name == "LeakyRelu":
            return self.add(Activation("leaky_relu", negative_slope=a.params[0]), [x])
        if a.name == "Affine":
            if a.identity:
                return x
            return self.add(ElementwiseAffine(torch.tensor(a.params[0]), torch.tensor(a.params[1])), [x])
        if a.name == "ScaledTanh":
            y = self.add(ElementwiseAffine(torch.tensor(a.params[1]), None), [x])
            y = self.add(Activation("tanh"), [y])
            return self.add(ElementwiseAffine(torch.tensor(a.params[0]), None), [y])
        # HardSigmoid: max(0, min(1, alpha x + beta))
        y = self.add(ElementwiseAffine(torch.tensor(a.params[0]), torch.tensor(a.params[1])), [x])
        return self.add(Activation("hardtanh", min_val=0.0, max_val=1.0), [y])

    def gate_times(self, f: _Act, pre_a: str, other: str, g: _Act | None, clip_other: bool = True) -> str:
        """F(pre_a) * G(other) (G None: `other` is already a value). The fused sigmoid products when they
        apply (on the clipped pre-activations), else the general product of the two activations. clip
        applies to pre_a and, unless clip_other=False (an LSTM's cell state before h), to other."""
        co = self.clipped(other) if clip_other else other
        if f.sigmoid and g is not None and g.tanh:
            return self.add(SigmoidTanhMul(), [self.clipped(pre_a), co])
        if f.sigmoid and (g is None or g.identity and (self.clip is None or not clip_other)):
            return self.add(SigmoidMul(), [self.clipped(pre_a), other])
        y = other if g is None else self.act(g, other, clip=clip_other)
        return self.add(Mul(), [self.act(f, pre_a), y])

    def one_minus_times(self, f: _Act, pre_z: str, other: str, g: _Act | None) -> str:
        """(1 - F(pre_z)) * G(other); for the sigmoid 1 - s(z) = s(-z)."""
        if f.sigmoid:
            neg = self.add(ElementwiseAffine(torch.tensor(-1.0), None), [self.clipped(pre_z)])
            if g is not None and g.tanh:
                return self.add(SigmoidTanhMul(), [neg, self.clipped(other)])
            y = other if g is None else self.act(g, other)
            return self.add(SigmoidMul(), [neg, y])
        one_minus = self.add(ElementwiseAffine(torch.tensor(-1.0), torch.tensor(1.0)), [self.act(f, pre_z)])
        y = other if g is None else self.act(g, other)
        return self.add(Mul(), [one_minus, y])

    def const_times(self, f: _Act, pre: str, c: np.ndarray) -> str | None:
        """F(pre) * c for a constant vector c (None when c is zero)."""
        if not np.any(c):
            return None
        return self.scale(self.act(f, pre), c)

    # -- one step ---------------------------------------------------------------------------------------
    def step(self, xp: str, h, c, R: np.ndarray, Rb: np.ndarray, P: np.ndarray | None):
        """One step from the input projection xp (G*H,) (input biases and R's biases of the gates that are
        not reset-gated folded in). h, c: a node name, a constant vector, or None (zero)."""
        H, kind = self.H, self.kind
        if kind == "RNN":
            pre = self._recur(xp, h, R)
            return self.act(self.acts[0], pre), None
        if kind == "LSTM":
            f, g, hh = self.acts
            pre = self._recur(xp, h, R)
            i_pre, f_pre, g_pre, o_pre = (self.slice(pre, k) for k in range(4))
            if P is not None and c is not None:  # peepholes on c_{t-1}: P_i * c, P_f * c
                i_pre = self._peep(i_pre, P[0], c)
                f_pre = self._peep(f_pre, P[2], c)
            ig = self.gate_times(f, i_pre, g_pre, g)
            if c is None:
                c_new = ig
            else:
                if self.input_forget:
                    fc = (self.one_minus_times(f, i_pre, c, None) if isinstance(c, str)
                          else self.scale(self.add(ElementwiseAffine(torch.tensor(-1.0), torch.tensor(1.0)),
                                                   [self.act(f, i_pre)]), c))
                else:
                    fc = self.gate_times(f, f_pre, c, None) if isinstance(c, str) else self.const_times(f, f_pre, c)
                c_new = ig if fc is None else self.add(Add(), [fc, ig])
            if P is not None:
                o_pre = self._peep(o_pre, P[1], c_new)
            # onnxruntime clips the gates' pre-activations, not the cell state before h
            return self.gate_times(f, o_pre, c_new, hh, clip_other=False), c_new
        # GRU (r, z, n after reordering)
        f, g = self.acts
        xr, xz, xn = (self.slice(xp, k) for k in range(3))
        Rr, Rz, Rn = R[:H], R[H:2 * H], R[2 * H:]
        Rbn = Rb[2 * H:]
        if h is None:
            r_pre, z_pre = xr, xz
            if self.lbr:  # r * (R_n 0 + Rb_n) = Rb_n * F(r)
                t = self.const_times(f, r_pre, Rbn)
                n_pre = xn if t is None else self.add(Add(), [xn, t])
            else:
                n_pre = self.shift(xn, Rbn)
        elif isinstance(h, str):
            hp = self.add(Linear(self.t(np.concatenate([Rr, Rz])), None), [h])
            r_pre = self.add(Add(), [xr, self.add(Slice(self.b.shape(hp), (slice(0, H),)), [hp])])
            z_pre = self.add(Add(), [xz, self.add(Slice(self.b.shape(hp), (slice(H, 2 * H),)), [hp])])
            if self.lbr:
                hn = self.add(Linear(self.t(Rn), self.t(Rbn)), [h])
                n_pre = self.add(Add(), [xn, self.gate_times(f, r_pre, hn, None)])
            else:
                rh = self.gate_times(f, r_pre, h, None)
                n_pre = self.add(Add(), [self.shift(xn, Rbn), self.add(Linear(self.t(Rn), None), [rh])])
        else:  # constant state
            r_pre = self.shift(xr, Rr @ h)
            z_pre = self.shift(xz, Rz @ h)
            if self.lbr:
                t = self.const_times(f, r_pre, Rn @ h + Rbn)
                n_pre = xn if t is None else self.add(Add(), [xn, t])
            else:
                fr = self.act(f, r_pre)
                n_pre = self.add(Add(), [self.shift(xn, Rbn), self.add(Linear(self.t(Rn * h[None, :]), None), [fr])])
        new = self.one_minus_times(f, z_pre, n_pre, g)
        if h is not None:
            zh = self.gate_times(f, z_pre, h, None) if isinstance(h, str) else self.const_times(f, z_pre, h)
            if zh is not None:
                new = self.add(Add(), [new, zh])
        return new, None

    def _recur(self, xp: str, h, R: np.ndarray) -> str:
        if h is None:
            return xp
        if isinstance(h, str):
            return self.add(Add(), [xp, self.add(Linear(self.t(R), None), [h])])
        return self.shift(xp, R @ h)

    def _peep(self, pre: str, p: np.ndarray, c) -> str:
        if not np.any(p):
            return pre
        if isinstance(c, str):
            return self.add(Add(), [pre, self.scale(c, p)])
        return self.shift(pre, p * c)


def _state(imp: _Importer, v: Val | None, D: int, H: int, layout: int, what: str) -> list:
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


def _sequence_length(imp: _Importer, v: Val | None, T: int) -> int:
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


@register_onnx("RNN", "LSTM", "GRU")
def _recurrent(imp: _Importer, node, ins, attrs):
    kind = node.op_type
    G = _GATES[kind]
    b = imp.b
    X = _var(imp, ins[0], "X")
    W = _const(imp, ins[1], "W")
    R = _const(imp, ins[2], "R")
    Bv = _const(imp, ins[3] if len(ins) > 3 else None, "B")
    seq = ins[4] if len(ins) > 4 else None
    h0v = ins[5] if len(ins) > 5 else None
    c0v = ins[6] if len(ins) > 6 and kind == "LSTM" else None
    Pv = _const(imp, ins[7] if len(ins) > 7 and kind == "LSTM" else None, "P")
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
    I = W.shape[2]
    clip = attrs.get("clip", None)
    clip = None if clip is None else float(clip)
    if clip is not None and not clip > 0:
        raise imp.error(f"{kind} clip must be positive, got {clip}")
    input_forget = bool(attrs.get("input_forget", 0))
    lbr = bool(attrs.get("linear_before_reset", 0))
    acts = _activations(imp, kind, attrs, D)

    # the input sequence as a per-sample (T, I) node
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
    T, I_x = b.shape(xnode)
    if I_x != I:
        raise imp.error(f"{kind} X has {I_x} features per step; W expects {I}")
    L = _sequence_length(imp, seq, T)
    Bm = np.zeros((D, 2 * G * H)) if Bv is None else Bv.reshape(D, 2 * G * H)
    # the biases in their own precision: PyTorch and onnxruntime add b_ih + b_hh in it (float32), and the
    # plane relaxations are discrete choices, so the same bias bits give the same bounds as nn.LSTM
    Braw = (np.zeros((D, 2 * G * H), dtype=np.float32) if Bv is None
            else np.asarray(ins[3].const).reshape(D, 2 * G * H))
    if Pv is not None:
        Pm = Pv.reshape(D, 3 * H)
    h0 = _state(imp, h0v, D, H, layout, "initial_h")
    c0 = _state(imp, c0v, D, H, layout, "initial_c") if kind == "LSTM" else [None] * D

    order = {"LSTM": _LSTM_ORDER, "GRU": _GRU_ORDER, "RNN": (0,)}[kind]
    mode = {"LSTM": "lstm", "GRU": "gru", "RNN": None}[kind]
    hs: list[list] = []  # per direction, per step
    h_last, c_last = [], []
    for d in range(D):
        Wd = _reorder(W[d], order, H)
        Rd = _reorder(R[d], order, H)
        Wb = _reorder(Bm[d, :G * H], order, H)
        Rb = _reorder(Bm[d, G * H:], order, H)
        P = None
        if Pv is not None and np.any(Pm[d]):
            P = (Pm[d, :H], Pm[d, H:2 * H], Pm[d, 2 * H:])  # ONNX P order: i, o, f
        a = acts[d]
        torch_like = (clip is None and P is None and not input_forget and not (h0[d] is not None and not
                      isinstance(h0[d], str)) and not (c0[d] is not None and not isinstance(c0[d], str)))
        if kind == "RNN":
            torch_like = torch_like and a[0].name in ("Tanh", "Relu")
            mode = "rnn_" + a[0].name.lower()
        elif kind == "LSTM":
            torch_like = torch_like and a[0].sigmoid and a[1].tanh and a[2].tanh
        else:
            torch_like = torch_like and a[0].sigmoid and a[1].tanh and lbr
        tW = imp.torch_const(Wd)
        tR = imp.torch_const(Rd)
        if torch_like:
            bias = _input_bias(mode, torch.as_tensor(_reorder(Braw[d, :G * H], order, H)),
                               torch.as_tensor(_reorder(Braw[d, G * H:], order, H)), H)
        else:
            # R's biases fold into the input projection except GRU's reset-gated n block
            fold = Rb.copy()
            if kind == "GRU":
                fold[2 * H:] = 0.0
            bias = imp.torch_const(Wb + fold)
        xp_all = b.add(Linear(tW, bias), [xnode])
        xps = [b.add(Slice(b.shape(xp_all), (t,)), [xp_all]) for t in range(L)]
        un = _Unroller(imp, kind, H, clip, a, input_forget, lbr)
        steps: list = [None] * T
        h, c = h0[d], c0[d]
        for t in (range(L - 1, -1, -1) if (d == 1 or direction == "reverse") else range(L)):
            if torch_like:
                h, c = _step(b, mode, xps[t], h, c, tR, imp.torch_const(Rb), H)
            else:
                h, c = un.step(xps[t], h, c, Rd, Rb, P)
            steps[t] = h
        hs.append(steps)
        h_last.append(h)
        c_last.append(c)

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
        if kind != "LSTM":
            raise imp.error(f"{kind} has no third output")
        outs[2] = batched(per_dir(c_last), (D, H), 1 if layout == 0 else 0)
    return outs


def _const_node(imp: _Importer, like: str, value: np.ndarray) -> str:
    return const_node(imp, like, value)
