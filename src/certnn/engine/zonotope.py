"""Forward zonotope pass over the IR (DeepZ, Singh et al. NeurIPS 2018; Cert-RNN, Du et al. CCS 2021).

Every node's value set is over-approximated by a zonotope c + sum_k g_k eps_k whose noise symbols carry
identities (:mod:`certnn.domains.zonotope`). Nodes are visited in topological order; each op kind has one
rule in the explicit registry :data:`ZONOTOPE_RULES` (``@zonotope_rule("linear")``):

* affine ops (linear, elementwise_affine, reshape, slice, permute, add with sign and broadcasting, concat,
  and any other :class:`~certnn.ops.base.AffineOp`, e.g. a convolution, through its bias-free forward)
  map the zonotope exactly;
* an activation f asks the method's table for two *parallel* lines a x + c_lo <= f(x) <= a x + c_hi on the
  input's interval hull [l, u] and returns a z + (c_lo + c_hi)/2 plus one fresh symbol per neuron of
  radius (c_hi - c_lo)/2;
* a product F(x, y) (sigmoid_tanh_mul, sigmoid_mul, mul) asks for two parallel planes on the box
  [lx, ux] x [ly, uy] and returns A zx + B zy + (C1 + C2)/2 plus one fresh symbol per neuron of radius
  (C2 - C1)/2. The inputs' symbols are aligned by id, so shared symbols (x * x, h_{t-1} in two gates) keep
  their correlation and unrelated ones never alias.

The final margins C · z_out are one affine form per row, concretised once: the difference f_y - f_j is
bounded as a whole, never as the difference of separately bounded logits.

Input set: L∞ (ball ∩ clip box) is a box, represented exactly (one symbol per perturbed feature; frozen
features, scale 0, get none). L2 / L1: one jointly constrained symbol group over the perturbed features
(exact for the ball); the clip box is *not* represented in the zonotope (a sound superset); instead every
interval hull used to choose a relaxation, and the final bounds, are intersected with the interval (IBP)
bounds of the clipped box, which are sound too. For every norm this intersection with IBP is applied
(it only ever tightens).

Floating point: center and generators are computed in the tensor dtype without directed rounding. The
engine therefore carries, per node, an absolute error bound ``err`` (B, *shape) on the difference between
the computed affine form and the exact one, from the standard bound |fl(sum_i a_i b_i) - sum_i a_i b_i|
<= gamma_n sum_i |a_i b_i|, gamma_n = n u / (1 - n u): a linear map with fan-in n adds
gamma_{n+1} (|W| (|c| + sum_k |g_k|) + |b|) and propagates |W| err; elementwise maps add a few u of their
magnitudes; relaxations propagate |a| err. Each interval hull is widened by err before a relaxation is
chosen (so the lines hold for the true values), and the final bounds are widened by err and by
gamma_K of the concretised radius. The IBP bounds intersected with hulls do not track their own
rounding; they are widened by IBP_ULPS ulps of the magnitudes first. (The error bounds themselves are
computed in floating point with a factor-2 safety.) In float64 these terms are ~1e-13 relative, far below
any reported margin.

Run state (symbol table, zonotopes, error bounds, timers) lives in a per-call :class:`ZonotopeRun` and in
the :class:`~certnn.engine.context.RunContext`; nothing is stored on ops or modules.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from ..domains.interval import Interval
from ..domains.symbols import SymbolTable, union_ids
from ..domains.zonotope import Zonotope, _split, apply_planes, concat
from ..errors import UnsupportedOpError
from ..graph.fuse_gates import fuse_gate_products
from ..graph.ir import Graph, Node
from ..ops.base import AffineOp
from ..ops.shape import Slice
from .context import RunContext
from .interval import interval_pass, interval_spec
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
    r = z.generators[:, drop].abs().sum(1)
    kept = Zonotope(z.center, z.generators[:, ~drop], z.ids[~drop], z.table)
    return kept._with_fresh(r * (1 + run.gamma(int(drop.sum()) + 1)), label="consolidated")


# ---- input ------------------------------------------------------------------------------------------
@dataclass
class DiagonalInput:
    """The input set before any op: a zonotope whose symbols are one per perturbed feature (a diagonal
    generator matrix), kept as (center, radius, id per feature) so that slicing it (one frame of a sequence)
    only builds the generators of that slice's own symbols. idmap (*in_shape) int64 is -1 for frozen
    features (radius 0 in every batch row)."""

    center: Tensor
    radius: Tensor
    idmap: Tensor
    table: SymbolTable
    err: Tensor

    def slice(self, index: tuple = ()) -> ZVal:
        key = (slice(None),) + tuple(index)
        c, r, m = self.center[key], self.radius[key], self.idmap[tuple(index)]
        B = c.shape[0]
        mf, rf = m.reshape(-1), r.reshape(B, -1)
        cols = (mf >= 0).nonzero().flatten()
        ids, order = torch.sort(mf[cols])
        cols = cols[order]
        k = cols.numel()
        G = rf.new_zeros((B, k, rf.shape[1]))
        G[:, torch.arange(k, device=G.device), cols] = rf[:, cols]
        z = Zonotope(c, G.reshape(B, k, *c.shape[1:]), ids, self.table)
        return ZVal(z, self.err[key])


def input_zonotope(run: ZonotopeRun) -> DiagonalInput:
    """The input set (see the module docstring for ball ∩ box): L∞ as the clipped box, L2 / L1 as one
    jointly constrained group over the features that are perturbed in some batch row (exact: a feature with
    radius 0 contributes nothing whatever its symbol's value)."""
    spec = run.ctx.spec
    c = spec.center
    if spec.is_box:
        box = spec.box()
        center = (box.lower + box.upper) / 2
        radius = torch.maximum(box.upper - center, center - box.lower)
        err = run.gamma(2) * (center.abs() + radius)
    else:
        eps = spec.eps.reshape((-1,) + (1,) * (c.dim() - 1))
        radius = torch.broadcast_to(eps * (1.0 if spec.scale is None else spec.scale), c.shape).clone()
        center = c
        err = run.gamma(2) * radius
    B = c.shape[0]
    live = (radius.reshape(B, -1) != 0).any(0)
    if spec.frame_norm is None:
        ids = run.table.fresh(int(live.sum()), norm=spec.norm, label="input", device=c.device)
    else:  # per-frame balls: one jointly constrained group per frame, the groups independent
        lv = live.reshape(spec.frames, -1)
        ids = torch.cat([run.table.fresh(int(lv[t].sum()), norm=spec.frame_norm, label="input", device=c.device)
                         for t in range(spec.frames)])
    idmap = torch.full((live.numel(),), -1, dtype=torch.int64, device=c.device)
    idmap[live] = ids
    return DiagonalInput(center, radius, idmap.reshape(c.shape[1:]), run.table, err)


def commute_slices(graph: Graph) -> Graph:
    """An equivalent graph in which a Linear over a sequence (T, d) -> (T, m) whose consumers are all
    Slices of leading dims (frames) is computed per slice instead: Slice(Linear(x), i) = Linear(Slice(x, i)).
    Exact (the same arithmetic per output element); it lets each frame's zonotope carry only its own input
    symbols instead of a dense (T, d) generator block for every symbol."""
    nodes: list[Node] = []
    drop: set[str] = set()
    replace: dict[str, list[Node]] = {}
    for name in graph.order[1:]:
        n = graph.nodes[name]
        if n.op.kind != "linear" or len(graph.nodes[n.inputs[0]].shape) < 2 or name == graph.output_name:
            continue
        cons = [graph.nodes[c] for c in graph.consumers(name)]
        if not cons or not all(c.op.kind == "slice" and c.inputs == (name,) and
                               len(c.op.index) < len(n.shape) and
                               all(isinstance(i, (int, slice)) for i in c.op.index) for c in cons):
            continue
        x = n.inputs[0]
        xs = graph.nodes[x].shape
        for c in cons:
            pre_shape = tuple(torch.zeros(xs)[tuple(c.op.index)].shape)
            pre = Node(f"{c.name}__frames", Slice(xs, c.op.index), (x,), pre_shape)
            replace[c.name] = [pre, Node(c.name, n.op, (pre.name,), c.shape)]
        drop.add(name)
    if not drop:
        return graph
    for name in graph.order:
        if name in drop:
            continue
        nodes.extend(replace.get(name, [graph.nodes[name]]))
    return Graph(nodes, graph.output_name)


# ---- affine rules -----------------------------------------------------------------------------------
@zonotope_rule("linear")
def _linear(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins
    op = node.op
    W, b = op.weight, op.bias
    z = v.z.affine(W, b)
    n = W.shape[1]
    add = v.mag @ W.abs().T
    if b is not None:
        add = add + b.abs()
    err = v.err @ W.abs().T + run.gamma(n + 1) * add
    return ZVal(z, err)


@zonotope_rule("elementwise_affine")
def _elementwise(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins
    op = node.op
    s, h = op.scale, op.shift
    fn = (lambda t: t) if s is None else (lambda t: t * s)
    z = v.z.linear_map(fn, h)
    mag = v.mag if s is None else v.mag * s.abs()
    err = (v.err if s is None else v.err * s.abs()) + run.gamma(2) * (mag + (0 if h is None else h.abs()))
    return ZVal(z, torch.broadcast_to(err, z.center.shape).clone())


def _moved_err(v: ZVal, fn) -> tuple[Tensor, float]:
    """The error bound moved by an exact coordinate map fn (slice / reshape / permute); a pending
    self-proportional term stays pending (the magnitude moves with the coordinates)."""
    if v._err is not None:
        return fn(v._err), 0.0
    return fn(v.base_err), v.self_coef


@zonotope_rule("reshape", "permute")
def _shape(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins
    return ZVal(v.z.linear_map(node.op.forward), *_moved_err(v, node.op.forward))


@zonotope_rule("slice")
def _slice(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins  # basic indexing: views of center and generators, no copy
    return ZVal(v.z[tuple(node.op.index)], *_moved_err(v, node.op.forward))


def _pad_dims(z: Zonotope, err: Tensor, nd: int) -> tuple[Zonotope, Tensor]:
    """Insert leading per-sample dims of size 1 so z has nd per-sample dims (right-aligned broadcasting)."""
    k = nd - len(z.shape)
    if k <= 0:
        return z, err
    shape = (1,) * k + tuple(z.shape)
    return z.reshape(shape), err.reshape((err.shape[0],) + shape)


@zonotope_rule("add")
def _add(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    """a + sign * b with right-aligned broadcasting of the per-sample shapes; symbols aligned by id (the
    union of both id sets; one output buffer, b's generators accumulated into it by index_add)."""
    a, b = ins
    sign = node.op.sign
    nd = max(len(a.z.shape), len(b.z.shape))
    za, ea = _pad_dims(a.z, a.err, nd)
    zb, eb = _pad_dims(b.z, b.err, nd)
    B = za.batch
    out = tuple(node.shape)
    ids = union_ids(za.ids, zb.ids)
    Ga = za.generators.expand(B, za.num_symbols, *out)
    Gb = zb.generators.expand(B, zb.num_symbols, *out)
    if ids.shape == za.ids.shape and torch.equal(ids, za.ids):
        G = Ga.clone(memory_format=torch.contiguous_format)
    else:
        G = Ga.new_zeros((B, ids.shape[0], *out))
        G[:, torch.searchsorted(ids, za.ids)] = Ga
    G.index_add_(1, torch.searchsorted(ids, zb.ids), Gb, alpha=sign)
    c = (za.center + sign * zb.center).expand(B, *out).contiguous()
    z = Zonotope(c, G, ids, za.table)
    base = torch.broadcast_to(ea + abs(sign) * eb, (B, *out)).clone()
    if abs(sign) == 1.0:  # fl(g_a +- g_b) is off by at most u |result| per coefficient
        return ZVal(z, base, run.gamma(2))
    extra = run.gamma(3) * (a.mag.reshape(ea.shape) + abs(sign) * b.mag.reshape(eb.shape))
    return ZVal(z, torch.broadcast_to(base + extra, (B, *out)).clone(), run.gamma(2))


@zonotope_rule("concat")
def _concat(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    d = node.op.dim
    return ZVal(concat([v.z for v in ins], d), torch.cat([v.err for v in ins], d + 1))


def _generic_affine(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    """Any AffineOp T(x) = L x + t0 (e.g. a convolution): generators through L (the op without its bias,
    or T(x) - T(0)), center through T; |L| v for the error bound from the op's own interval rule on [-v, v]
    (radius |L| v, exact for an affine op)."""
    (v,) = ins
    op = node.op
    zero = v.z.center.new_zeros((1,) + tuple(v.z.shape))
    t0 = op.forward(zero)
    extra = 0.0
    lin = None
    if getattr(op, "bias", None) is not None:
        try:
            nb = copy.copy(op)
            nb.bias = None
            if bool((nb.forward(zero) == 0).all()):
                lin = nb.forward
        except Exception:  # noqa: BLE001 - fall back to subtraction below
            lin = None
    if lin is None:
        if bool((t0 == 0).all()):
            lin = op.forward
        else:
            lin = (lambda t: op.forward(t) - t0)  # noqa: E731
            extra = 1.0
    K = v.z.num_symbols
    c = op.forward(v.z.center)
    if K:
        G = lin(v.z.generators.reshape(v.z.batch * K, *v.z.shape))
        G = G.reshape(v.z.batch, K, *G.shape[1:])
    else:
        G = c.new_zeros((v.z.batch, 0, *c.shape[1:]))
    z = Zonotope(c, G, v.z.ids, v.z.table)

    def absmap(t: Tensor) -> Tensor:
        iv = op.interval(run.ctx, Interval(-t, t))
        return (iv.upper - iv.lower) / 2

    n = 1
    for s in v.z.shape:
        n *= s
    err = absmap(v.err) + run.gamma(n + 1) * (absmap(v.mag) + t0.abs())
    if extra:
        err = err + run.gamma(K + 2) * K * t0.abs() + run.gamma(2) * absmap(v.z.generators.abs().sum(1))
    return ZVal(z, err)


# ---- nonlinear rules --------------------------------------------------------------------------------
def _combine_fresh(run: ZonotopeRun, parts: list[tuple[Zonotope, Tensor]], c_lo: Tensor, c_hi: Tensor,
                   label: str) -> Zonotope:
    """sum_i a_i * z_i + [c_lo, c_hi] elementwise (a_i, c_lo, c_hi of shape (B, *shape)) as one zonotope:
    symbols of the parts aligned by id, plus one fresh symbol per neuron of radius (c_hi - c_lo)/2 (none
    for neurons where c_lo == c_hi in every batch row), written into one output buffer (no concatenation
    copies). The same arithmetic as Zonotope.apply_relaxation / apply_planes with parallel planes."""
    mid, rad = _split(c_lo, c_hi)
    z0 = parts[0][0]
    B, shape = z0.batch, tuple(z0.shape)
    ids = union_ids(*(z.ids for z, _ in parts)) if len(parts) > 1 else z0.ids
    Ku = ids.shape[0]
    rf = rad.reshape(B, -1)
    cols = (rf != 0).any(0).nonzero().flatten()
    nf = cols.numel()
    fresh = run.table.fresh(nf, label=label, device=ids.device)
    center = mid.clone()
    first = next((i for i, (z, _) in enumerate(parts) if z.ids.shape == ids.shape and torch.equal(z.ids, ids)), None)
    if first is None:
        G = z0.generators.new_zeros((B, Ku + nf, *shape))
    else:
        G = z0.generators.new_empty((B, Ku + nf, *shape))
        G[:, Ku:].zero_()
    order = list(range(len(parts))) if first is None else [first] + [i for i in range(len(parts)) if i != first]
    for i in order:  # the part written with out= goes first (the buffer is uninitialised there)
        z, a = parts[i]
        center = center + a * z.center
        ag = a.unsqueeze(1)
        if i == first:
            if torch.is_grad_enabled() and (z.generators.requires_grad or ag.requires_grad):
                G[:, :Ku] = z.generators * ag  # out= is not differentiable (training, train/robust.py)
            else:
                torch.mul(z.generators, ag, out=G[:, :Ku])
        elif z.ids.shape == ids.shape and torch.equal(z.ids, ids):
            G[:, :Ku].addcmul_(z.generators, ag)
        else:
            G.index_add_(1, torch.searchsorted(ids, z.ids), z.generators * ag)
    if nf:
        Gf = G.view(B, Ku + nf, -1)
        Gf[:, Ku + torch.arange(nf, device=G.device), cols] = rf[:, cols]
    return Zonotope(center, G, torch.cat([ids, fresh]), z0.table)


@zonotope_rule("relu", "leaky_relu", "sigmoid", "tanh", "arctan", "hardtanh")
def _activation(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    (v,) = ins
    l, u = hull(run, node.inputs[0], v)
    with run.ctx.timer("relax:lines"):
        rel = run.ctx.method.relax(node.op, l, u)
    a = rel.lower_slope
    if not torch.equal(a, rel.upper_slope):
        raise ValueError(f"the zonotope table of {run.ctx.method.name!r} must give parallel lines for {node.op.kind!r}")
    z = _combine_fresh(run, [(v.z, a)], rel.lower_bias, rel.upper_bias, node.name)
    err = a.abs() * v.err + run.gamma(3) * (a.abs() * v.mag + rel.lower_bias.abs() + rel.upper_bias.abs())
    return ZVal(z, err)


@zonotope_rule("sigmoid_tanh_mul", "sigmoid_mul", "mul")
def _product(run: ZonotopeRun, node: Node, ins: tuple[ZVal, ...]) -> ZVal:
    vx, vy = ins
    lx, ux = hull(run, node.inputs[0], vx)
    ly, uy = hull(run, node.inputs[1], vy)
    with run.ctx.timer("relax:planes"):
        planes = run.ctx.method.relax_planes(node.op, lx, ux, ly, uy)
    if torch.equal(planes.lower_a, planes.upper_a) and torch.equal(planes.lower_b, planes.upper_b):
        z = _combine_fresh(run, [(vx.z, planes.lower_a), (vy.z, planes.lower_b)], planes.lower_c, planes.upper_c,
                           node.name)
    else:
        z = apply_planes(vx.z, vy.z, planes, label=node.name)
    A = torch.maximum(planes.lower_a.abs(), planes.upper_a.abs())
    Bc = torch.maximum(planes.lower_b.abs(), planes.upper_b.abs())
    if not (torch.equal(planes.lower_a, planes.upper_a) and torch.equal(planes.lower_b, planes.upper_b)):
        # apply_planes' mid plane is chosen on the unwidened hull; bound the extra gap over the widened one
        da = (planes.upper_a - planes.lower_a).abs() / 2
        db = (planes.upper_b - planes.lower_b).abs() / 2
        extra = da * vx.err + db * vy.err
    else:
        extra = 0.0
    err = (A * vx.err + Bc * vy.err + extra
           + run.gamma(4) * (A * vx.mag + Bc * vy.mag + planes.lower_c.abs() + planes.upper_c.abs()))
    return ZVal(z, err)


PRUNE_AFTER = ("relu", "leaky_relu", "hardtanh")  # zero slopes (stable inactive / saturated neurons)
NONLINEAR = ("relu", "leaky_relu", "sigmoid", "tanh", "arctan", "hardtanh", "sigmoid_tanh_mul", "sigmoid_mul", "mul")


# ---- the pass ---------------------------------------------------------------------------------------
def zonotope_pass(run: ZonotopeRun, keep: set[str] | None = None) -> dict[str, ZVal]:
    """Zonotopes of the output node (and of the nodes in `keep`) after one forward pass; intermediate
    zonotopes are freed after their last use."""
    g = commute_slices(fuse_gate_products(run.ctx.graph))  # fused gate products: Cert-RNN's planes
    if g is not run.ctx.graph:  # the same run state (timers, method, spec) over the equivalent graph
        run.ctx = replace(run.ctx, graph=g, bounds={})
    ctx = run.ctx
    names = g.ancestors(g.output_name)
    keep = set(keep or ()) | {g.output_name}
    last_use: dict[str, int] = {}
    for i, name in enumerate(names):
        for inp in g.nodes[name].inputs:
            last_use[inp] = i
    for name in names[1:]:
        node = g.nodes[name]
        if node.op.kind not in ZONOTOPE_RULES and not (isinstance(node.op, AffineOp) and len(node.inputs) == 1):
            raise _unsupported(node.op.kind)
    if not run.ibp:
        with ctx.timer("interval"):
            run.ibp = interval_pass(ctx)
    vals: dict[str, ZVal] = {}
    for i, name in enumerate(names):
        node = g.nodes[name]
        kind = node.op.kind
        with ctx.timer("zonotope"):
            if name == g.input_name:
                diag = input_zonotope(run)
                v = None
            elif any(i == g.input_name for i in node.inputs) and kind == "slice":
                v = diag.slice(node.op.index)
            else:
                if any(i == g.input_name for i in node.inputs) and g.input_name not in vals:
                    vals[g.input_name] = diag.slice(())
                rule = ZONOTOPE_RULES.get(kind)
                ins = tuple(vals[n] for n in node.inputs)
                if rule is None:
                    if not isinstance(node.op, AffineOp) or len(node.inputs) != 1:
                        raise _unsupported(kind)
                    rule = _generic_affine
                with ctx.timer(f"zonotope:{kind}"):
                    v = rule(run, node, ins)
                if (kind == "slice" and len(node.shape) < len(g.nodes[node.inputs[0]].shape)) or kind in PRUNE_AFTER:
                    # one frame of a sequence / zero slopes: drop the symbols this node does not depend on
                    v = v.pruned(_prune(v.z))
                if kind in NONLINEAR and run.max_symbols is not None and v.z.num_symbols > run.max_symbols:
                    # consolidation only grows |c| + sum |g|, so the error bound stays valid
                    z = consolidate(run, v.z, run.max_symbols)
                    v = v if z is v.z else ZVal(z, v.err)
            if v is None:
                continue
            run.peak_symbols = max(run.peak_symbols, v.z.num_symbols)
        vals[name] = v
        for inp in node.inputs:
            if last_use.get(inp) == i and inp not in keep:
                vals.pop(inp, None)
    return {n: vals[n] for n in keep if n in vals}


def spec_bounds(run: ZonotopeRun, v: ZVal, C: Tensor | None) -> tuple[Tensor, Tensor]:
    """Bounds (B, S) of C · value for the output zonotope (C (B, S, *shape) or None = identity), widened
    against rounding and intersected with the IBP bounds of C · output."""
    z = v.z
    B = z.batch
    cf = z.center.reshape(B, -1)
    Gf = z.generators.reshape(B, z.num_symbols, cf.shape[1])
    ef = v.err.reshape(B, -1)
    mag = cf.abs() + Gf.abs().sum(1)
    if C is None:
        zc = Zonotope(cf, Gf, z.ids, z.table)
        err = ef
    else:
        Cf = C.reshape(B, C.shape[1], -1).to(cf.dtype)
        zc = Zonotope(torch.einsum("bsn,bn->bs", Cf, cf), torch.einsum("bsn,bkn->bks", Cf, Gf), z.ids, z.table)
        Ca = Cf.abs()
        err = torch.einsum("bsn,bn->bs", Ca, ef) + run.gamma(Cf.shape[-1] + 1) * torch.einsum("bsn,bn->bs", Ca, mag)
    lo, hi = zc.concretize()
    w = err + run.gamma(zc.num_symbols + 1) * (hi - lo + zc.center.abs())
    lo, hi = lo - w, hi + w
    iv = run.ibp.get(run.ctx.graph.output_name)
    if iv is not None:
        ilo, ihi = interval_spec(iv, C)
        tol = IBP_ULPS * run.unit * (ilo.abs() + ihi.abs() + (mag if C is None else
                                                            torch.einsum("bsn,bn->bs", Cf.abs(), mag)))
        lo, hi = torch.maximum(lo, ilo - tol), torch.minimum(hi, ihi + tol)
        lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)
    return lo, hi


def zonotope_bounds(ctx: RunContext, C: Tensor | None = None, lower: bool = True, upper: bool = True,
                    max_symbols: int | None = None) -> tuple[Tensor | None, Tensor | None]:
    """Lower/upper bounds (B, S) of C · f(x) over ctx.spec by one forward zonotope pass with the method's
    relaxation table (engine 'zonotope'). Records the symbol count in ctx.timers['symbols']."""
    run = ZonotopeRun(ctx, max_symbols=max_symbols)
    out = zonotope_pass(run)[ctx.graph.output_name]
    ctx = run.ctx
    with ctx.timer("final"):
        lo, hi = spec_bounds(run, out, C)
    ctx.timers["symbols"] = float(run.table.count)
    ctx.timers["peak_symbols"] = float(run.peak_symbols)
    return (lo if lower else None), (hi if upper else None)


__all__ = ["ZONOTOPE_RULES", "zonotope_rule", "ZonotopeRun", "ZVal", "zonotope_pass", "zonotope_bounds",
           "input_zonotope", "spec_bounds", "consolidate", "hull", "magnitude"]
