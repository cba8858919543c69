"""Run state of one bound computation: created per call, never stored on modules or globals."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from torch import Tensor

from ..domains.interval import Interval
from ..graph.ir import Graph
from ..relax.types import LinearRelaxation
from ..specs.lp import LpBall
from .methods import Method


@dataclass
class RunContext:
    graph: Graph
    spec: LpBall
    method: Method
    #: cached interval bounds per node name (intermediate bounds)
    bounds: dict[str, Interval] = field(default_factory=dict)
    #: optional per-node lower slopes for ReLU-like activations (alpha-CROWN style)
    alphas: dict[str, Tensor] = field(default_factory=dict)
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

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.nodes[name].shape

    @property
    def batch(self) -> int:
        return self.spec.batch

    def relaxation(self, op, node_name: str, l: Tensor, u: Tensor) -> LinearRelaxation:
        return self.method.relax(op, l, u, alpha=self.alphas.get(node_name))

    @contextmanager
    def timer(self, key: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timers[key] = self.timers.get(key, 0.0) + time.perf_counter() - t0
