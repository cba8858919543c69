"""Optimisable relaxations: the free parameters of alpha-CROWN and the sound lines they stand for.

alpha-CROWN (Xu et al., "Fast and Complete", ICLR 2021) keeps CROWN's backward bound but treats the
choice of each relaxation as a variable, one per neuron *and per output specification row* (each row is
its own optimisation problem), optimised by projected gradient ascent on the bound. Here:

| op | parameters, shape (B, S or 1, *shape) | line(s) |
|---|---|---|
| ReLU | alpha in [0, 1] | lower line alpha * x (unstable neurons); upper line the chord (fixed) |
| LeakyReLU(a) | alpha in [a, 1] | lower line alpha * x; upper line the chord |
| tanh / sigmoid / arctan | s_lo, s_up in [0, 1] | tangent points of the lower and upper line, as positions in their ranges (optimize/sshape_points.py) |
| sigma(x) tanh(y) | d_Al, d_Bl, d_Au, d_Bu in [-1, 1] | tilts A = A0 + d s_x, B = B0 + d s_y of the lower and upper plane |
| sigma(x) y | r_lo, r_up, s_lo, s_up in [0, 1] | tilts of sigma's tangent lines composed with McCormick planes of s y (optimize/product_split.py) |
| x y | r_lo, r_up in [0, 1] | weights between the two McCormick planes of each side (optimize/product_mix.py) |

S is the number of spec rows of the backward pass the parameters belong to (1 = shared by all rows).

Soundness: every parameter value gives sound lines, so every iterate of the optimiser is a sound bound.
ReLU-like lower lines through the origin with slope in [a, 1] lie below max(x, a x) everywhere. For the
S-shaped functions any slope (and for the products any tilt) is sound, because the intercepts are the *exact* extremes of f(x) - k x over
[l, u] (:func:`certnn.relax.sshape.exact_offsets`: endpoints and the closed-form stationary points, plus a
few ulps; for products relax.products.tilted_planes: corners, edge and interior stationary points),
whatever k is; the tangent points' range only steers the search. Gradients reach the slopes (the
extreme's derivative in k is -x* by the envelope theorem) and the intermediate bounds l, u.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..relax import SSHAPES
from ..relax.relu import leaky_relu_relaxation, relu_relaxation
from ..relax.ties import tie_averaged
from ..relax.sshape import SShape, stationary_candidates
from ..relax.product_select import selected_tilted_planes
from ..relax.products import PRODUCT_FNS, tilted_planes
from ..relax.types import LinearRelaxation, PlaneRelaxation, safety_margin

OPTIMISABLE = ("relu", "leaky_relu", "sigmoid", "tanh", "arctan")
PRODUCTS = ("sigmoid_tanh_mul", "sigmoid_mul", "mul")


def _rows(t: Tensor, like: Tensor) -> Tensor:
    """Per-neuron bounds (B, *shape) as (B, 1, *shape) next to parameters (B, S, *shape)."""
    return t.unsqueeze(1) if t.dim() == like.dim() - 1 else t


def _max_all(ts: list[Tensor]) -> Tensor:
    """The elementwise max of tensors of broadcastable shapes (torch.stack(broadcast).amax(0) without the
    stacked copy; max is exact, so the same values)."""
    out = ts[0]
    for t in ts[1:]:
        out = torch.maximum(out, t)
    return out


def tied_sshape_lines(fn: SShape, l: Tensor, u: Tensor, k_lo: Tensor, k_up: Tensor) -> LinearRelaxation:
    """relax.sshape.sshape_lines (sound lines with the given slopes: exact offsets plus a few ulps) with
    tie-averaged gradients (:func:`tie_averaged`) for the optimiser."""
    return LinearRelaxation(k_lo, _tied_offset(fn, k_lo, l, u, "min"), k_up, _tied_offset(fn, k_up, l, u, "max"))


def _tied_offset(fn: SShape, k: Tensor, l: Tensor, u: Tensor, side: str) -> Tensor:
    """exact_offsets' min (max) of f(x) - k x on [l, u] with the tie-averaged gradient, from one set of
    candidates (the same values and gradients as exact_offsets plus tie_averaged over the candidates
    computed again; the margin's own gradient was dropped by tie_averaged there too)."""
    cands = stationary_candidates(fn, k, l, u)
    fs = [fn.f(c) for c in cands]
    lin = [k * c for c in cands]
    vals = torch.stack(torch.broadcast_tensors(*[f - a for f, a in zip(fs, lin)]))
    with torch.no_grad():
        margin = safety_margin(_max_all([torch.maximum(f.abs(), a.abs()) for f, a in zip(fs, lin)]))
        ext = vals.amin(0) if side == "min" else vals.amax(0)
    value = ext - margin if side == "min" else ext + margin
    return tie_averaged(value, vals, side, ext=ext)


def selected_sshape_lines(fn: SShape, l: Tensor, u: Tensor, k_lo: Tensor, k_up: Tensor, coef: Tensor) -> LinearRelaxation:
    """tied_sshape_lines with the intercepts computed only where a lower-bound pass with coefficients
    `coef` uses them: the lower line's where coef > 0, the upper line's where coef <= 0 (one offset per
    element, its side by sign), and the lower one also at coef == 0 when coef requires grad (d/d coef of
    pos * b_l + neg * b_u is b_l + b_u there); 0 elsewhere. The same bound terms and gradients (as
    relax.product_select for product planes)."""
    c = coef.detach()
    lower = c > 0
    k = torch.where(lower, k_lo, k_up)
    off = _tied_offset_sided(fn, k, l, u, torch.where(lower, -1.0, 1.0).to(k.dtype))
    zero = torch.zeros((), dtype=off.dtype, device=off.device)
    b_lo, b_up = torch.where(lower, off, zero), torch.where(lower, zero, off)
    if coef.requires_grad and torch.is_grad_enabled():
        iz = torch.nonzero((c == 0).reshape(-1)).reshape(-1)
        if iz.numel():
            flat = lambda t: torch.broadcast_to(t, c.shape).reshape(-1).index_select(0, iz)  # noqa: E731
            extra = _tied_offset(fn, flat(k_lo), flat(l), flat(u), "min")
            b_lo = b_lo.reshape(-1).index_copy(0, iz, extra).reshape(c.shape)
    return LinearRelaxation(k_lo, b_lo, k_up, b_up)


def _tied_offset_sided(fn: SShape, k: Tensor, l: Tensor, u: Tensor, side: Tensor) -> Tensor:
    """_tied_offset with a side per element (-1: the min, +1: the max): the same values (the min as
    -max(-g), exactly) and the same tie-averaged gradients."""
    cands = stationary_candidates(fn, k, l, u)
    fs = [fn.f(c) for c in cands]  # f and k c once each: the values and the magnitudes share them
    lin = [k * c for c in cands]
    vals = torch.stack(torch.broadcast_tensors(*[f - a for f, a in zip(fs, lin)]))
    with torch.no_grad():
        margin = safety_margin(_max_all([torch.maximum(f.abs(), a.abs()) for f, a in zip(fs, lin)]))
    w = side * vals  # the min as -max(-g), as relax.product_sided._reduce_side
    m = w.detach().amax(0)
    return side * tie_averaged(m + margin, w, "max", ext=m)


class Params:
    """Optimised tensors (B, S or 1, *shape) of one node for one start, plus constants with a batch dim.

    Subclasses name their optimised tensors in `opt_fields` and batch-dim constants in `const_fields`;
    the generic operations below (row and batch selection, projection hooks) act on them."""

    opt_fields: tuple[str, ...] = ()
    const_fields: tuple[str, ...] = ()
    #: const fields a warm start must hold equal values in (beyond equal shapes)
    match_fields: tuple[str, ...] = ()
    #: step size relative to AlphaConfig.lr
    lr_scale = 1.0
    #: parameters of a two-input op's planes (RunContext.plane_params) rather than of lines
    planes = False

    def step_size(self, cfg) -> float:
        """Adam's step size for these parameters under AlphaConfig `cfg`."""
        return cfg.lr * self.lr_scale

    def tensors(self) -> list[Tensor]:
        return [getattr(self, f) for f in self.opt_fields]

    def _copy(self, **changes) -> "Params":
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.__dict__.update(changes)
        return out

    def rows(self, index: Tensor) -> "Params":
        """The spec rows `index` (shared parameters, row dim 1, are kept)."""
        return self._copy(**{f: (t if t.shape[1] == 1 else t.index_select(1, index))
                             for f, t in zip(self.opt_fields, self.tensors())})

    def gather_rows(self, idx: Tensor) -> "Params":
        """Per-sample spec rows: idx (B, S') picks rows of each sample (shared parameters are kept)."""
        def g(t):
            if t.shape[1] == 1:
                return t.detach().clone().requires_grad_(True)
            ix = idx.reshape(idx.shape + (1,) * (t.dim() - 2)).expand((t.shape[0], idx.shape[1]) + t.shape[2:])
            return t.detach().gather(1, ix).requires_grad_(True)
        return self._copy(**{f: g(getattr(self, f)) for f in self.opt_fields})

    def scatter_rows(self, idx: Tensor, part: "Params") -> "Params":
        """These parameters with the rows idx (B, S') of each sample replaced by `part`'s (detached)."""
        def s(t, v):
            if t.shape[1] == 1:
                return v.detach().clone()
            ix = idx.reshape(idx.shape + (1,) * (t.dim() - 2)).expand((t.shape[0], idx.shape[1]) + t.shape[2:])
            return t.detach().clone().scatter_(1, ix, v.detach())
        return self._copy(**{f: s(getattr(self, f), getattr(part, f)) for f in self.opt_fields})

    def select(self, index: Tensor) -> "Params":
        """The samples `index` (batch dim 0, on any device), optimised tensors as new leaves requiring grad."""
        ch = {f: _select_const(getattr(self, f).detach(), index).requires_grad_(True) for f in self.opt_fields}
        ch.update({f: _select_const(getattr(self, f), index) for f in self.const_fields})
        return self._copy(**ch)

    def project(self) -> None:
        raise NotImplementedError


def cat_params(items: list["Params"]) -> "Params":
    """Several batches of the same parameters joined along the batch dim (detached leaves)."""
    first = items[0]

    def cat(vals):
        if isinstance(vals[0], tuple):
            return tuple(cat([v[i] for v in vals]) for i in range(len(vals[0])))
        return torch.cat([v.detach() for v in vals], 0)
    ch = {f: cat([getattr(p, f) for p in items]).requires_grad_(True) for f in first.opt_fields}
    ch.update({f: cat([getattr(p, f) for p in items]) for f in first.const_fields})
    return first._copy(**ch)


def _select_const(v, index: Tensor):
    if isinstance(v, tuple):
        return tuple(_select_const(t, index) for t in v)
    return v.index_select(0, index.to(v.device))


class ReluSlopes(Params):
    """Lower slopes alpha (B, S, *shape) of a ReLU or LeakyReLU node (negative_slope a)."""

    opt_fields = ("alpha",)

    def __init__(self, alpha: Tensor, negative_slope: float | None = None):
        self.alpha = alpha
        self.a = negative_slope  # None: plain ReLU

    @staticmethod
    def initial(l: Tensor, u: Tensor, rows: int, negative_slope: float | None = None) -> Tensor:
        """CROWN's adaptive slope (1 where u >= -l, else 0 or a) repeated over `rows` rows."""
        lo = 0.0 if negative_slope is None else negative_slope
        a0 = torch.where(u >= -l, torch.ones_like(l), torch.full_like(l, lo))
        return a0.unsqueeze(1).expand((l.shape[0], rows) + tuple(l.shape[1:])).clone()

    def project(self) -> None:
        self.alpha.data.clamp_(0.0 if self.a is None else self.a, 1.0)

    def __call__(self, op, l: Tensor, u: Tensor) -> LinearRelaxation:
        l, u = _rows(l, self.alpha), _rows(u, self.alpha)
        if self.a is None:
            # relu_relaxation(l, u, "alpha", alpha), formed as stable slope + unstable * clamp(alpha): the
            # same values (exactly: 0 + 1 * a, s + 0 * a), and a backward pass of one product instead of
            # torch.where's zero-filled gradient tensors over the (B, S, *shape) parameters
            base = relu_relaxation(l, u, "zero")
            unstable = ((l < 0) & (u > 0)).to(l.dtype)
            lo = torch.addcmul(base.lower_slope, unstable, self.alpha.clamp(0.0, 1.0))
            return LinearRelaxation(lo, base.lower_bias, base.upper_slope, base.upper_bias)
        return leaky_relu_relaxation(l, u, self.a, "alpha", self.alpha)


class PlaneTilts(Params):
    """Tilts of the lower and upper planes of a two-input product (ops/product.py), (B, S, *shape) each,
    as offsets d from the base method's tilts in units of the box's derivative range:
    A = A0 + d_A * s_x, B = B0 + d_B * s_y, with d in [-1, 1]. The planes' offsets are exact on the
    current box (relax.products.tilted_planes), so every tilt is sound."""

    opt_fields = ("d_al", "d_bl", "d_au", "d_bu")
    const_fields = ("base", "scale")
    planes = True
    #: d spans [-1, 1]
    lr_scale = 0.04

    def __init__(self, kind: str, base: tuple[Tensor, ...], scale: tuple[Tensor, Tensor], d: list[Tensor]):
        self.kind = kind
        self.base = base  # (Al0, Bl0, Au0, Bu0), (B, 1, *shape)
        self.scale = scale  # (s_x, s_y), (B, 1, *shape)
        self.d_al, self.d_bl, self.d_au, self.d_bu = d

    @staticmethod
    def create(op, pl: PlaneRelaxation, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, rows: int) -> "PlaneTilts":
        base = tuple(t.detach().unsqueeze(1) for t in (pl.lower_a, pl.lower_b, pl.upper_a, pl.upper_b))
        xs = torch.stack([lx, lx, ux, ux, (lx + ux) / 2])
        ys = torch.stack([ly, uy, ly, uy, (ly + uy) / 2])
        if op.kind == "mul":
            fx, fy = ys, xs
        else:
            fn = PRODUCT_FNS[op.kind]
            fx, fy = fn.fx(xs, ys), fn.fy(xs, ys)

        def rng(t):
            r = t.amax(0) - t.amin(0)
            return torch.maximum(r, 1e-6 * (1 + t.abs().amax(0))).detach().unsqueeze(1)
        shape = (lx.shape[0], rows) + tuple(lx.shape[1:])
        d = [lx.new_zeros(shape) for _ in range(4)]
        return PlaneTilts(op.kind, base, (rng(fx), rng(fy)), d)

    def project(self) -> None:
        for t in self.tensors():
            t.data.clamp_(-1.0, 1.0)

    def tilts(self, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> tuple[Tensor, ...]:
        """(Al, Bl, Au, Bu, lx, ux, ly, uy): the tilts and the box with a row dim."""
        sx, sy = self.scale
        Al, Bl, Au, Bu = (b + t * s for b, t, s in zip(self.base, self.tensors(), (sx, sy, sx, sy)))
        return (Al, Bl, Au, Bu) + tuple(t.unsqueeze(1) for t in (lx, ux, ly, uy))

    def __call__(self, op, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> PlaneRelaxation:
        return tilted_planes(self.kind, *self.tilts(lx, ux, ly, uy))

    def selected(self, op, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, coef: Tensor) -> PlaneRelaxation:
        """The planes with offsets only where a lower-bound pass with coefficients `coef` uses them
        (relax.product_select)."""
        return selected_tilted_planes(self.kind, *self.tilts(lx, ux, ly, uy), coef)


def make_params(op, base: LinearRelaxation, l: Tensor, u: Tensor, rows: int):
    """Parameters of an activation op on bounds [l, u] (B, *shape) for `rows` spec rows, initialised at
    the base method's lines; None for ops without optimisable lines."""
    kind = op.kind
    if kind == "relu":
        return ReluSlopes(ReluSlopes.initial(l, u, rows))
    if kind == "leaky_relu":
        a = float(op.params.get("negative_slope", 0.01))
        if not 0.0 <= a <= 1.0:
            return None
        return ReluSlopes(ReluSlopes.initial(l, u, rows, a), a)
    if kind in SSHAPES:
        fn = SSHAPES[kind]
        from .sshape_points import SShapeTangents  # it builds on Params (defined here)
        return SShapeTangents(fn, *SShapeTangents.initial(fn, base, l, u, rows))
    return None


__all__ = ["OPTIMISABLE", "PRODUCTS", "Params", "cat_params", "PlaneTilts", "ReluSlopes", "make_params", "tie_averaged",
           "tied_sshape_lines"]
