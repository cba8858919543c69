"""Fast minimum-norm (FMN) attack: one run per sample gives the distance of a found adversarial example, an
UPPER bound on the minimal adversarial distortion (never certified), in L-inf, L2 and L1.

Where :func:`~certnn.attacks.radius.attack_radius` with a :class:`~certnn.attacks.pgd.PGDConfig` bisects
over PGD runs at fixed radii (each bisection step a full PGD run), FMN adapts the radius while it steps:
before the first adversarial point, the radius is the linearised distance to the decision boundary
(DeepFool's estimate); once a point is adversarial the radius shrinks by a factor (1 - gamma) and the
smallest adversarial perturbation so far caps it; while the iterate is not adversarial it grows by
(1 + gamma). Each step is a steepest-ascent step of the margin in the attack norm (sign for L-inf,
normalised gradient for L2, the top fraction of coordinates for L1) followed by the exact projection onto
the ball of the current radius intersected with the clip box. Step size and gamma decay on a cosine
schedule. Untargeted problems also run restarts aimed at the closest other classes (ranked by their
linearised distance, as multi-targeted PGD does).

The steps run in float32 (a float32 copy of the model); every candidate is then re-checked in float64: the
point x + scale * z is formed in x's dtype and clamped to the box, its distance ||z||_p is recomputed in
float64 from the point itself, its margin from a float64 forward pass. A short line search along the found
perturbation (float64 forward passes only) moves the point to the boundary. The reported radius is that
float64 distance rounded up by (dim + 8) ulps (the rounding of the float64 norm of dim terms).

Soundness: a sample counts as attacked only when its final point -- formed in x's dtype, clamped to the clip
box, re-checked to lie in the box -- has a float64 margin > 0 and a float64 distance within ``eps_max``;
the reported radius is that point's distance (rounded up), so it is an upper bound on the minimal
adversarial distortion whatever the float32 steps did.

References:
    M. Pintor, F. Roli, W. Brendel, B. Biggio. "Fast minimum-norm adversarial attacks through adaptive
    norm constraints." NeurIPS 2021 (the radius schedule).
    S.-M. Moosavi-Dezfooli, A. Fawzi, P. Frossard. "DeepFool." CVPR 2016 (the linearised boundary distance).
    J. Rony, L. G. Hafemann, L. S. Oliveira, I. Ben Ayed, R. Sabourin, E. Granger. "Decoupling direction
    and norm for efficient gradient-based L2 adversarial attacks and defenses." CVPR 2019 (DDN).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..config import Config
from ..errors import ConfigError
from .problem import Model, _logits, _margin, _norms, _prepare, _Problem, as_dtype
from .steps import _apply, _ascent_step, _distance, _project, _Sub, _z_box
from .projections import lp_norm, project_l2_ball

__all__ = ["FMNConfig", "fmn_attack"]

#: Rounds of the final float64 line search along the found perturbation.
_LINE_SEARCH_STEPS = 20
#: Factors tried (in order) when a float32-adversarial point is not adversarial in float64.
_PUSH_OUT = (1.0, 1.0 + 1e-6, 1.0 + 1e-4, 1.0 + 1e-3, 1.0 + 1e-2, 1.05)

Progress = Callable[[dict], None]


@dataclasses.dataclass(frozen=True)
class FMNConfig(Config):
    """Settings of :func:`fmn_attack`.

    Attributes:
        steps: steps per restart (>= 1). 50 by default: on MNIST MLPs, a CIFAR ConvSmall and a residual CNN
            (L-inf and L2, 20 images each) 50 steps gave mean radii within 0.2% of 100 steps at half the cost.
        restarts: runs per sample (>= 1), batched together: the first ascends the untargeted margin, later
            ones (untargeted problems with more than two classes) aim at the next closest classes by
            linearised distance; the smallest verified distance is kept.
        alpha_init, alpha_final: step length relative to the current radius, at the first and the last
            step (cosine schedule).
        gamma_init, gamma_final: the radius' relative change per step (cosine schedule).
        l1_sparsity: L1 steps move the top fraction of free coordinates by |gradient| (at least one).
        dtype: 'float32' (default; steps in a float32 copy of the model) or 'float64'. Candidates are
            re-checked in float64 either way.

    FMN is deterministic (every run starts at x), so it has no seed.
    """

    steps: int = 50
    restarts: int = 3
    alpha_init: float = 1.0
    alpha_final: float = 0.01
    gamma_init: float = 0.05
    gamma_final: float = 0.001
    l1_sparsity: float = 0.05
    dtype: str = "float32"

    choices: ClassVar[dict[str, tuple[Any, ...]]] = {"dtype": ("float32", "float64")}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "restarts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"FMNConfig.{name} = {v!r} must be an integer >= 1")
        for name in ("alpha_init", "alpha_final", "gamma_init", "gamma_final"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ConfigError(f"FMNConfig.{name} = {v!r} must be a positive number")
        if self.gamma_init >= 1 or self.gamma_final >= 1:
            raise ConfigError("FMNConfig.gamma_init and gamma_final must be < 1")
        if not 0 < self.l1_sparsity <= 1:
            raise ConfigError(f"FMNConfig.l1_sparsity = {self.l1_sparsity!r} must be in (0, 1]")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float32 if self.dtype == "float32" else torch.float64


def _working_model(model: Model, dtype: torch.dtype) -> Model:
    """``model`` in ``dtype``: nn.Modules through :func:`as_dtype`, certnn graphs through ``Graph.to``."""
    from ..graph.ir import Graph

    if isinstance(model, Graph):
        return model if model.dtype == dtype else model.to(dtype)
    return as_dtype(model, dtype)


def fmn_attack(model: Model, x: Tensor, y: Tensor, norm: str, config: FMNConfig = FMNConfig(),
               target: Tensor | None = None, clip: tuple[float | Tensor, float | Tensor] | None = None,
               scale: Tensor | None = None, *, eps_max: float | None = None, frame_norm: str | None = None,
               progress: Progress | None = None):
    """Minimum-norm adversarial examples, batched over samples; see the module docstring.

    Args:
        model: maps (B, *in_shape) to logits (B, K): an ``nn.Module`` (eval mode), a certnn ``Graph`` or a
            function (which must then accept float32 and float64 inputs itself).
        x: (B, *in_shape) floating point, finite. y: (B,) labels.
        norm: 'inf', '2' or '1'.
        config: :class:`FMNConfig`.
        target: None (untargeted) or (B,) target classes.
        clip: None or (lo, hi) box the perturbed point must stay in (x inside it).
        scale: None or a nonnegative tensor broadcastable to x: the perturbation is scale * z, ||z||_p is
            the distance (zero scale pins a feature).
        eps_max: largest radius searched (None: unbounded); a sample with no adversarial example within it
            gets radius inf.
        frame_norm: per-frame balls, as in :func:`~certnn.attacks.pgd.pgd_attack`.
        progress: called after every step with a dict: step, steps, samples (being attacked), runs (rows
            of the batch: samples x restarts).

    Returns:
        :class:`~certnn.attacks.radius.RadiusAttackResult`: ``radius`` the float64 distance of the found
        example rounded up by a few ulps (0 for samples misclassified at x, inf where none was found),
        ``distance`` the same unrounded (the checked point's float64 distance), ``x_adv`` the example (x where none), ``success``, ``margin``
        (float64, > 0 where success).
    """
    from .radius import RadiusAttackResult

    norm, frames = _norms(norm, frame_norm, x)
    if not isinstance(config, FMNConfig):
        raise ConfigError(f"config must be an FMNConfig; got {type(config).__name__}")
    cap = _cap(eps_max)
    model64 = _working_model(model, torch.float64)
    problem, clean_margin = _prepare(model64, x, y, target, clip, scale, frames)
    batch, device = problem.batch, problem.x.device
    f64 = {"dtype": torch.float64, "device": device}
    success = clean_margin > 0
    radius = torch.where(success, torch.zeros(batch, **f64), torch.full((batch,), math.inf, **f64))
    distance = torch.zeros(batch, **f64)
    margin = clean_margin.clone()
    best_z = torch.zeros_like(problem.x)  # in x's dtype; x itself where nothing was found
    todo = (~success).nonzero()[:, 0]
    found = _attack_samples(model, model64, problem, todo, norm, config, cap, progress) if todo.numel() else None
    if found is not None:
        okg, d_ok, m_ok, z_ok = found
        success[okg] = True
        distance[okg] = d_ok
        radius[okg] = d_ok * _round_up_factor(problem.x.shape[1])
        margin[okg] = m_ok
        best_z[okg] = z_ok
    x_adv, _, _ = _apply(problem, best_z)
    return RadiusAttackResult(radius=radius, x_adv=x_adv.reshape(batch, *problem.in_shape), success=success,
                              distance=distance, margin=margin, norm=norm, eps_max=cap)


def _attack_samples(model: Model, model64, problem, todo: Tensor, norm: str, config: FMNConfig, cap: float,
                    progress: Progress | None):
    """FMN on the samples `todo` (not adversarial at x), all restarts in one batch: (their indices with a
    verified example, its float64 distance, margin and z in x's dtype), or None when no run found one."""
    device = problem.x.device
    wdt = config.torch_dtype
    model_w = _working_model(model, wdt)
    sub = problem.subset(todo)
    pw = _cast(sub, wdt)
    n = len(todo)
    rows, aim = _restart_rows(pw, norm, model_w, config, n, device)
    z, d = _run(pw.subset(rows), norm, config, model_w, aim, cap, progress, n)
    pick = _closest_rows(rows, d, n, device)
    found = pick >= 0
    if not found.any():
        return None
    idx = found.nonzero()[:, 0]
    z_out, d_out, m_out, ok = _verify_and_refine(sub.subset(idx), z[pick[idx]].to(problem.x.dtype), norm,
                                                 model64, cap)
    return todo[idx][ok], d_out[ok], m_out[ok], z_out[ok]


def _cap(eps_max) -> float:
    """The largest radius searched: eps_max checked (a number > 0), inf for None."""
    if eps_max is not None and (isinstance(eps_max, bool) or not isinstance(eps_max, (int, float))
                                or math.isnan(eps_max) or eps_max <= 0):
        raise ConfigError(f"eps_max = {eps_max!r} must be a number > 0 (or None: unbounded)")
    return math.inf if eps_max is None else float(eps_max)


def _restart_rows(pw, norm: str, model_w, config: FMNConfig, n: int, device) -> tuple[Tensor, Tensor]:
    """(sample of each row, aimed class of each row or -1): every restart is a block of rows of one batch,
    one forward/backward per step for all of them; untargeted restarts past the first aim at other classes."""
    aims = _aims(pw, norm, model_w, config.restarts - 1) if pw.target is None and pw.n_classes > 2 else None
    rows = torch.arange(n, device=device)
    aim = torch.full((n,), -1, dtype=torch.long, device=device)
    if aims is not None and aims.shape[1]:
        rows = torch.cat([rows] + [torch.arange(n, device=device)] * aims.shape[1])
        aim = torch.cat([aim] + [aims[:, c] for c in range(aims.shape[1])])
    return rows, aim


def _closest_rows(rows: Tensor, d: Tensor, n: int, device) -> Tensor:
    """Per sample, one of its rows reaching the smallest finite distance d (-1: none found)."""
    best_w = torch.full((n,), math.inf, dtype=torch.float64, device=device)
    best_w = best_w.scatter_reduce(0, rows, d, reduce="amin")
    pick = torch.full((n,), -1, dtype=torch.long, device=device)
    hit = (d == best_w[rows]) & torch.isfinite(d)
    pick[rows[hit]] = hit.nonzero()[:, 0]  # one of the rows reaching the smallest distance
    return pick


def _round_up_factor(dim: int) -> float:
    """1 + (dim + 8) ulps: covers the rounding of the float64 difference, the division by the scale and a
    sum of dim terms in the norm (recursive summation errs by at most (dim - 1) u relative)."""
    return 1 + (dim + 8) * torch.finfo(torch.float64).eps


def _cast(p: _Problem, dtype: torch.dtype) -> _Problem:
    def c(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(dtype)

    return dataclasses.replace(p, x=c(p.x), scale=c(p.scale), lo=c(p.lo), hi=c(p.hi))


def _cosine(start: float, end: float, k: int, n: int) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * k / max(1, n))) / 2


def _dual(grad: Tensor, norm: str, frames: int | None) -> Tensor:
    """The dual norm of the gradient (B,): the rate at which the margin can change per unit distance."""
    q = {"inf": "1", "2": "2", "1": "inf"}[norm]
    if not frames:
        return lp_norm(grad, q)
    b = grad.shape[0]
    return lp_norm(grad.reshape(b * frames, -1), q).reshape(b, frames).sum(dim=1)


def _aims(p: _Problem, norm: str, model: Model, count: int) -> Tensor | None:
    """The ``count`` other classes closest by linearised distance (f_y - f_j)^+ / ||scale * grad (f_j - f_y)||_q
    at x, per sample (B, count), from one forward/backward pass on the batch repeated once per class."""
    if count < 1:
        return None
    b, k = p.batch, p.n_classes
    others = torch.arange(k, device=p.x.device)[None, :].expand(b, k)
    others = others[others != p.y[:, None]].reshape(b, k - 1)  # (B, K-1)
    rep = p.subset(torch.arange(b, device=p.x.device).repeat_interleave(k - 1))
    cls = others.reshape(-1)
    with torch.enable_grad():
        z = torch.zeros_like(rep.x).requires_grad_(True)
        logits = _logits(model, rep.x + (z if rep.scale is None else rep.scale * z), p.in_shape)
        gap = logits.gather(1, cls[:, None])[:, 0] - logits.gather(1, rep.y[:, None])[:, 0]
        (grad,) = torch.autograd.grad(gap.sum(), z)
    dual = _dual(grad, norm, p.frames)
    dist = torch.where(dual > 0, (-gap.detach()).clamp(min=0) / torch.where(dual > 0, dual, torch.ones_like(dual)),
                       torch.full_like(dual, math.inf)).reshape(b, k - 1)
    order = dist.argsort(dim=1, stable=True)[:, :count]
    return others.gather(1, order)


def _run(p: _Problem, norm: str, cfg: FMNConfig, model: Model, aim: Tensor, cap: float,
         progress: Progress | None, samples: int) -> tuple[Tensor, Tensor]:
    """FMN on every row of p (working dtype); row r ascends the untargeted (or targeted) margin where
    aim[r] < 0, else f_aim - f_y. Returns the smallest adversarial z per row (working dtype) and its
    distance (float64; inf where none)."""
    b, dim = p.x.shape
    dtype, device = p.x.dtype, p.x.device
    free = None if p.scale is None else p.scale > 0
    per = dim // p.frames if p.frames else dim
    if free is None:
        n_free = torch.full((b,) if not p.frames else (b, p.frames), per, device=device)
    else:
        n_free = free.sum(dim=1) if not p.frames else free.reshape(b, p.frames, per).sum(dim=2)
    k_l1 = torch.clamp(torch.ceil(cfg.l1_sparsity * n_free.to(torch.float64)).long(), min=1, max=max(per, 1))
    has_clip = p.lo is not None
    big = torch.finfo(dtype).max / 4
    cap_w = min(cap, big)
    z = torch.zeros_like(p.x)
    eps = torch.zeros(b, dtype=dtype, device=device)
    best_d = torch.full((b,), math.inf, dtype=torch.float64, device=device)
    best_z = torch.zeros_like(p.x)
    found = torch.zeros(b, dtype=torch.bool, device=device)
    for k in range(cfg.steps + 1):
        with torch.enable_grad():
            zr = z.detach().requires_grad_(True)
            logits = _logits(model, p.x + (zr if p.scale is None else p.scale * zr), p.in_shape)
            m = _margin(logits, p.y, p.target)
            aimed = logits.gather(1, aim.clamp(min=0)[:, None])[:, 0] - logits.gather(1, p.y[:, None])[:, 0]
            obj = torch.where(aim >= 0, aimed, m)
            last = k == cfg.steps
            grad = None if last else torch.autograd.grad(obj.sum(), zr)[0]
        m, obj = m.detach(), obj.detach()
        d = _distance(z.double(), norm, p.frames)
        adv = m > 0
        better = adv & (d < best_d)
        best_d = torch.where(better, d, best_d)  # no .any(): a host sync per step costs more on small nets
        best_z = torch.where(better[:, None], z, best_z)
        found |= adv
        if progress is not None:
            progress({"step": k, "steps": cfg.steps, "samples": samples, "runs": b})
        if last:
            break
        gamma = _cosine(cfg.gamma_init, cfg.gamma_final, k, cfg.steps)
        alpha = _cosine(cfg.alpha_init, cfg.alpha_final, k, cfg.steps)
        dual = _dual(grad, norm, p.frames)
        dn = d.to(dtype)
        to_boundary = torch.where(dual > 0, (-obj).clamp(min=0) / torch.where(dual > 0, dual, torch.ones_like(dual)),
                                  torch.full_like(dual, big))
        best_w = torch.where(torch.isfinite(best_d), best_d, torch.full_like(best_d, big)).to(dtype)
        eps = torch.where(adv, torch.minimum(eps * (1 - gamma), best_w),
                          torch.where(found, eps * (1 + gamma), (dn + to_boundary) * (1 + gamma)))
        eps = eps.clamp(max=cap_w)
        sub = _Sub(p, *_z_box(p, eps), eps, alpha * eps, k_l1, free, None)
        step = _ascent_step(norm, z, grad, sub)
        z = _feasible(z + step, sub, norm, has_clip, p.frames).detach()
    return best_z, best_d


def _feasible(z: Tensor, sub: _Sub, norm: str, has_clip: bool, frames) -> Tensor:
    """A point of ball and box near z. For L2 with a clip box: the ball's projection, then clamped into
    the box. Not the exact projection onto the intersection (a sort per step, ~5x the cost of a whole step on
    small nets), but feasible: 0 lies in the box of perturbations, so clamping only shrinks |z_i| and keeps
    the point in the ball. The reported radius is the distance of the final point, re-checked anyway. (For
    L1 the same shortcut measured 16% larger radii than PGD bisection on a test net: L1 keeps the exact one.)"""
    if norm != "2" or not has_clip or frames is not None:
        return _project(z, sub, norm, has_clip=has_clip)
    ball = project_l2_ball(z, sub.eps)
    return torch.maximum(torch.minimum(ball, sub.zu), sub.zl)


def _verify_and_refine(p: _Problem, z: Tensor, norm: str, model64: Model, cap: float
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Check candidates in float64 (pushing them slightly outwards where rounding put them on the wrong
    side), then line-search t in (0, 1] along the verified perturbation for the smallest t still
    adversarial. Returns (z, float64 distance, float64 margin, ok) per sample; z in p.x's dtype."""
    b = p.batch
    f64 = {"dtype": torch.float64, "device": p.x.device}

    def check(zc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x_adv, z_eff, fixed_ok = _apply(p, zc)
        d = _distance(z_eff, norm, p.frames)
        with torch.no_grad():
            mg = _margin(_logits(model64, x_adv.double(), p.in_shape), p.y, p.target)
        ok = (mg > 0) & fixed_ok & (d <= cap * (1 + 1e-12))
        if p.lo is not None:
            xa = x_adv.double()
            ok &= ((xa >= p.lo.double()) & (xa <= p.hi.double())).all(dim=1)
        return ok, d, mg

    ok = torch.zeros(b, dtype=torch.bool, device=p.x.device)
    z_ok = z.clone()
    hi = torch.ones(b, **f64)
    for f in _PUSH_OUT:
        todo = ~ok
        if not todo.any():
            break
        zc = torch.where(todo[:, None], z * f, z_ok)
        good, _, _ = check(zc)
        new = todo & good
        z_ok[new] = zc[new]
        hi[new] = 1.0
        ok |= new
    # line search on t: z_ok * t is adversarial at t = 1 (checked above)
    lo = torch.zeros(b, **f64)
    for _ in range(_LINE_SEARCH_STEPS):
        mid = (lo + hi) / 2
        good, _, _ = check(z_ok * mid.to(z_ok.dtype)[:, None])
        hi = torch.where(good & ok, mid, hi)
        lo = torch.where(good & ok, lo, mid)
    z_fin = z_ok * hi.to(z_ok.dtype)[:, None]
    good, d, mg = check(z_fin)
    # rounding may make the scaled point fail where the bisection said it passed: keep the unscaled one
    if not bool((good | ~ok).all()):
        back = ok & ~good
        z_fin[back] = z_ok[back]
        good2, d2, mg2 = check(z_fin)
        d, mg, good = torch.where(back, d2, d), torch.where(back, mg2, mg), torch.where(back, good2, good)
    return z_fin, d, mg, ok & good
