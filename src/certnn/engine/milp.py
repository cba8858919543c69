"""Exact (MILP) and LP-relaxed bounds for small ReLU networks with HiGHS (highspy).

Encoding (Tjeng et al. 2019): every node's values are LP columns; affine ops are equality rows; a ReLU
y = max(x, 0) with pre-activation bounds l < 0 < u becomes

    y >= x,  y >= 0,  y <= u * a,  y <= x - l * (1 - a),  a in {0, 1}  (MILP) or a in [0, 1] (LP).

With a relaxed, each neuron's feasible set projects onto the triangle relaxation ("LP" in the Fast-Lin /
CROWN / CNN-Cert papers' tables). Stable neurons are encoded exactly. Pre-activation bounds come from
CROWN intersected with IBP (any sound bounds keep the MILP exact).
Input sets: L∞ boxes (with clip) and L1 balls are linear; L2 balls are not supported here.

Two questions are asked of the encoding:

* :func:`exact_bounds`: min / max of C · f(x) over the input set (one LP/MILP per row and side);
* :func:`solve_conjunction`: VNN-LIB style, is there an x in the set with C · f(x) <= d in every row?
  One problem: minimise t subject to C_i · f(x) - d_i <= t for all i. The optimum t* > 0 proves that
  no such x exists (the property holds on this set); t* <= 0 gives a candidate counterexample x (the
  caller must check it with a concrete forward pass). With the LP relaxation t*_LP <= t*_MILP, so
  t*_LP > 0 is a proof too; t*_LP <= 0 proves nothing.

Rows are built in bulk (CSR arrays into ``addRows``), not one Python call per neuron.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import CertnnError, UnsupportedOpError
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
             "dense_affine (convs and average pools after certnn.graph.passes.unroll_convs)")
#: an LP/MILP optimum t* must exceed this to count as a proof (HiGHS' feasibility tolerance is 1e-7)
PROOF_MARGIN = 1e-6


def _highs():
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover
        raise UnsupportedOpError("exact solving without highspy", ["pip install highspy"]) from exc
    return highspy


def relu_neurons(graph: Graph) -> int:
    """How many ReLU neurons the graph has (each unstable one is a binary of the encoding)."""
    return sum(math.prod(graph.nodes[n].shape) for n in graph.order
               if getattr(graph.nodes[n].op, "kind", "") == "relu")


def check_supported(graph: Graph) -> None:
    """Raise UnsupportedOpError unless every op of the graph can be encoded."""
    for name in graph.order[1:]:
        node = graph.nodes[name]
        op = node.op
        ok = isinstance(op, (Reshape, ElementwiseAffine, DenseAffine)) or (
            isinstance(op, Activation) and op.kind == "relu")
        if isinstance(op, Linear):
            ok = len(graph.nodes[node.inputs[0]].shape) == 1
        if not ok or len(node.inputs) != 1:
            raise UnsupportedOpError(f"op {op.describe()} at node {name} for MILP/LP", SUPPORTED)


def _new_highs(highspy):
    """A Highs instance; the banner HiGHS writes to stdout on its first construction is discarded
    (library code never prints)."""
    import os
    import sys

    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdout (captured): nothing to protect
        return highspy.Highs()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            h = highspy.Highs()
    finally:
        os.dup2(saved, fd)
        os.close(saved)
    return h


class _Model:
    def __init__(self, highspy):
        self.hp = highspy
        self.h = _new_highs(highspy)
        self.h.setOptionValue("output_flag", False)
        self.n = 0
        self.inf = highspy.kHighsInf

    def cols(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        k = len(lo)
        if k:
            e = np.array([], dtype=np.int32)
            self.h.addCols(k, np.zeros(k), np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64),
                           0, e, e, np.array([], dtype=np.float64))
        idx = np.arange(self.n, self.n + k)
        self.n += k
        return idx

    def rows(self, lo, hi, idx: np.ndarray, vals: np.ndarray) -> None:
        """Rows lo <= sum_k vals[r, k] x[idx[r, k]] <= hi, idx/vals (R, K) dense (zeros dropped)."""
        idx = np.asarray(idx)
        vals = np.asarray(vals, dtype=np.float64)
        R = idx.shape[0]
        if R == 0:
            return
        keep = vals != 0
        counts = keep.sum(1)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
        lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (R,)).copy()
        hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (R,)).copy()
        self.h.addRows(R, lo, hi, int(counts.sum()), starts, idx[keep].astype(np.int32), vals[keep])

    def integer(self, idx: np.ndarray) -> None:
        if len(idx):
            self.h.changeColsIntegrality(len(idx), idx.astype(np.int32),
                                         np.array([self.hp.HighsVarType.kInteger] * len(idx)))


def _encode(m: _Model, graph: Graph, ctx: RunContext, b: int, spec: LpBall,
            upto: str | None = None) -> tuple[dict, list]:
    """Columns and rows of sample b's input set and network (up to node `upto` included, default: all);
    returns (columns per node, binaries)."""
    cols: dict[str, np.ndarray] = {graph.input_name: _encode_input(m, spec, b)}
    binaries: list[int] = []
    last = len(graph.order) if upto is None else graph.order.index(upto) + 1
    for name in graph.order[1:last]:
        node = graph.nodes[name]
        if len(node.inputs) != 1:
            raise UnsupportedOpError(f"node {name} with {len(node.inputs)} inputs for MILP", SUPPORTED)
        cols[name] = _encode_node(m, graph, ctx, b, node, cols[node.inputs[0]], binaries)
    return cols, binaries


def _encode_input(m: _Model, spec: LpBall, b: int) -> np.ndarray:
    """Sample b's input columns: its box (ball ∩ clip for L∞), and for L1 the rows sum |x - x0| / s <= eps
    through auxiliary columns t >= |x - x0| (features with scale 0 are held by the box alone)."""
    box = spec.box()
    xin = m.cols(box.lower[b].reshape(-1).cpu().numpy(), box.upper[b].reshape(-1).cpu().numpy())
    if spec.norm == "1":
        x0 = spec.center[b].reshape(-1).cpu().numpy()
        s = (np.ones_like(x0) if spec.scale is None
             else torch.broadcast_to(spec.scale, spec.center.shape[1:]).reshape(-1).cpu().numpy())
        t = m.cols(np.zeros_like(x0), np.full_like(x0, m.inf))
        free = np.flatnonzero(s != 0)
        pair = np.stack([t[free], xin[free]], 1)
        m.rows(-x0[free], m.inf, pair, np.tile([1.0, -1.0], (len(free), 1)))  # t >= x - x0
        m.rows(x0[free], m.inf, pair, np.tile([1.0, 1.0], (len(free), 1)))  # t >= x0 - x
        w = np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)
        m.rows(-m.inf, float(spec.eps[b]), t[None, :], w[None, :])
    return xin


def _encode_node(m: _Model, graph: Graph, ctx: RunContext, b: int, node, xi: np.ndarray,
                 binaries: list[int]) -> np.ndarray:
    """One single-input node's columns from its input's columns `xi` (a ReLU's binaries go to `binaries`)."""
    op = node.op
    if isinstance(op, Reshape):
        return xi
    if isinstance(op, (Linear, DenseAffine)):
        if isinstance(op, Linear) and len(graph.nodes[node.inputs[0]].shape) != 1:
            raise UnsupportedOpError("Linear on a multi-dimensional input for MILP", SUPPORTED)
        return _encode_affine(m, op, xi)
    if isinstance(op, ElementwiseAffine):
        return _encode_elementwise(m, op, node.shape, xi)
    if isinstance(op, Activation) and op.kind == "relu":
        return _encode_relu(m, ctx.bounds[node.inputs[0]], b, xi, binaries)
    raise UnsupportedOpError(f"op {op.describe()} for MILP/LP", SUPPORTED)


def _encode_affine(m: _Model, op, xi: np.ndarray) -> np.ndarray:
    """y = W x + bias as equality rows (Linear, or a convolution unrolled to DenseAffine)."""
    W = op.weight.cpu().numpy()
    n = W.shape[0]
    bias = np.zeros(n) if op.bias is None else op.bias.cpu().numpy()
    y = m.cols(np.full(n, -m.inf), np.full(n, m.inf))
    idx = np.concatenate([y[:, None], np.broadcast_to(xi, (n, len(xi)))], 1)
    m.rows(bias, bias, idx, np.concatenate([np.ones((n, 1)), -W], 1))
    return y


def _encode_elementwise(m: _Model, op: ElementwiseAffine, shape, xi: np.ndarray) -> np.ndarray:
    """y = scale * x + shift elementwise, as equality rows."""
    n = len(xi)
    sc = np.ones(n) if op.scale is None else torch.broadcast_to(op.scale, shape).reshape(-1).cpu().numpy()
    sh = np.zeros(n) if op.shift is None else torch.broadcast_to(op.shift, shape).reshape(-1).cpu().numpy()
    y = m.cols(np.full(n, -m.inf), np.full(n, m.inf))
    m.rows(sh, sh, np.stack([y, xi], 1), np.stack([np.ones(n), -sc], 1))
    return y


def _encode_relu(m: _Model, pre, b: int, xi: np.ndarray, binaries: list[int]) -> np.ndarray:
    """y = max(x, 0) given sample b's pre-activation bounds `pre`: stable neurons exactly (y = x or y = 0),
    unstable ones by the big-M rows of the module docstring with a new binary (appended to `binaries`)."""
    lo = pre.lower[b].reshape(-1).cpu().numpy()
    hi = pre.upper[b].reshape(-1).cpu().numpy()
    y = m.cols(np.maximum(lo, 0.0), np.maximum(hi, 0.0))
    act, dead = lo >= 0, hi <= 0
    ia, idd, iu = np.flatnonzero(act), np.flatnonzero(dead), np.flatnonzero(~act & ~dead)
    m.rows(0.0, 0.0, np.stack([y[ia], xi[ia]], 1), np.tile([1.0, -1.0], (len(ia), 1)))
    m.rows(0.0, 0.0, y[idd][:, None], np.ones((len(idd), 1)))
    if len(iu):
        a = m.cols(np.zeros(len(iu)), np.ones(len(iu)))
        binaries.extend(a.tolist())
        yu, xu, lu, hu = y[iu], xi[iu], lo[iu], hi[iu]
        m.rows(0.0, m.inf, np.stack([yu, xu], 1), np.tile([1.0, -1.0], (len(iu), 1)))  # y >= x
        m.rows(-m.inf, 0.0, np.stack([yu, a], 1), np.stack([np.ones(len(iu)), -hu], 1))  # y <= u a
        m.rows(-m.inf, -lu, np.stack([yu, xu, a], 1),
               np.stack([np.ones(len(iu)), -np.ones(len(iu)), -lu], 1))  # y <= x - l + l a
    return y


class SolverError(CertnnError):
    """The LP/MILP solver ended without a usable bound (never turned into a bound)."""


def _float64(graph: Graph, spec: LpBall) -> tuple[Graph, LpBall]:
    """The encoding is always built in float64: float32 weights and intermediate bounds rounded to float32
    can cut off the input set's true values and make the MILP infeasible."""
    import dataclasses

    if graph.dtype != torch.float64:
        graph = graph.to(torch.float64)
    if spec.center.dtype != torch.float64:
        f = lambda t: None if t is None else t.to(torch.float64)  # noqa: E731
        clip = None if spec.clip is None else (f(spec.clip[0]), f(spec.clip[1]))
        spec = dataclasses.replace(spec, center=f(spec.center), eps=f(spec.eps), clip=clip, scale=f(spec.scale))
    return graph, spec


def _dense(graph: Graph) -> Graph:
    """Convs, zero pads and average pools as dense affine rows (the LP needs the rows anyway)."""
    from ..graph.passes import unroll_convs

    return unroll_convs(graph)


def _prepare(graph: Graph, spec: LpBall) -> RunContext:
    if spec.norm == "2":
        raise UnsupportedOpError("L2 balls for the MILP/LP methods (not linear)", ["inf", "1"])
    check_supported(graph)
    ctx = RunContext(graph, spec, get_method("crown"))
    with torch.no_grad():
        compute_intermediate_bounds(ctx)
    return ctx


def exact_bounds(graph: Graph, spec: LpBall, C: Tensor | None = None, relax: bool = False,
                 time_limit: float | None = None) -> tuple[Tensor, Tensor]:
    """Bounds (B, S) of C · f over the input set by MILP (exact) or LP (relax=True), one sample at a time.

    Soundness: an optimal MILP objective is read together with HiGHS' dual bound (the smaller for a
    minimum), so a nonzero MIP gap or a time limit still gives a sound (looser) bound; a solver that ends
    without a bound raises.
    """
    hp = _highs()
    graph, spec = _float64(graph, spec)
    graph = _dense(graph)
    ctx = _prepare(graph, spec)
    B = spec.batch
    K = int(np.prod(graph.output_shape))
    Cn = (torch.eye(K, dtype=torch.float64).expand(B, K, K) if C is None
          else C.reshape(B, C.shape[1], -1)).cpu().numpy()
    lows = np.zeros((B, Cn.shape[1]))
    highs = np.zeros((B, Cn.shape[1]))
    for b in range(B):
        m = _Model(hp)
        if time_limit:
            m.h.setOptionValue("time_limit", float(time_limit))
        cols, binaries = _encode(m, graph, ctx, b, spec)
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
                    raise SolverError(f"the MILP/LP solver HiGHS ended with status {st} on sample {b} and gave no "
                                      "bound; try another method (e.g. crown)")
                store[b, s_i] = sense * val
    return torch.as_tensor(lows), torch.as_tensor(highs)


@dataclass(frozen=True)
class ConjunctionResult:
    """Outcome of :func:`solve_conjunction` for one sample.

    status: 'infeasible' (proved: no x in the set has C f(x) <= d), 'candidate' (the solver's x, to be
    checked by a forward pass), or 'unknown' (time limit, or LP relaxation without a proof).
    t_lower: a proved lower bound of min_x max_i (C_i f(x) - d_i) (-inf if none); x: the candidate (flat).
    """

    status: str
    t_lower: float
    x: np.ndarray | None


def solve_conjunction(graph: Graph, spec: LpBall, C: np.ndarray, d: np.ndarray, relax: bool = False,
                      time_limit: float | None = None) -> list[ConjunctionResult]:
    """Is there an x in the input set with C f(x) <= d (every row)? One answer per sample of `spec`.

    C (k, K) over the flattened output, d (k,). Minimises t subject to C_i y - d_i <= t (module docstring).

    Soundness: 'infeasible' needs the LP optimum, or the MILP's dual bound, above PROOF_MARGIN (1e-6);
    a candidate is only a candidate (solver tolerances), the caller checks it.

    time_limit: seconds for the whole call, the encoding included (the solver gets what is left; a sample
    whose encoding used it all is 'unknown' without a solve).
    """
    import time

    hp = _highs()
    t_end = None if not time_limit else time.perf_counter() + float(time_limit)
    graph, spec = _float64(graph, spec)
    ctx = _prepare(graph, spec)
    C = np.asarray(C, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    results = []
    for b in range(spec.batch):
        m = _Model(hp)
        cols, binaries = _encode(m, graph, ctx, b, spec)
        if t_end is not None:
            left = t_end - time.perf_counter()
            if left <= 0.01:
                results.append(ConjunctionResult("unknown", -np.inf, None))
                continue
            m.h.setOptionValue("time_limit", left)
        if not relax:
            m.integer(np.array(binaries, dtype=np.int64))
        out = cols[graph.output_name]
        t = m.cols(np.array([-m.inf]), np.array([m.inf]))[0]
        k = C.shape[0]
        idx = np.concatenate([np.broadcast_to(out, (k, len(out))), np.full((k, 1), t)], 1)
        m.rows(-m.inf, d, idx, np.concatenate([C, -np.ones((k, 1))], 1))  # C y - t <= d
        cost = np.zeros(m.n)
        cost[t] = 1.0
        m.h.changeColsCost(m.n, np.arange(m.n, dtype=np.int32), cost)
        m.h.run()
        results.append(_answer(hp, m, relax, len(binaries) > 0, cols[graph.input_name]))
    return results


def _answer(hp, m: "_Model", relax: bool, has_binaries: bool, input_cols) -> ConjunctionResult:
    """The solved model's outcome: 'infeasible' when its proved lower bound (LP optimum, MILP dual bound)
    exceeds PROOF_MARGIN, else a candidate point (MILP) or 'unknown' (LP: a point without a proof)."""
    st = m.h.getModelStatus()
    info = m.h.getInfo()
    is_mip = (not relax) and has_binaries
    lower = -np.inf
    if st == hp.HighsModelStatus.kOptimal:
        lower = info.objective_function_value
        if is_mip and np.isfinite(info.mip_dual_bound):
            lower = min(lower, info.mip_dual_bound)
    elif is_mip and np.isfinite(info.mip_dual_bound):
        lower = info.mip_dual_bound
    elif st == hp.HighsModelStatus.kInfeasible:
        lower = np.inf  # the input set itself is empty (cannot happen for a nonempty box)
    x = None
    try:
        sol = m.h.getSolution()
        if sol.value_valid:
            x = np.asarray(sol.col_value)[input_cols]
    except Exception:  # noqa: BLE001 - no solution available
        x = None
    if lower > PROOF_MARGIN:
        return ConjunctionResult("infeasible", float(lower), None)
    if x is not None and not relax:
        return ConjunctionResult("candidate", float(lower), x)
    return ConjunctionResult("unknown", float(lower), x if relax else None)
