"""Verification of VNN-LIB properties: ``holds`` (unsat), ``violated`` (sat, with a checked
counterexample) or ``unknown``.

A VNN-LIB file describes the UNSAFE set (specs/vnnlib.py): the property is violated iff for some region r
(input box B_r) and some conjunction (C, d) of r's output constraint there is x in B_r with
C f(x) <= d in every row. Writing g_i(x) = C_i f(x) - d_i, it holds iff for every region and every
conjunction, min over B_r of max_i g_i(x) > 0. A sound lower bound lb_i <= min over B_r of g_i proves a
conjunction as soon as one row has lb_i > 0 (max_i g_i >= g_i >= lb_i > 0).

Stages, cheapest first, until the time limit:

1. attack: PGD on max_i g_i over each box (attacks/box.py), starting at the centre and random points;
2. whole-box bounds with each method of ``methods`` (default ibp, crown) on every open conjunction;
3. complete search, chosen by the input size:
   a. input splitting (certify/input_split.py) for low-dimensional inputs: boxes are processed in
      batches, bounded with CROWN and then alpha-CROWN; a box whose every open conjunction is proved is
      dropped, the others are bisected along the input with the largest width x |sensitivity|; centres
      and a short PGD from them look for counterexamples on the way;
   b. otherwise, for ReLU networks, branch and bound on ReLU splits with beta-CROWN
      (certify/verify_bab.py, certnn.bab): alpha-CROWN at the root, then batches of sub-domains split and
      bounded with optimised alpha and beta; sub-domains' bound minimisers and a short PGD from them look
      for counterexamples;
4. ``lp`` then ``milp`` (engine/milp.py solve_conjunction) for ReLU networks with at most
   ``exact_max_relus`` ReLUs, with the time left: infeasible -> proved; a MILP solution is a candidate.

A counterexample is reported only after it is checked: it is rounded to float32 (the precision ONNX
models run in) inside the box, and both the certnn graph in float64 and the reference (onnxruntime when
given) must put it in the unsafe set.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..attacks.box import minimize_on_boxes
from ..config import Config
from ..errors import SpecError, UnsupportedOpError
from ..graph.ir import Graph
from ..specs.vnnlib import VnnlibProperty, property_violated
from ..bab.config import BabConfig
from ..engine.methods import get_method
from ..optimize.config import AlphaConfig
from .bounds import bounds_for_spec
from .input_split import input_split
from .verify_bab import relu_bab
from .verify_problem import Problem, box_spec

__all__ = ["VerifyConfig", "VerifyResult", "verify_property"]

Reference = Callable[[np.ndarray], np.ndarray]  # (N, *in_shape) float32 -> (N, K)


@dataclass(frozen=True)
class VerifyConfig(Config):
    """Settings of :func:`verify_property`.

    timeout: seconds for the whole property. methods: bound methods for whole boxes, in order.
    attack_steps / attack_restarts: the initial PGD (attack_restarts_small restarts for inputs of at
    most 64 values; at most attack_max_points points in all), stopped after attack_share * timeout
    seconds. split: input branch and bound when the input has at most split_max_inputs values;
    split_batch boxes per bound computation, bounded with each of split_methods in turn (the later ones
    only on boxes still open; alpha-crown with split_alpha; on small nets CROWN alone proved acasxu
    prop_1 twice as fast as CROWN then alpha-CROWN); split_branching: the input each open box is halved
    along: 'gradient' (width x |gradient of the open rows| at the centre), 'sb' (width x |input
    coefficient| of each open conjunction's best row in its CROWN bound) or 'mixed' (the sum of both,
    each scaled by its largest score in the box; docs/benchmarks.md: on ACAS Xu each alone leaves
    instances the other proves). bab: otherwise branch and bound on ReLU
    splits (beta-CROWN, bab_config) for ReLU networks, with bab_share of the remaining time when an exact
    stage follows. exact: 'auto' (lp then milp when the network can be encoded and has at most
    exact_max_relus ReLUs), 'lp', 'milp', or 'none'. seed: seed of the attacks. input_dtype: the element
    type of the model's input (float32, float64, float16); counterexamples are rounded to it before they
    are checked.
    """

    timeout: float = 60.0
    methods: tuple = ("ibp", "crown")
    attack: bool = True
    attack_steps: int = 60
    attack_restarts: int = 4
    attack_restarts_small: int = 512
    attack_share: float = 0.25
    attack_max_points: int = 65536
    split: bool = True
    split_max_inputs: int = 32
    split_batch: int = 512
    split_methods: tuple = ("crown",)
    split_alpha: AlphaConfig = AlphaConfig(iterations=5, lr=0.1)
    split_branching: str = "mixed"
    bab: bool = True
    bab_config: BabConfig = BabConfig()
    bab_share: float = 0.85
    exact: str = "auto"
    exact_max_relus: int = 1000
    seed: int = 0
    #: element type counterexamples are rounded to before they are checked (the ONNX input's type)
    input_dtype: str = "float32"

    choices: ClassVar[dict] = {"exact": ("auto", "lp", "milp", "none"), "split_branching": ("gradient", "sb", "mixed"),
                               "input_dtype": ("float32", "float64", "float16")}


@dataclass
class VerifyResult:
    """verdict: 'holds' | 'violated' | 'unknown'. For 'violated': x (flat input, float32-representable),
    y (certnn float64 output) and y_reference (onnxruntime's, when a reference was given)."""

    verdict: str
    decided_by: str
    time_s: float
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    y_reference: np.ndarray | None = None
    stages: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "decided_by": self.decided_by, "time_s": self.time_s,
                "stages": self.stages,
                "counterexample": None if self.x is None else {"x": self.x.tolist(), "y": self.y.tolist()}}


class _Verifier:
    def __init__(self, graph: Graph, prop: VnnlibProperty, cfg: VerifyConfig, reference: Reference | None,
                 started_at: float | None = None, device=None):
        from .device import resolve_device

        n = int(np.prod(graph.input_shape))
        K = int(np.prod(graph.output_shape))
        if prop.n_inputs != n or prop.n_outputs != K:
            raise SpecError(f"the property has {prop.n_inputs} inputs and {prop.n_outputs} outputs; the model "
                            f"has {n} input values of shape {graph.input_shape} and {K} outputs")
        self.device = resolve_device(device)
        # bounds, attacks and the searches run on the device; counterexamples are checked (and the exact
        # stages encoded) on the cpu graph, so a verdict does not depend on the device's rounding
        self.cpu_graph = graph.to(torch.float64)
        self.graph = self.cpu_graph.to(device=self.device)
        self.prop = prop
        self.cfg = cfg
        self.reference = reference
        self.p = Problem(prop, device=self.device)
        self.t0 = time.perf_counter() if started_at is None else started_at
        self.deadline = self.t0 + cfg.timeout
        self.stages: list[dict] = []
        # open[r, j]: conjunction j of region r not yet proved
        self.open = self.p.exists.clone()
        self.found: tuple | None = None

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def fn(self, x_flat: Tensor, graph: Graph | None = None) -> Tensor:
        """Outputs (N, K) of flat inputs (N, n) through `graph` (default: the graph on the device)."""
        g = self.graph if graph is None else graph
        return g.forward(x_flat.reshape((x_flat.shape[0],) + g.input_shape)).reshape(x_flat.shape[0], -1)

    # -- counterexamples ------------------------------------------------------------------------------
    def check(self, x: Tensor, rid: Tensor) -> bool:
        """Check candidate points (N, n) of regions rid; on success store the first and return True."""
        if x.shape[0] == 0:
            return False
        lo, hi = self.p.lo[rid].cpu().numpy(), self.p.hi[rid].cpu().numpy()
        dt = np.dtype(self.cfg.input_dtype)  # the model's input element type (float32 unless told)
        x = x.detach().cpu()
        xs = x.numpy().astype(dt)
        xs = np.where(xs < lo, np.nextafter(xs, dt.type(np.inf)), xs)
        xs = np.where(xs > hi, np.nextafter(xs, dt.type(-np.inf)), xs)
        x64 = np.where((xs >= lo) & (xs <= hi), xs.astype(np.float64), np.clip(x.numpy(), lo, hi))
        with torch.no_grad():
            y = self.fn(torch.as_tensor(x64), self.cpu_graph).numpy()
        ok = [i for i in range(len(x64)) if property_violated(self.prop, x64[i], y[i])]
        if not ok:
            return False
        cand = x64[ok]
        yref = None
        if self.reference is not None:
            yref = np.asarray(self.reference(cand.reshape((len(cand),) + self.graph.input_shape)),
                              dtype=np.float64).reshape(len(cand), -1)
            good = [i for i in range(len(cand)) if property_violated(self.prop, cand[i], yref[i])]
            if not good:
                return False
            i = good[0]
        else:
            i = 0
        self.found = (cand[i], y[ok[i]], None if yref is None else yref[i])
        return True

    def log(self, stage: str, t: float, **kw) -> None:
        self.stages.append({"stage": stage, "seconds": round(time.perf_counter() - t, 4), **kw})

    # -- stages --------------------------------------------------------------------------------------
    def trivial(self) -> bool:
        """A conjunction without rows makes every input of its region a counterexample."""
        rid = torch.nonzero(self.p.empty_conj.any(1)).reshape(-1)
        if rid.numel():
            return self.check((self.p.lo[rid] + self.p.hi[rid]) / 2, rid)
        return False

    def attack(self, rid: Tensor, lo: Tensor, hi: Tensor, conj_open: Tensor, steps: int, restarts: int,
               start: Tensor | None = None, seed: int = 0, deadline: float | None = None) -> bool:
        """PGD per (box, open conjunction) pair; checks the best points."""
        b, j = torch.nonzero(conj_open, as_tuple=True)
        if b.numel() == 0:
            return False
        r = rid[b]
        restarts = max(1, min(restarts, self.cfg.attack_max_points // b.numel()))  # bounds memory
        C = self.p.C[r]
        d = torch.where(self.p.rowconj[r] == j[:, None], self.p.d[r], torch.full_like(self.p.d[r], math.inf))
        x, v = minimize_on_boxes(self.fn, lo[b], hi[b], C, d, steps=steps, restarts=restarts, seed=seed,
                                 start=None if start is None else start[b], deadline=deadline)
        order = torch.argsort(v)
        cand = order[v[order] <= 0][:64]
        return self.check(x[cand], r[cand])

    def box_bounds(self, method: str, rid: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        """Lower bounds (N, J) of max_i g_i per box and conjunction (-inf where unknown)."""
        return self.p.conj_max(rid, self.row_bounds(method, rid, lo, hi)[0])

    def row_bounds(self, method: str, rid: Tensor, lo: Tensor, hi: Tensor,
                   coefficients: bool = False) -> tuple[Tensor, Tensor | None]:
        """Lower bounds (N, S) of g = C f - d per box and row; with `coefficients` (backward methods) also
        the linear lower bounds' input coefficients (N, S, n) (e.g. for choosing an input to split)."""
        spec = box_spec(lo, hi, self.graph.input_shape)
        C = self.p.C[rid]
        if coefficients and get_method(method).engine == "backward":
            from ..engine.backward import bound_output
            from ..engine.context import RunContext

            ctx = RunContext(self.graph, spec, get_method(method))
            ctx.capture = {self.graph.input_name}
            with torch.no_grad():
                lb, _ = bound_output(ctx, C, upper=False)
            A = ctx.captured.get(self.graph.input_name)
            return lb - self.p.d[rid], None if A is None else A.reshape(A.shape[0], A.shape[1], -1)
        lb, _, _ = bounds_for_spec(self.graph, spec, method, C, upper=False, alpha=self.cfg.split_alpha)
        return lb - self.p.d[rid], None

    def whole_boxes(self, method: str) -> None:
        t = time.perf_counter()
        R = self.p.lo.shape[0]
        rid = torch.arange(R, device=self.p.lo.device)
        proved = self.box_bounds(method, rid, self.p.lo, self.p.hi) > 0
        self.open &= ~proved
        self.log(method, t, open=int(self.open.sum()))

    def exact(self, kind: str) -> None:
        from ..engine.milp import solve_conjunction
        t = time.perf_counter()
        for r, j in torch.nonzero(self.open).tolist():
            left = self.left()
            if left <= 0.05:
                break
            conj = self.prop.regions[r].output_constraint[j]
            spec = box_spec(self.p.lo[r:r + 1].cpu(), self.p.hi[r:r + 1].cpu(), self.graph.input_shape)
            res = solve_conjunction(self.exact_graph, spec, conj.C, conj.d, relax=kind == "lp", time_limit=left)[0]
            if res.status == "infeasible":
                self.open[r, j] = False
            elif res.x is not None and res.t_lower <= 0 and self.check(torch.as_tensor(res.x)[None],
                                                                         torch.tensor([r])):
                return self.log(kind, t, result="violated")
        self.log(kind, t, open=int(self.open.sum()))

    def exact_ok(self) -> bool:
        """Whether the lp/milp stages apply; convolutions are unrolled to their dense form for them."""
        from ..engine.milp import check_supported, relu_neurons
        if relu_neurons(self.graph) > self.cfg.exact_max_relus:
            return False
        self.exact_graph = self.cpu_graph  # (the lp / milp encodings read the weights on the cpu)
        try:
            check_supported(self.cpu_graph)
            return True
        except UnsupportedOpError:
            pass
        try:
            from ..graph.passes import unroll_convs
            g = unroll_convs(self.cpu_graph)
            check_supported(g)
        except (ImportError, UnsupportedOpError):
            return False
        self.exact_graph = g
        return True

    def run(self) -> VerifyResult:
        cfg = self.cfg
        R = self.p.lo.shape[0]
        if self.trivial():
            return self.result("violated", "trivial")
        if cfg.attack:
            t = time.perf_counter()
            all_r = torch.arange(R, device=self.p.lo.device)
            # restarts shrink with the input size; the attack gets at most attack_share of the time
            restarts = cfg.attack_restarts_small if self.prop.n_inputs <= 64 else cfg.attack_restarts
            hit = self.attack(all_r, self.p.lo, self.p.hi, self.open & ~self.p.empty_conj, cfg.attack_steps,
                              restarts, seed=cfg.seed, deadline=t + cfg.attack_share * cfg.timeout)
            self.log("attack", t, result="violated" if hit else "none")
            if hit:
                return self.result("violated", "attack")
        for method in cfg.methods:
            if self.left() <= 0:
                return self.result("unknown", "timeout")
            self.whole_boxes(method)
            if not self.open.any():
                return self.result("holds", method)
        exact = cfg.exact
        exact_stages = [] if exact == "none" else (["lp", "milp"] if exact == "auto" else [exact])
        if exact_stages and not self.exact_ok():
            self.stages.append({"stage": "exact", "seconds": 0.0,
                                "result": f"skipped (not a ReLU network of at most {cfg.exact_max_relus} ReLUs "
                                          "with linear layers)"})
            exact_stages = []
        if cfg.split and self.prop.n_inputs <= cfg.split_max_inputs and self.left() > 0:
            input_split(self, self.left() * (0.7 if exact_stages else 1.0))
            if self.found is not None:
                return self.result("violated", "split")
            if not self.open.any():
                return self.result("holds", "split")
        elif cfg.bab and self.left() > 0 and any(self.graph.nodes[n].op.kind == "relu" for n in self.graph.order):
            relu_bab(self, self.left() * (cfg.bab_share if exact_stages else 1.0))
            if self.found is not None:
                return self.result("violated", "bab")
            if not self.open.any():
                return self.result("holds", "bab")
        for kind in exact_stages:
            if self.left() <= 0.05:
                break
            self.exact(kind)
            if self.found is not None:
                return self.result("violated", kind)
            if not self.open.any():
                return self.result("holds", kind)
        return self.result("unknown", "timeout" if self.left() <= 0.05 else "exhausted")

    def result(self, verdict: str, by: str) -> VerifyResult:
        x = y = yr = None
        if verdict == "violated":
            x, y, yr = self.found
        return VerifyResult(verdict, by, time.perf_counter() - self.t0, x, y, yr, self.stages)


def verify_property(graph: Graph, prop: VnnlibProperty, config: VerifyConfig = VerifyConfig(),
                    reference: Reference | None = None, started_at: float | None = None,
                    device=None) -> VerifyResult:
    """Decide a VNN-LIB property on a certnn graph: 'holds', 'violated' (with a checked counterexample) or
    'unknown'. ``reference`` (e.g. onnxruntime on the original ONNX model) must agree that a
    counterexample is one. The timeout counts from `started_at` (a time.perf_counter() value, e.g. the
    process start, so that imports and model loading count too; default: now). device: where the bounds,
    attacks and searches run ("cpu" default, "cuda", "auto"; counterexamples are checked on the cpu). See
    the module docstring for the stages and their soundness."""
    return _Verifier(graph, prop, config, reference, started_at, device).run()
