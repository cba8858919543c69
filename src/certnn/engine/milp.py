"""Exact (MILP) and LP-relaxed bounds for small ReLU networks with HiGHS (highspy).

Encoding (Tjeng et al. 2019): every node's values are LP columns; affine ops are equality rows; a ReLU
y = max(x, 0) with pre-activation bounds l < 0 < u becomes

    y >= x,  y >= 0,  y <= u * a,  y <= x - l * (1 - a),  a in {0, 1}  (MILP) or a in [0, 1] (LP).

With a relaxed, each neuron's feasible set projects onto the triangle relaxation ("LP" in the Fast-Lin /
CROWN / CNN-Cert papers' tables). Stable neurons are encoded exactly. Pre-activation bounds come from
CROWN intersected with IBP (any sound bounds keep the MILP exact).
Input sets: L∞ boxes (with clip) and L1 balls are linear; L2 balls are not supported here.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import UnsupportedOpError
from ..graph.ir import Graph
from ..ops.activation import Activation
from ..ops.affine import ElementwiseAffine, Linear
from ..ops.conv import DenseAffine
from ..ops.shape import Reshape
from ..specs.lp import LpBall
from .backward import compute_intermediate_bounds
from .context import RunContext
from .methods import get_method

SUPPORTED = ("linear", "elementwise_affine", "reshape", "relu",
             "conv / zero pad / average pool (unrolled to dense rows)")


def _highs():
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover
        raise UnsupportedOpError("exact solving without highspy", ["pip install highspy"]) from exc
    return highspy


class _Model:
    def __init__(self, highspy):
        self.hp = highspy
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.n = 0
        self.inf = highspy.kHighsInf

    def cols(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        k = len(lo)
        for a, b in zip(lo, hi):
            self.h.addCol(0.0, float(a), float(b), 0, np.array([], dtype=np.int32), np.array([]))
        idx = np.arange(self.n, self.n + k)
        self.n += k
        return idx

    def row(self, lo: float, hi: float, idx, vals) -> None:
        idx = np.asarray(idx, dtype=np.int32)
        vals = np.asarray(vals, dtype=np.float64)
        keep = vals != 0
        self.h.addRow(lo, hi, int(keep.sum()), idx[keep], vals[keep])

    def integer(self, idx: np.ndarray) -> None:
        if len(idx):
            self.h.changeColsIntegrality(len(idx), idx.astype(np.int32),
                                         np.array([self.hp.HighsVarType.kInteger] * len(idx)))


def exact_bounds(graph: Graph, spec: LpBall, C: Tensor | None = None, relax: bool = False,
                 time_limit: float | None = None) -> tuple[Tensor, Tensor]:
    """Bounds (B, S) of C · f over the input set by MILP (exact) or LP (relax=True), one sample at a time."""
    hp = _highs()
    if spec.norm == "2":
        raise UnsupportedOpError("L2 balls for the MILP/LP methods (not linear)", ["inf", "1"])
    from ..graph.passes import unroll_convs

    graph = unroll_convs(graph)  # convs / average pools as dense affine rows (the LP needs them anyway)
    ctx = RunContext(graph, spec, get_method("crown"))
    with torch.no_grad():
        compute_intermediate_bounds(ctx)
    B = spec.batch
    K = int(np.prod(graph.output_shape))
    Cn = (torch.eye(K, dtype=torch.float64).expand(B, K, K) if C is None else C.reshape(B, C.shape[1], -1)).cpu().numpy()
    lows = np.zeros((B, Cn.shape[1]))
    highs = np.zeros((B, Cn.shape[1]))
    box = spec.box()
    for b in range(B):
        m = _Model(hp)
        if time_limit:
            m.h.setOptionValue("time_limit", float(time_limit))
        cols: dict[str, np.ndarray] = {}
        blo = box.lower[b].reshape(-1).cpu().numpy()
        bhi = box.upper[b].reshape(-1).cpu().numpy()
        xin = m.cols(blo, bhi)
        cols[graph.input_name] = xin
        if spec.norm == "1":
            x0 = spec.center[b].reshape(-1).cpu().numpy()
            s = np.ones_like(x0) if spec.scale is None else torch.broadcast_to(spec.scale, spec.center.shape[1:]).reshape(-1).cpu().numpy()
            t = m.cols(np.zeros_like(x0), np.full_like(x0, m.inf))
            for i in range(len(x0)):
                if s[i] == 0:
                    continue
                m.row(-x0[i], m.inf, [t[i], xin[i]], [1.0, -1.0])  # t >= x - x0
                m.row(x0[i], m.inf, [t[i], xin[i]], [1.0, 1.0])  # t >= x0 - x
            w = np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)
            m.row(-m.inf, float(spec.eps[b]), t, w)
        binaries = []
        for name in graph.order[1:]:
            node = graph.nodes[name]
            op = node.op
            if len(node.inputs) != 1:
                raise UnsupportedOpError(f"node {name} with {len(node.inputs)} inputs for MILP", SUPPORTED)
            xi = cols[node.inputs[0]]
            if isinstance(op, Reshape):
                cols[name] = xi
                continue
            iv = ctx.bounds.get(name)
            n = len(xi) if not isinstance(op, (Linear, DenseAffine)) else op.weight.shape[0]
            if isinstance(op, (Linear, DenseAffine)):
                if isinstance(op, Linear) and len(graph.nodes[node.inputs[0]].shape) != 1:
                    raise UnsupportedOpError("Linear on a multi-dimensional input for MILP", SUPPORTED)
                W = op.weight.cpu().numpy()
                bias = np.zeros(n) if op.bias is None else op.bias.cpu().numpy()
                y = m.cols(np.full(n, -m.inf), np.full(n, m.inf))
                for j in range(n):
                    m.row(bias[j], bias[j], np.concatenate([[y[j]], xi]), np.concatenate([[1.0], -W[j]]))
            elif isinstance(op, ElementwiseAffine):
                sc = np.ones(n) if op.scale is None else torch.broadcast_to(op.scale, node.shape).reshape(-1).cpu().numpy()
                sh = np.zeros(n) if op.shift is None else torch.broadcast_to(op.shift, node.shape).reshape(-1).cpu().numpy()
                y = m.cols(np.full(n, -m.inf), np.full(n, m.inf))
                for j in range(n):
                    m.row(sh[j], sh[j], [y[j], xi[j]], [1.0, -sc[j]])
            elif isinstance(op, Activation) and op.kind == "relu":
                pre = ctx.bounds[node.inputs[0]]
                lo = pre.lower[b].reshape(-1).cpu().numpy()
                hi = pre.upper[b].reshape(-1).cpu().numpy()
                y = m.cols(np.maximum(lo, 0.0), np.maximum(hi, 0.0))
                for j in range(n):
                    if lo[j] >= 0:
                        m.row(0.0, 0.0, [y[j], xi[j]], [1.0, -1.0])
                    elif hi[j] <= 0:
                        m.row(0.0, 0.0, [y[j]], [1.0])
                    else:
                        a = m.cols(np.array([0.0]), np.array([1.0]))[0]
                        binaries.append(a)
                        m.row(0.0, m.inf, [y[j], xi[j]], [1.0, -1.0])  # y >= x
                        m.row(-m.inf, 0.0, [y[j], a], [1.0, -hi[j]])  # y <= u a
                        m.row(-m.inf, -lo[j], [y[j], xi[j], a], [1.0, -1.0, -lo[j]])  # y <= x - l + l a
            else:
                raise UnsupportedOpError(f"op {op.describe()} for MILP/LP", SUPPORTED)
            del iv
            cols[name] = y
        if not relax:
            m.integer(np.array(binaries, dtype=np.int64))
        out = cols[graph.output_name]
        for s_i in range(Cn.shape[1]):
            c = Cn[b, s_i]
            for sense, store in ((1.0, lows), (-1.0, highs)):
                cost = np.zeros(m.n)
                cost[out] = sense * c
                m.h.changeColsCost(m.n, np.arange(m.n, dtype=np.int32), cost)
                m.h.run()
                st = m.h.getModelStatus()
                info = m.h.getInfo()
                is_mip = (not relax) and len(binaries) > 0  # with no integer column HiGHS solves an LP
                if st == hp.HighsModelStatus.kOptimal:
                    val = info.objective_function_value
                    if is_mip and np.isfinite(info.mip_dual_bound):
                        val = min(val, info.mip_dual_bound)  # the proved bound (mip gap), sound side
                elif is_mip and np.isfinite(info.mip_dual_bound) and st == hp.HighsModelStatus.kTimeLimit:
                    val = info.mip_dual_bound  # time limit: the solver's dual bound is still sound
                else:
                    raise RuntimeError(f"HiGHS ended with status {st}")
                store[b, s_i] = sense * val
    return torch.as_tensor(lows), torch.as_tensor(highs)
