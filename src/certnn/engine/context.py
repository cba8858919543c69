"""Run state of one bound computation: created per call, never stored on modules or globals."""
from __future__ import annotations

import time
from contextlib import contextmanager
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from ..domains.interval import Interval
from ..graph.ir import Graph
from ..relax.types import LinearRelaxation, PlaneRelaxation
from ..specs.lp import LpBall
from .methods import Method
from .rounding import Rounding


@dataclass
class RunContext:
    graph: Graph
    spec: LpBall
    method: Method
    #: cached interval bounds per node name (intermediate bounds)
    bounds: dict[str, Interval] = field(default_factory=dict)
    #: optimised lines per activation node (alpha-CROWN, certnn.optimize): node -> fn(op, l, u) returning a
    #: LinearRelaxation whose tensors may carry a spec-row dim, (B, S or 1, *shape); set per backward pass
    line_params: dict[str, Callable] = field(default_factory=dict)
    #: optimised planes per two-input product node: node -> fn(op, lx, ux, ly, uy) -> PlaneRelaxation
    #: (tensors (B, S or 1, *shape))
    plane_params: dict[str, Callable] = field(default_factory=dict)
    #: Lagrangian terms of split constraints (beta-CROWN, certnn.bab): node of an activation -> a tensor
    #: (B, S or 1, *input shape) added to the *lower-bound* coefficients of that activation's input
    split_terms: dict[str, Tensor] = field(default_factory=dict)
    #: node names whose lower-bound coefficients (of the node's output, (B, S, *shape)) a backward pass
    #: stores in `captured` (the input node's: the final linear function of the input)
    capture: set = field(default_factory=set)
    captured: dict[str, Tensor] = field(default_factory=dict)
    #: at most this many spec rows per backward pass (bounds memory for wide layers)
    max_rows: int = 4096
    #: at most this many coefficient entries per tensor in one backward pass of intermediate bounds
    #: (rows per pass = max_elements // (batch * largest node size on the path)); bounds peak memory
    #: independently of how many neurons a conv layer has
    max_elements: int = 2 ** 25
    #: intermediate bounds of (C, H, W) nodes on receptive-field windows (engine/patches.py); False keeps
    #: full-size (B, rows, C, H, W) coefficients (same bounds, slower; used to check patches mode)
    patches: bool = True
    timers: dict[str, float] = field(default_factory=dict)
    #: float32-sound (engine/rounding.py): the rounding model, and per node max(|l|, |u|) of its value and
    #: |J| m_in + |b| of affine nodes; None / unused in plain float32 and float64
    rounding: "Rounding | None" = None
    magnitudes: dict[str, Tensor] = field(default_factory=dict)
    affine_mags: dict[str, Tensor] = field(default_factory=dict)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.nodes[name].shape

    @property
    def batch(self) -> int:
        return self.spec.batch

    #: planes of two-input ops per node, with the interval objects they were computed from
    plane_cache: dict[str, tuple] = field(default_factory=dict)

    #: lines of activations per node (without alpha), with the bound tensors they were computed from
    relax_cache: dict[str, tuple] = field(default_factory=dict)

    #: values computed once per call and shared by its backward passes (engine/input_projection.py)
    memo: dict = field(default_factory=dict)

    def relaxation(self, op, node_name: str, l: Tensor, u: Tensor, coef: Tensor | None = None) -> LinearRelaxation:
        """The method's lines for an activation on [l, u]; computed once per node and bounds (a backward
        pass through an unrolled RNN meets the same activation once per later step). Optimised lines
        (`line_params`) take precedence; they may carry a spec-row dim and are never cached. coef: the
        coefficients of a lower-bound-only pass; optimised lines may then leave the intercepts it does
        not use at 0 (optimize/lines.selected_sshape_lines)."""
        opt = self.line_params.get(node_name)
        if opt is not None:
            if coef is not None and hasattr(opt, "selected"):
                return opt.selected(op, l, u, coef)
            return opt(op, l, u)
        key = (l, u)
        hit = self.relax_cache.get(node_name)
        if hit is not None and all(a is b for a, b in zip(hit[0], key)):
            return hit[1]
        with self.timer("relax"):
            rel = self.method.relax(op, l, u)
        self.relax_cache[node_name] = (key, rel)
        return rel

    def planes(self, op, node_name: str, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor,
               coef: Tensor | None = None) -> PlaneRelaxation:
        """The method's planes for a two-input op on its input box, computed once per node and box
        (optimised planes in `plane_params` take precedence and are never cached). coef: the coefficients
        of a lower-bound-only pass; optimised planes may then leave the offsets it does not use at 0
        (relax.product_select)."""
        opt = self.plane_params.get(node_name)
        if opt is not None:
            if coef is not None and hasattr(opt, "selected"):
                return opt.selected(op, lx, ux, ly, uy, coef)
            return opt(op, lx, ux, ly, uy)
        key = (lx, ux, ly, uy)
        hit = self.plane_cache.get(node_name)
        if hit is not None and all(a is b for a, b in zip(hit[0], key)):
            return hit[1]
        with self.timer("planes"):
            pl = self.method.relax_planes(op, lx, ux, ly, uy)
        self.plane_cache[node_name] = (key, pl)
        return pl

    @contextmanager
    def timer(self, key: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timers[key] = self.timers.get(key, 0.0) + time.perf_counter() - t0
