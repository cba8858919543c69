"""Batched zonotopes whose noise symbols carry identities (DeepZ, Singh et al. NeurIPS 2018; Cert-RNN,
Du et al. CCS 2021).

    value = center + sum_k generators[:, k] * eps_{ids[k]}

center (B, *shape), generators (B, K, *shape), ids (K,) int64 sorted, from a :class:`SymbolTable` that
belongs to the run context. The batch holds B independent problems that share the symbol layout: the same
id in two batch rows is the same slot of two different problems.

Symbols range over [-1, 1] independently, except input groups created by :meth:`Zonotope.from_lp_ball`
with an L2 / L1 norm, which are jointly constrained ||eps_group||_p <= 1. Concretisation bounds each output
element by |center| plus, for each such group, the dual norm ||coefficients over the whole group||_q (all
input features of a sample, never per slice), plus the L1 norm of all other coefficients. That is the exact
range of the affine form (each term is maximised independently and the constraints are independent).

Two zonotopes are combined by aligning symbols by id (union of ids, zero coefficients for missing ones);
aligning by position would invent correlations between unrelated symbols and is unsound.

Floating point: affine maps are evaluated in the tensor dtype without directed rounding (as in DeepZ);
radii from relaxations and the final concretisation are widened by a few ulps. Use float64 to certify.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..config import parse_norm
from ..relax.types import LinearRelaxation, PlaneRelaxation
from .symbols import SymbolTable, scatter_generators, union_ids


def _ulps(*values: Tensor) -> Tensor:
    """A few ulps of the sum of magnitudes (relative only, so exact points stay exact)."""
    mag = sum(v.abs() for v in values)
    return 8 * torch.finfo(mag.dtype).eps * mag


@dataclass(frozen=True)
class Zonotope:
    center: Tensor
    generators: Tensor
    ids: Tensor
    table: SymbolTable

    def __post_init__(self) -> None:
        c, G, ids = self.center, self.generators, self.ids
        if c.dim() < 1:
            raise ValueError("center needs a batch dimension: (B, *shape)")
        if G.shape != (c.shape[0], ids.shape[0], *c.shape[1:]) or ids.dim() != 1:
            raise ValueError(f"generators {tuple(G.shape)} / ids {tuple(ids.shape)} do not match center "
                             f"{tuple(c.shape)} (expected (B, K, *shape) and (K,))")
        if ids.dtype != torch.int64 or (ids.numel() > 1 and not bool((ids[1:] > ids[:-1]).all())):
            raise ValueError("ids must be int64 and strictly increasing")

    # ---- basic facts ------------------------------------------------------------------------------
    @property
    def batch(self) -> int:
        return self.center.shape[0]

    @property
    def shape(self) -> torch.Size:
        """Per-sample shape (without the batch dimension)."""
        return self.center.shape[1:]

    @property
    def num_symbols(self) -> int:
        return self.ids.shape[0]

    def _like(self, center: Tensor, generators: Tensor, ids: Tensor | None = None) -> "Zonotope":
        return Zonotope(center, generators, self.ids if ids is None else ids, self.table)

    # ---- constructors -----------------------------------------------------------------------------
    @classmethod
    def from_box(cls, lower: Tensor, upper: Tensor, table: SymbolTable, label: str = "input") -> "Zonotope":
        """The box [lower, upper] (B, *shape): one fresh symbol per coordinate that is non-degenerate in
        some batch row."""
        if lower.shape != upper.shape or (upper < lower).any():
            raise ValueError("from_box needs lower <= upper of one shape")
        center = (lower + upper) / 2
        radius = torch.maximum(upper - center, center - lower)  # >= (u - l)/2 despite rounding
        z = cls(center, center.new_zeros((center.shape[0], 0, *center.shape[1:])),
                torch.zeros(0, dtype=torch.int64, device=center.device), table)
        return z._with_fresh(radius, label=label)

    @classmethod
    def from_lp_ball(cls, center: Tensor, eps: float | Tensor, norm: str | float, table: SymbolTable,
                     scale: Tensor | None = None, representation: str = "norm", label: str = "input") -> "Zonotope":
        """The ball {center + eps * scale * delta : ||delta||_p <= 1} (center (B, *shape); eps a number or a
        (B,) tensor; scale broadcastable to center, e.g. 1/std when the ball lives in un-normalised space).

        representation 'norm' (default): for p = 2 or 1, one symbol per input feature, all features of a
        sample forming one group constrained by ||eps||_p <= 1 (exact). 'box': the L-inf box of radius
        eps * scale, a sound over-approximation of any Lp ball (||delta||_p <= 1 implies |delta_i| <= 1).
        For p = inf both are the box."""
        p = parse_norm(norm)
        if representation not in ("norm", "box"):
            raise ValueError(f"unknown representation {representation!r}; use 'norm' or 'box'")
        eps_t = torch.as_tensor(eps, dtype=center.dtype, device=center.device)
        if (eps_t < 0).any():
            raise ValueError("eps must be >= 0")
        if eps_t.dim() == 1:
            eps_t = eps_t.view(-1, *([1] * (center.dim() - 1)))
        radius = (eps_t * (1 if scale is None else scale.to(center.dtype))).expand_as(center).clone()
        if (radius < 0).any():
            raise ValueError("scale must be >= 0")
        if p == "inf" or representation == "box":
            return cls.from_box(center - radius, center + radius, table, label=label)
        z = cls(center.clone(), center.new_zeros((center.shape[0], 0, *center.shape[1:])),
                torch.zeros(0, dtype=torch.int64, device=center.device), table)
        return z._with_fresh(radius, label=label, norm=p, keep_all=True)

    def _with_fresh(self, radius: Tensor, label: str = "", norm: str = "inf", keep_all: bool = False) -> "Zonotope":
        """Append one fresh symbol per feature with generator ``radius`` (B, *shape) at that feature only.
        Features whose radius is 0 in every batch row get no symbol (unless keep_all)."""
        B = self.batch
        r = radius.reshape(B, -1)
        cols = torch.arange(r.shape[1], device=r.device) if keep_all else (r != 0).any(0).nonzero().flatten()
        ids = self.table.fresh(int(cols.numel()), norm=norm, label=label, device=self.center.device)
        block = r.new_zeros((B, cols.numel(), r.shape[1]))
        block[:, torch.arange(cols.numel(), device=r.device), cols] = r[:, cols]
        block = block.reshape(B, cols.numel(), *self.shape)
        return self._like(self.center, torch.cat([self.generators, block], 1), torch.cat([self.ids, ids]))

    # ---- concretisation -----------------------------------------------------------------------------
    def radius(self) -> Tensor:
        """Half-width (B, *shape) of the interval hull: dual norms over L2/L1 groups, L1 over the rest."""
        G, ids = self.generators, self.ids
        r = torch.zeros_like(self.center)
        free = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)
        for g in self.table.norm_groups():
            a = int(torch.searchsorted(ids, g.start))
            b = int(torch.searchsorted(ids, g.stop))
            if b > a:
                r = r + torch.linalg.vector_norm(G[:, a:b], ord=g.dual, dim=1)
                free[a:b] = False
        return r + torch.linalg.vector_norm(G[:, free], 1, dim=1)

    def concretize(self) -> tuple[Tensor, Tensor]:
        """(lower, upper), each (B, *shape), widened by a few ulps against rounding."""
        r = self.radius()
        r = r + _ulps(self.center, r)
        return self.center - r, self.center + r

    def interval_hull(self, label: str = "hull") -> "Zonotope":
        """The interval hull as a zonotope with fresh independent symbols (forgets all correlations)."""
        return Zonotope.from_box(*self.concretize(), self.table, label=label)

    def at(self, eps: Tensor, ids: Tensor | None = None) -> Tensor:
        """The concrete values for noise values ``eps`` (..., B, K') over symbols ``ids`` (K',), a sorted
        superset of self.ids (default: self.ids). Returns (..., B, *shape)."""
        ids = self.ids if ids is None else ids
        e = eps[..., torch.searchsorted(ids, self.ids)] if not torch.equal(ids, self.ids) else eps
        Gf = self.generators.reshape(self.batch, self.num_symbols, -1)
        out = torch.einsum("...bk,bkn->...bn", e.to(Gf.dtype), Gf)
        return self.center + out.reshape(*out.shape[:-1], *self.shape)

    # ---- linear operations --------------------------------------------------------------------------
    def linear_map(self, fn: Callable[[Tensor], Tensor], bias: Tensor | None = None) -> "Zonotope":
        """Apply a *linear* fn that maps (M, *shape) -> (M, *out) to center and generators, then add bias
        to the center (fn must not add a bias itself)."""
        c = fn(self.center)
        B, K = self.batch, self.num_symbols
        if K:
            G = fn(self.generators.reshape(B * K, *self.shape))
            G = G.reshape(B, K, *G.shape[1:])
        else:
            G = c.new_zeros((B, 0, *c.shape[1:]))
        return self._like(c if bias is None else c + bias, G)

    def affine(self, W: Tensor, b: Tensor | None = None) -> "Zonotope":
        """x -> x W^T + b over the last feature dimension (W of shape (out, in))."""
        return self.linear_map(lambda t: t @ W.transpose(-1, -2), b)

    def scale(self, a: Tensor | float) -> "Zonotope":
        """Elementwise multiplication by a constant broadcastable to center (B, *shape)."""
        a = torch.as_tensor(a, dtype=self.center.dtype, device=self.center.device)
        ag = a.unsqueeze(1) if a.dim() == self.center.dim() else a
        return self._like(self.center * a, self.generators * ag)

    def __add__(self, other: "Zonotope | Tensor | float") -> "Zonotope":
        if isinstance(other, Zonotope):
            (G1, G2), ids = align(self, other)
            return Zonotope(self.center + other.center, G1 + G2, ids, self.table)
        c = self.center + other
        G = self.generators.expand(self.batch, self.num_symbols, *c.shape[1:])
        return self._like(c, G)

    __radd__ = __add__

    def __neg__(self) -> "Zonotope":
        return self._like(-self.center, -self.generators)

    def __sub__(self, other: "Zonotope | Tensor | float") -> "Zonotope":
        return self + (-other)

    def __rsub__(self, other: Tensor | float) -> "Zonotope":
        return (-self) + other

    def __mul__(self, a: Tensor | float) -> "Zonotope":
        if isinstance(a, Zonotope):
            raise TypeError("the product of two zonotopes needs planes: use apply_planes(zx, zy, planes)")
        return self.scale(a)

    __rmul__ = __mul__

    def add(self, other: "Zonotope | Tensor | float") -> "Zonotope":
        return self + other

    def sub(self, other: "Zonotope | Tensor | float") -> "Zonotope":
        return self - other

    # ---- shape operations ---------------------------------------------------------------------------
    def __getitem__(self, key) -> "Zonotope":
        """Index the per-sample dimensions (the batch and the symbol axis are kept)."""
        key = key if isinstance(key, tuple) else (key,)
        return self._like(self.center[(slice(None),) + key], self.generators[(slice(None), slice(None)) + key])

    def reshape(self, *shape: int) -> "Zonotope":
        """Reshape the per-sample dimensions."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        return self._like(self.center.reshape(self.batch, *shape),
                          self.generators.reshape(self.batch, self.num_symbols, *shape))

    # ---- relaxations --------------------------------------------------------------------------------
    def apply_relaxation(self, rel: LinearRelaxation, label: str = "") -> "Zonotope":
        """Elementwise f(z) for parallel lines a z + c_lo <= f(z) <= a z + c_hi (lower slope == upper slope):
        a z + (c_lo + c_hi)/2 + one fresh symbol per neuron with generator (c_hi - c_lo)/2 (none where 0).
        Sound when the lines hold on the interval hull of z (which is where z's values lie)."""
        if not torch.equal(rel.lower_slope, rel.upper_slope):
            raise ValueError("apply_relaxation needs parallel lines (lower_slope == upper_slope); "
                             "use parallel_relaxation(...) for a zonotope transformer")
        a = rel.lower_slope
        mid, rad = _split(rel.lower_bias, rel.upper_bias)
        out = self.scale(a) + mid
        return out._with_fresh(rad.expand_as(out.center), label=label)


def _split(c_lo: Tensor, c_hi: Tensor) -> tuple[Tensor, Tensor]:
    """Center and radius of [c_lo, c_hi], the radius widened by a few ulps unless the interval is a point."""
    if (c_hi < c_lo).any():
        raise ValueError("relaxation offsets must satisfy lower <= upper")
    mid = (c_lo + c_hi) / 2
    rad = torch.maximum(c_hi - mid, mid - c_lo)
    rad = torch.where(c_hi == c_lo, torch.zeros_like(rad), rad + _ulps(c_lo, c_hi))
    return mid, rad


def align(*zs: Zonotope) -> tuple[list[Tensor], Tensor]:
    """Generators of several zonotopes over the union of their symbol ids (aligned by id)."""
    table = zs[0].table
    if any(z.table is not table for z in zs):
        raise ValueError("zonotopes from different symbol tables cannot be combined")
    if any(z.batch != zs[0].batch for z in zs):
        raise ValueError("zonotopes must share the batch size")
    ids = union_ids(*(z.ids for z in zs))
    return [scatter_generators(z.generators, z.ids, ids) for z in zs], ids


def concat(zs: Sequence[Zonotope], dim: int = 0) -> Zonotope:
    """Concatenate along per-sample dimension ``dim`` (0 = first feature dimension), aligning by id."""
    nd = len(zs[0].shape)
    d = dim if dim >= 0 else dim + nd
    Gs, ids = align(*zs)
    return Zonotope(torch.cat([z.center for z in zs], d + 1), torch.cat(Gs, d + 2), ids, zs[0].table)


def apply_planes(zx: Zonotope, zy: Zonotope, planes: PlaneRelaxation, label: str = "") -> Zonotope:
    """Elementwise F(zx, zy) from planes lower <= F <= upper that hold on the interval hulls of zx, zy.

    Parallel planes (Cert-RNN): A zx + B zy + (C1 + C2)/2 + one fresh symbol per neuron of radius
    (C2 - C1)/2. Non-parallel planes (POPQORN, McCormick): the mid plane m = (lower + upper)/2 with radius
    max over the box corners of (upper - lower)/2; sound because lower <= F <= upper implies
    |F - m| <= (upper - lower)/2, a linear function whose max over the box is at a corner.
    Symbols of zx and zy are aligned by id, so a shared symbol (x * x) is treated as one variable.
    """
    (Gx, Gy), ids = align(zx, zy)
    parallel = torch.equal(planes.lower_a, planes.upper_a) and torch.equal(planes.lower_b, planes.upper_b)
    if parallel:
        A, Bc = planes.lower_a, planes.lower_b
        mid, rad = _split(planes.lower_c, planes.upper_c)
    else:
        lx, ux = zx.concretize()
        ly, uy = zy.concretize()
        A = (planes.lower_a + planes.upper_a) / 2
        Bc = (planes.lower_b + planes.upper_b) / 2
        mid = (planes.lower_c + planes.upper_c) / 2
        da, db, dc = planes.upper_a - planes.lower_a, planes.upper_b - planes.lower_b, planes.upper_c - planes.lower_c
        gap = torch.stack([da * x + db * y + dc for x in (lx, ux) for y in (ly, uy)]).amax(0)
        rad = gap.clamp(min=0) / 2
        xm, ym = torch.maximum(lx.abs(), ux.abs()), torch.maximum(ly.abs(), uy.abs())
        rad = rad + _ulps(A * xm, Bc * ym, mid, rad, da * xm, db * ym, dc)
    ag = lambda t: t.unsqueeze(1) if t.dim() == zx.center.dim() else t  # noqa: E731
    center = A * zx.center + Bc * zy.center + mid
    G = ag(A) * Gx + ag(Bc) * Gy
    out = Zonotope(center, G.expand(zx.batch, ids.shape[0], *center.shape[1:]), ids, zx.table)
    return out._with_fresh(rad.expand_as(center), label=label)


__all__ = ["Zonotope", "align", "concat", "apply_planes"]
