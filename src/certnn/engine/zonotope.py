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

Modules: this one (the pass, the final bounds), :mod:`.zonotope_run` (ZVal, ZonotopeRun, the rule registry,
hulls, consolidation), :mod:`.zonotope_input` (the input set, commute_slices), :mod:`.zonotope_affine` and
:mod:`.zonotope_nonlinear` (the rules). Run state (symbol table, zonotopes, error bounds, timers) lives in a
per-call :class:`ZonotopeRun` and in the :class:`~certnn.engine.context.RunContext`; nothing is stored on
ops or modules.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from ..domains.zonotope import Zonotope
from ..graph.fuse_gates import fuse_gate_products
from ..graph.ir import Graph, Node
from ..ops.base import AffineOp
from .context import RunContext
from .interval import interval_pass, interval_spec
from .zonotope_affine import generic_affine
from .zonotope_input import DiagonalInput, commute_slices, input_zonotope
from .zonotope_l2 import compressed_linear, read_by_compressed
from .zonotope_nonlinear import NONLINEAR, PRUNE_AFTER
from .zonotope_run import (IBP_ULPS, ZONOTOPE_RULES, Rule, ZonotopeRun, ZVal, _prune, _unsupported, consolidate,
                           hull, magnitude, zonotope_rule)


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
    _check_supported(g, names[1:])
    if not run.ibp:
        with ctx.timer("interval"):
            run.ibp = interval_pass(ctx)
    vals: dict[str, ZVal] = {}
    diag: DiagonalInput | None = None
    for i, name in enumerate(names):
        node = g.nodes[name]
        with ctx.timer("zonotope"):
            if name == g.input_name:
                diag = input_zonotope(run)
                continue
            if _absorbed(g, node, diag, keep):  # a normalisation of the input: the set stays diagonal
                moved = diag.through_affine(run, node)
                if moved is not None:
                    diag = moved
                    continue
            v = _node_value(run, g, node, vals, diag)
            if v is not None:
                run.peak_symbols = max(run.peak_symbols, v.z.num_symbols)
                vals[name] = v
        for inp in node.inputs:
            if last_use.get(inp) == i and inp not in keep:
                vals.pop(inp, None)
    return {n: vals[n] for n in keep if n in vals}


def _absorbed(g: Graph, node: Node, diag: DiagonalInput | None, keep: set[str]) -> bool:
    """Whether `node` is an elementwise affine map that is the only reader of the diagonal input set's
    node (then the set is carried through it, DiagonalInput.through_affine, instead of built as a dense
    diagonal block), and nobody asks for its value."""
    return (diag is not None and node.op.kind == "elementwise_affine" and node.inputs == (diag.node,)
            and g.consumers(diag.node) == [node.name] and node.name not in keep and diag.node not in keep)


def _check_supported(g: Graph, names: list[str]) -> None:
    """Refuse an op without a rule before any work (a single-input AffineOp has the generic rule)."""
    for name in names:
        node = g.nodes[name]
        if node.op.kind not in ZONOTOPE_RULES and not (isinstance(node.op, AffineOp) and len(node.inputs) == 1):
            raise _unsupported(node.op.kind)


def _node_value(run: ZonotopeRun, g: Graph, node: Node, vals: dict[str, ZVal],
                diag: DiagonalInput | None) -> ZVal | None:
    """The zonotope of `node` from its inputs' values: a Linear over an L2 group with fewer outputs than
    inputs straight from the diagonal input set, compressed (engine/zonotope_l2.py), and None for the slice
    or flattening it reads (never built); a slice of the input from the diagonal input set (only that
    slice's own symbols); any other node by its rule (or the generic affine rule), then with the symbols it
    does not depend on dropped and, past run.max_symbols, consolidated."""
    kind = node.op.kind
    v = compressed_linear(run, g, node, diag)  # an L2 group over more features than outputs, from diag
    if v is not None:
        return v
    reads_input = diag is not None and any(i == diag.node for i in node.inputs)
    if reads_input and kind in ("slice", "reshape") and read_by_compressed(run, g, node, diag):
        return None  # its one consumer reads the input set itself: no diagonal block to build
    if reads_input and kind == "slice":
        return diag.slice(node.op.index)
    if reads_input and diag.node not in vals:
        vals[diag.node] = diag.slice(())
    rule = ZONOTOPE_RULES.get(kind)
    ins = tuple(vals[n] for n in node.inputs)
    if rule is None:
        if not isinstance(node.op, AffineOp) or len(node.inputs) != 1:
            raise _unsupported(kind)
        rule = generic_affine
    with run.ctx.timer(f"zonotope:{kind}"):
        v = rule(run, node, ins)
    if (kind == "slice" and len(node.shape) < len(g.nodes[node.inputs[0]].shape)) or kind in PRUNE_AFTER:
        # one frame of a sequence / zero slopes: drop the symbols this node does not depend on
        v = v.pruned(_prune(v.z))
    if kind in NONLINEAR and run.max_symbols is not None and v.z.num_symbols > run.max_symbols:
        # consolidation only grows |c| + sum |g|, so the error bound stays valid
        z = consolidate(run, v.z, run.max_symbols)
        v = v if z is v.z else ZVal(z, v.err)
    return v


def spec_bounds(run: ZonotopeRun, v: ZVal, C: Tensor | None) -> tuple[Tensor, Tensor]:
    """Bounds (B, S) of C · value for the output zonotope (C (B, S, *shape) or None = identity), widened
    against rounding and intersected with the IBP bounds of C · output."""
    z = v.z
    B = z.batch
    cf = z.center.reshape(B, -1)
    Gf = z.generators.reshape(B, z.num_symbols, cf.shape[1])
    ef = v.err.reshape(B, -1)
    mag = cf.abs() + torch.linalg.vector_norm(Gf, 1, dim=1)
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


__all__ = ["ZONOTOPE_RULES", "zonotope_rule", "Rule", "ZonotopeRun", "ZVal", "zonotope_pass", "zonotope_bounds",
           "input_zonotope", "commute_slices", "spec_bounds", "consolidate", "hull", "magnitude", "IBP_ULPS"]
