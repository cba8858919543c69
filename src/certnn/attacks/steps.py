"""The z-space geometry of PGD and FMN steps (attacks/pgd.py, attacks/fmn.py): the perturbation is
delta = scale * z with ||z||_p <= eps inside the clip box. The box of z, the projection onto ball and box,
random starts, ascent steps (each per frame for per-frame balls), and z mapped back to x with the float64
distance it realises.

Shapes: z, grad (b, d) for the b still-active samples; eps, alpha (b,).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from .problem import _Problem
from .projections import lp_norm, project_box_ball, project_l1_ball, project_l2_ball


@dataclasses.dataclass(frozen=True)
class _Sub:
    """The still-active samples of one restart, with their per-sample attack constants."""

    p: _Problem
    zl: Tensor  # (b, d) box in z-space, within [-eps, eps], 0 on fixed features
    zu: Tensor
    eps: Tensor  # (b,)
    alpha: Tensor  # (b,) step length
    k_l1: Tensor  # (b,) coordinates per L1 step
    free: Tensor | None  # (b, d) bool, scale > 0
    aim: Tensor | None  # (b,) class aimed at by a multi-targeted restart

    def subset(self, keep: Tensor) -> _Sub:
        return _Sub(self.p.subset(keep), self.zl[keep], self.zu[keep], self.eps[keep], self.alpha[keep],
                    self.k_l1[keep], None if self.free is None else self.free[keep],
                    None if self.aim is None else self.aim[keep])


def _z_box(p: _Problem, eps: Tensor) -> tuple[Tensor, Tensor]:
    """Bounds on z (B, d): the clip box mapped to z-space, cut to [-eps, eps]; 0 where scale = 0."""
    r = eps[:, None].expand_as(p.x)
    zl, zu = -r, r
    if p.lo is not None:
        if p.scale is None:
            dl, du = p.lo - p.x, p.hi - p.x
        else:
            safe = torch.where(p.scale > 0, p.scale, torch.ones_like(p.scale))
            dl, du = (p.lo - p.x) / safe, (p.hi - p.x) / safe
        zl, zu = torch.maximum(zl, dl.clamp(max=0)), torch.minimum(zu, du.clamp(min=0))
    if p.scale is not None:
        fixed = p.scale == 0
        zl = torch.where(fixed, torch.zeros_like(zl), zl)
        zu = torch.where(fixed, torch.zeros_like(zu), zu)
    return zl.contiguous(), zu.contiguous()


def _frame_view(sub: _Sub) -> _Sub:
    """The active samples with every frame as its own row (b * T, d / T): per-frame balls are independent,
    so a step, a random start and a projection act frame by frame."""
    T = sub.p.frames
    b, d = sub.p.x.shape

    def rows(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.reshape(b * T, d // T)

    p = dataclasses.replace(sub.p, x=rows(sub.p.x), scale=rows(sub.p.scale), lo=rows(sub.p.lo), hi=rows(sub.p.hi),
                            frames=None)
    return _Sub(p, rows(sub.zl), rows(sub.zu), sub.eps.repeat_interleave(T), sub.alpha.repeat_interleave(T),
                sub.k_l1.reshape(-1), rows(sub.free), None)


def _framed(fn):
    """Run a per-ball helper frame by frame for per-frame problems: (args with z / grad of shape (b, d))."""
    def wrapped(*args, **kwargs):
        sub = next(a for a in args if isinstance(a, _Sub))
        if not sub.p.frames:
            return fn(*args, **kwargs)
        b = sub.p.x.shape[0]
        view = _frame_view(sub)
        conv = [view if a is sub else (a.reshape(view.p.x.shape) if isinstance(a, Tensor) else a) for a in args]
        return fn(*conv, **kwargs).reshape(b, -1)
    return wrapped


@_framed
def _project(z: Tensor, sub: _Sub, norm: str, has_clip: bool) -> Tensor:
    if norm == "inf" or has_clip:
        return project_box_ball(z, sub.zl, sub.zu, sub.eps, norm)
    if sub.free is not None:
        z = torch.where(sub.free, z, torch.zeros_like(z))
    return project_l2_ball(z, sub.eps) if norm == "2" else project_l1_ball(z, sub.eps)


@_framed
def _random_start(norm: str, sub: _Sub, gen: torch.Generator) -> Tensor:
    """A random point of the ball (before the box projection): uniform in the L-inf box; for L2 / L1 a
    random direction (Gaussian / Laplace, normalised) times a radius uniform in [0, eps]."""
    x = sub.p.x
    shape, kw = x.shape, {"generator": gen, "dtype": x.dtype, "device": x.device}
    if norm == "inf":
        return (2 * torch.rand(shape, **kw) - 1) * sub.eps[:, None]
    if norm == "2":
        direction = torch.randn(shape, **kw)
    else:
        u = torch.rand(shape, **kw).clamp(min=torch.finfo(x.dtype).tiny)
        direction = -torch.log(u) * torch.where(torch.rand(shape, **kw) < 0.5, -1.0, 1.0).to(x.dtype)
    if sub.free is not None:
        direction = torch.where(sub.free, direction, torch.zeros_like(direction))
    n = lp_norm(direction, norm)
    direction = direction / torch.where(n > 0, n, torch.ones_like(n))[:, None]
    radius = torch.rand(shape[0], **kw) * sub.eps
    return direction * radius[:, None]


@_framed
def _ascent_step(norm: str, z: Tensor, grad: Tensor, sub: _Sub) -> Tensor:
    alpha = sub.alpha[:, None]
    if norm == "inf":
        return alpha * torch.sign(grad)
    if norm == "2":
        n = lp_norm(grad, "2")[:, None]
        return alpha * grad / torch.where(n > 0, n, torch.ones_like(n))
    # L1: sign step on the top-k coordinates by |grad| among those that can still move that way.
    blocked = ((grad > 0) & (z >= sub.zu)) | ((grad < 0) & (z <= sub.zl))
    g = torch.where(blocked, torch.zeros_like(grad), grad)
    mag = g.abs()
    thr = torch.sort(mag, dim=1, descending=True).values.gather(1, (sub.k_l1 - 1)[:, None])
    e = torch.sign(g) * ((mag >= thr) & (mag > 0)).to(g.dtype)
    count = e.abs().sum(dim=1, keepdim=True)
    return alpha * e / count.clamp(min=1)


def _distance(z: Tensor, norm: str, frames: int | None) -> Tensor:
    """||z||_p per sample (B,), or the largest frame norm for per-frame balls."""
    if not frames:
        return lp_norm(z, norm)
    b = z.shape[0]
    return lp_norm(z.reshape(b * frames, -1), norm).reshape(b, frames).amax(dim=1)


def _apply(p: _Problem, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """x_adv = clamp(x + scale z, lo, hi) in x's dtype; the float64 z it realises; fixed features kept."""
    x_adv = p.x + (z if p.scale is None else p.scale * z)
    if p.lo is not None:
        x_adv = torch.minimum(torch.maximum(x_adv, p.lo), p.hi)
    delta = x_adv.double() - p.x.double()
    if p.scale is None:
        return x_adv, delta, torch.ones(p.batch, dtype=torch.bool, device=p.x.device)
    s = p.scale.double()
    moving = s > 0
    z_eff = torch.where(moving, delta / torch.where(moving, s, torch.ones_like(s)), torch.zeros_like(delta))
    fixed_ok = (moving | (delta == 0)).all(dim=1)
    return x_adv, z_eff, fixed_ok
