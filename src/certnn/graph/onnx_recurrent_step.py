"""The general step of an ONNX ``RNN`` / ``LSTM`` / ``GRU`` (graph/onnx_recurrent.py), for what PyTorch's
modules cannot express: any of the supported activations (with alpha / beta), ``clip``, LSTM peepholes and
``input_forget``, GRU ``linear_before_reset`` 0, constant initial states. One direction at a time; only
existing certnn ops (sound by their own rules), batched over samples.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.product import Mul, SigmoidMul, SigmoidTanhMul
from ..ops.shape import Add, Slice

if TYPE_CHECKING:
    from .onnx_importer import Importer


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


class _Unroller:
    """Builds the nodes of one ONNX recurrent op for one direction at a time."""

    def __init__(self, imp: Importer, kind: str, H: int, clip: float | None, acts: list[_Act],
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
        kind = self.kind
        if kind == "RNN":
            pre = self._recur(xp, h, R)
            return self.act(self.acts[0], pre), None
        if kind == "LSTM":
            return self._lstm_step(xp, h, c, R, P)
        return self._gru_step(xp, h, R, Rb)

    def _lstm_step(self, xp: str, h, c, R: np.ndarray, P: np.ndarray | None):
        """LSTM: c_t = F(f) c + F(i) G(g) (peepholes, input_forget), h_t = F(o) H(c_t)."""
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

    def _gru_step(self, xp: str, h, R: np.ndarray, Rb: np.ndarray):
        """GRU (r, z, n after reordering): h_t = (1 - F(z)) G(n) + F(z) h_{t-1}."""
        H = self.H
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
