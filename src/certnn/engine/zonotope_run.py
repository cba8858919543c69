"""Run state of the forward zonotope pass (engine/zonotope.py): a node's value with its rounding-error bound
(:class:`ZVal`), the per-call state (:class:`ZonotopeRun`), the registry of per-op rules
(:data:`ZONOTOPE_RULES`, ``@zonotope_rule(kind)``), sound interval hulls and order reduction
(:func:`consolidate`). The floating-point model (err, gamma_n, IBP_ULPS) is described in
:mod:`certnn.engine.zonotope`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..domains.symbols import SymbolTable
from ..domains.zonotope import Zonotope
from ..errors import UnsupportedOpError
from ..graph.ir import Node
from .context import RunContext
from .zonotope_stats import radius_and_magnitude


@dataclass
class ZVal:
    """A node's zonotope and its rounding-error bound err (B, *shape): true set ⊆ z + [-err, err], with
    err = base_err + self_coef * (|c| + sum_k |g_k|) (the second term lets a rule charge rounding in
    proportion to its own output without an extra pass over the generators).

    ``stats()`` (computed once, lazily): the concretised radius (dual norms over L2/L1 input groups, L1 over
    the other symbols) and the magnitude |c| + sum_k |g_k|, both (B, *shape), from one pass over the
    generators (contiguous id ranges, no copies)."""

    z: Zonotope
    base_err: Tensor
    self_coef: float = 0.0
    _stats: tuple[Tensor, Tensor] | None = field(default=None, repr=False)
    _err: Tensor | None = field(default=None, repr=False)

    def stats(self) -> tuple[Tensor, Tensor]:
        if self._stats is None:
            self._stats = radius_and_magnitude(self.z)
        return self._stats

    @property
    def mag(self) -> Tensor:
        return self.stats()[1]

    @property
    def err(self) -> Tensor:
        if self._err is None:
            self._err = self.base_err if self.self_coef == 0 else self.base_err + self.self_coef * self.mag
        return self._err

    def pruned(self, z: Zonotope) -> "ZVal":
        """The same value with z = this zonotope minus all-zero symbols (stats unchanged)."""
        return ZVal(z, self.base_err, self.self_coef, self._stats, self._err)


@dataclass
class ZonotopeRun:
    """Per-call state of one zonotope pass."""

    ctx: RunContext
    table: SymbolTable = field(default_factory=SymbolTable)
    #: interval (IBP) bounds of every node over the (clipped) input box, intersected with every hull
    ibp: dict[str, Interval] = field(default_factory=dict)
    #: collapse the smallest relaxation symbols into one fresh box symbol per neuron when a nonlinear op's
    #: output has more than this many of them (None: never; sound, see :func:`consolidate`)
    max_symbols: int | None = None
    #: largest number of symbols seen on one node
    peak_symbols: int = 0

    @property
    def unit(self) -> float:
        return float(torch.finfo(self.ctx.spec.center.dtype).eps)

    def gamma(self, n: int) -> float:
        """2 * gamma_n (the factor 2 covers rounding in the error bound itself)."""
        nu = n * self.unit
        return 2.0 * nu / (1.0 - nu) if nu < 0.5 else math.inf


#: widening (in ulps of the magnitudes involved) of IBP bounds before they are intersected with hulls
IBP_ULPS = 1024.0

Rule = Callable[[ZonotopeRun, Node, tuple[ZVal, ...]], ZVal]
ZONOTOPE_RULES: dict[str, Rule] = {}


def zonotope_rule(*kinds: str) -> Callable[[Rule], Rule]:
    """Register a rule for the given op kinds."""
    def deco(fn: Rule) -> Rule:
        for k in kinds:
            if k in ZONOTOPE_RULES:
                raise ValueError(f"zonotope rule for {k!r} already registered")
            ZONOTOPE_RULES[k] = fn
        return fn
    return deco


# ---- helpers ----------------------------------------------------------------------------------------
def magnitude(z: Zonotope) -> Tensor:
    """|c| + sum_k |g_k| (B, *shape): bounds every |value| and the rounding-relevant size of the form."""
    return radius_and_magnitude(z)[1]


def hull(run: ZonotopeRun, name: str, v: ZVal) -> tuple[Tensor, Tensor]:
    """Sound interval hull (l, u) of node `name`: zonotope concretisation widened by err and by gamma_K of
    the radius, intersected with the IBP bounds."""
    r, _ = v.stats()
    c = v.z.center
    w = v.err + run.gamma(v.z.num_symbols + 2) * (r + c.abs())
    lo, hi = c - r - w, c + r + w
    iv = run.ibp.get(name)
    if iv is not None:
        # the IBP pass does not track its own rounding: widen it by IBP_ULPS ulps of the magnitudes
        tol = IBP_ULPS * run.unit * (iv.lower.abs() + iv.upper.abs() + v.mag)
        lo, hi = torch.maximum(lo, iv.lower - tol), torch.minimum(hi, iv.upper + tol)
        # both are sound, so they intersect up to rounding; guard against a crossing by rounding
        lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)
    return lo, hi


def _unsupported(kind: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"op {kind!r} for the zonotope engine", ZONOTOPE_RULES.keys(),
                              hint="any AffineOp is also supported through its bias-free forward")


def _prune(z: Zonotope) -> Zonotope:
    """Drop symbols whose generators are zero in every batch row and neuron (exact)."""
    K = z.num_symbols
    if K == 0:
        return z
    used = z.generators.reshape(z.batch, K, -1).ne(0).any(2).any(0)
    if bool(used.all()):
        return z
    return Zonotope(z.center, z.generators[:, used], z.ids[used], z.table)


def consolidate(run: ZonotopeRun, z: Zonotope, cap: int, keep_input: bool = True) -> Zonotope:
    """Order reduction: when z has more than `cap` droppable symbols (relaxation symbols; input symbols too
    unless keep_input; never the jointly constrained symbols of an L2 / L1 input group), keep the cap // 2
    largest of them (by sum of |g| over batch and neurons) and replace the others by one *fresh* symbol per
    neuron with radius sum |g|.

    Soundness: for any values of the removed symbols, each neuron's removed part sum_k g_k eps_k lies in
    [-r, r] with r = sum_k |g_k|, so some value of the fresh symbol in [-1, 1] reproduces it. Because the
    fresh symbols appear in no other zonotope, choosing them as functions of the removed symbols is allowed:
    the joint set of (this node, every other live node) is over-approximated, not just this node's hull.
    """
    K = z.num_symbols
    if K <= cap:
        return z
    free = torch.ones(K, dtype=torch.bool, device=z.ids.device)
    for g in run.table.norm_groups():
        free &= ~((z.ids >= g.start) & (z.ids < g.stop))
    if keep_input:
        free &= ~run.table.is_input(z.ids)
    if int(free.sum()) <= cap:
        return z
    keep = cap // 2 + int((~free).sum())
    score = z.generators.abs().reshape(z.batch, K, -1).sum((0, 2))
    score = torch.where(free, score, torch.full_like(score, math.inf))
    n_drop = K - keep
    drop = torch.zeros(K, dtype=torch.bool, device=z.ids.device)
    order = torch.argsort(score)
    drop[order[:n_drop]] = True
    drop &= free
    if not bool(drop.any()):
        return z
    r = torch.linalg.vector_norm(z.generators[:, drop], 1, dim=1)
    kept = Zonotope(z.center, z.generators[:, ~drop], z.ids[~drop], z.table)
    return kept._with_fresh(r * (1 + run.gamma(int(drop.sum()) + 1)), label="consolidated")


__all__ = ["ZONOTOPE_RULES", "zonotope_rule", "Rule", "ZonotopeRun", "ZVal", "IBP_ULPS", "consolidate", "hull",
           "magnitude"]
