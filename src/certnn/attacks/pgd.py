"""Projected gradient descent (PGD) attacks in L-inf, L2 and L1: found adversarial examples, i.e. UPPER
bounds on the minimal adversarial distortion (never certified).

The perturbation is parametrised as delta = scale * z with ||z||_p <= eps (scale = 1 when not given; a
zero scale pins a feature), and x + delta must stay inside an optional clip box [lo, hi]. Everything is
batched over samples; the returned points are re-verified with a separate float64 forward pass.

References:
    A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu. "Towards deep learning models resistant to
    adversarial attacks." ICLR 2018 (PGD with random restarts; step 2.5 eps / steps).
    N. Carlini, D. Wagner. "Towards evaluating the robustness of neural networks." IEEE S&P 2017
    (margin loss).
    S. Gowal, J. Uesato, C. Qin, P.-S. Huang, T. Mann, P. Kohli. "An alternative surrogate loss for
    PGD-based adversarial testing." arXiv:1910.09338, 2019 (multi-targeted restarts).
    F. Tramer, D. Boneh. "Adversarial training and robustness for multiple perturbations." NeurIPS 2019
    (L1 steepest descent on the top-k coordinates, "SLIDE").
    J. Duchi et al. "Efficient projections onto the l1-ball for learning in high dimensions." ICML 2008.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import Config
from ..errors import ConfigError
from .placement import model_on, result_on, target_device, tensor_on
from .problem import Model, _eps_vector, _logits, _margin, _norms, _prepare, _Problem, as_dtype
from .projections import lp_norm
from .steps import _apply, _ascent_step, _distance, _project, _random_start, _Sub, _z_box

__all__ = ["PGDConfig", "AttackResult", "pgd_attack", "as_dtype"]

#: Relative tolerance of the ball and clip checks on returned points.
VERIFY_RTOL = 1e-9
_SHRINK_ROUNDS = 6
#: Multi-targeted restarts consider at most this many other classes (those with the highest logits).
_MAX_AIMS = 16


@dataclasses.dataclass(frozen=True)
class PGDConfig(Config):
    """Settings of :func:`pgd_attack`.

    Attributes:
        steps: gradient steps per restart (>= 1).
        restarts: independent runs (>= 1); the best point per sample is kept.
        step_size: step length relative to eps, in the attack norm (each L-inf step moves every coordinate
            by step_size * eps, each L2/L1 step has norm step_size * eps). None means 2.5 / steps
            (Madry et al. 2018), so that the steps could cross the ball 1.25 times.
        random_init: whether the first restart starts at a random point of the ball (later restarts
            always do); when False the first restart starts at x.
        seed: seed of the attack's own torch.Generator (no global random state is touched).
        l1_sparsity: fraction of the free coordinates updated per L1 step (the top fraction by
            |gradient|, at least one coordinate), in (0, 1].
        loss: 'margin' (Carlini-Wagner margin; default) or 'ce' (cross-entropy). Points are ranked by the
            margin in both cases, since the margin decides success.
        multi_target: untargeted attacks only: restart 0 ascends the untargeted loss, and restart r >= 1
            ascends the surrogate f_j - f_y (margin loss; -CE towards j with 'ce') for the r-th most
            promising other class j, cycling (multi-targeted PGD, Gowal et al. 2019). Classes are ranked
            by the linearised distance (f_y - f_j) / ||scale * grad_x (f_j - f_y)||_q at x (q the dual
            norm, as in DeepFool) among the 16 other classes with the highest logits. The untargeted
            margin max_{j != y} f_j - f_y is piecewise linear and convex even for a linear model, so plain
            PGD can stall at the boundary of the runner-up class while another class is closer.
    """

    steps: int = 100
    restarts: int = 5
    step_size: float | None = None
    random_init: bool = True
    seed: int = 0
    l1_sparsity: float = 0.05
    loss: str = "margin"
    multi_target: bool = True

    choices: ClassVar[dict[str, tuple[Any, ...]]] = {
        "loss": ("margin", "ce"), "random_init": (True, False), "multi_target": (True, False)}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"PGDConfig.{name} = {value!r} must be an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"PGDConfig.seed = {self.seed!r} must be an integer")
        if self.step_size is not None and not (_is_real(self.step_size) and 0 < self.step_size < math.inf):
            raise ConfigError(f"PGDConfig.step_size = {self.step_size!r} must be a positive number or None")
        if not (_is_real(self.l1_sparsity) and 0 < self.l1_sparsity <= 1):
            raise ConfigError(f"PGDConfig.l1_sparsity = {self.l1_sparsity!r} must be in (0, 1]")

    @property
    def relative_step(self) -> float:
        """The step length relative to eps actually used."""
        return self.step_size if self.step_size is not None else 2.5 / self.steps


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """Outcome of :func:`pgd_attack`: an attack, i.e. an upper-bound witness, never a certificate.

    Attributes:
        x_adv: (B, *in_shape), dtype of x: the returned point of each sample (inside the ball and the
            clip box; x itself if nothing better was found).
        success: (B,) bool: x_adv is adversarial, re-verified by a float64 forward pass, and satisfies
            the ball, clip and fixed-feature constraints (relative tolerance 1e-9).
        distance: (B,) float64: ||z||_p of the returned perturbation x_adv - x = scale * z.
        margin: (B,) float64: margin at x_adv from the float64 pass (untargeted max_{j != y} f_j - f_y,
            targeted f_t - max_{j != t} f_j); success requires margin > 0.
        eps: (B,) float64: the radius each sample was attacked with.
        norm: 'inf', '2' or '1' (the norm within each frame for per-frame balls).
    """

    x_adv: Tensor
    success: Tensor
    distance: Tensor
    margin: Tensor
    eps: Tensor
    norm: str


# ---------------------------------------------------------------------------------------------------
# The attack.


def pgd_attack(model: Model, x: Tensor, y: Tensor, eps: float | Tensor, norm: str,
               config: PGDConfig = PGDConfig(), target: Tensor | None = None,
               clip: tuple[float | Tensor, float | Tensor] | None = None,
               scale: Tensor | None = None, frame_norm: str | None = None, device=None) -> AttackResult:
    """PGD with random restarts in L-inf, L2 or L1, batched over samples (Madry et al. 2018).

    The perturbation is delta = scale * z with ||z||_p <= eps; the iterate z always lies in the ball and
    in the clip box (in z-space [(lo - x) / scale, (hi - x) / scale], and z = 0 where scale = 0). Steps
    ascend the loss: L-inf sign of the gradient, L2 the normalised gradient, L1 a sign step on the top
    ``l1_sparsity`` fraction of the free coordinates by |gradient| (Tramer & Boneh 2019), each followed by
    the exact Euclidean projection onto ball and box (clamp for L-inf; for L2 and L1 a sort-based
    projection, Duchi et al. 2008 when there is no clip box). Per sample the point with the highest margin
    is kept (the first successful one stops that sample); x itself is a candidate.

    Every returned point is checked in float64: ||z||_p <= eps (1 + 1e-9), lo <= x_adv <= hi, fixed
    features unchanged; a point that fails (rounding in low precision) is scaled back towards x, and
    ``success`` additionally needs a positive margin from a float64 forward pass of the model.

    Args:
        model: maps (B, *in_shape) to logits (B, K): an ``nn.Module`` (in eval mode) or a function. It runs
            in x's dtype (a converted deep copy when its parameters differ; see :func:`as_dtype`); a plain
            function must accept x's dtype and float64 itself.
        x: (B, *in_shape) floating point, finite.
        y: (B,) integer labels in [0, K).
        eps: radius, a number or (B,), finite and nonnegative.
        norm: 'inf', '2' or '1' (also 'linf', 2, ...).
        config: :class:`PGDConfig`.
        target: None (untargeted: success iff argmax f != y) or (B,) target classes (success iff
            f_t > f_j for all j != t).
        clip: None or (lo, hi), numbers or tensors broadcastable to x, taken in x's dtype; x must lie in
            the box.
        scale: None or a nonnegative tensor broadcastable to x (e.g. shape in_shape).
        frame_norm: per-frame balls (specs/lp.py): each frame (dim 0 of a sample) in its own ball of this
            norm, frames independent; ``norm`` must then be 'inf'. Steps and projections act frame by frame
            and ``distance`` is the largest frame norm.
        device: where the attack runs ("cpu", "cuda", "auto", a torch.device; None: x's device); the model
            and the tensors are moved there (attacks/placement.py) and the result comes back on x's device.

    Returns:
        :class:`AttackResult`. ``distance`` and ``margin`` are upper-bound evidence only.
    """
    dev = target_device(x, device)
    if dev is not None and isinstance(x, Tensor):
        res = pgd_attack(model_on(model, dev), x.to(dev), tensor_on(y, dev), tensor_on(eps, dev), norm, config,
                         tensor_on(target, dev), tensor_on(clip, dev), tensor_on(scale, dev), frame_norm)
        return result_on(res, x.device)
    norm, frames = _norms(norm, frame_norm, x)
    if not isinstance(config, PGDConfig):
        raise ConfigError(f"config must be a PGDConfig; got {type(config).__name__}")
    model64 = as_dtype(model, torch.float64)
    problem, _ = _prepare(model64, x, y, target, clip, scale, frames)
    eps_t = _eps_vector(eps, problem.batch, problem.x)
    model_w = as_dtype(model, x.dtype)
    return _run(problem, eps_t, norm, config, model_w, model64)


def _run(p: _Problem, eps: Tensor, norm: str, cfg: PGDConfig, model_w: Model, model64: Model) -> AttackResult:
    """The attack on a prepared problem; eps (B,) in x's dtype."""
    batch = p.x.shape[0]
    if batch == 0:
        return _finalize(p, p.x.clone(), eps, norm, model64)
    gen = torch.Generator(device=p.x.device)
    gen.manual_seed(cfg.seed)
    zl, zu = _z_box(p, eps)
    free = None if p.scale is None else p.scale > 0
    k_l1 = _l1_counts(p, free, cfg.l1_sparsity)
    alpha = cfg.relative_step * eps

    best_z = torch.zeros_like(p.x)
    with torch.no_grad():  # x itself is a candidate
        best_m = _margin(_logits(model_w, p.x, p.in_shape), p.y, p.target).to(p.x.dtype)
    aims = None
    if cfg.multi_target and p.target is None and cfg.restarts > 1 and p.n_classes > 2:
        aims = _rank_aims(p, norm, model_w)

    with torch.enable_grad():
        for restart in range(cfg.restarts):
            idx = (best_m <= 0).nonzero()[:, 0]
            if idx.numel() == 0:
                break
            aim = None if aims is None or restart == 0 else aims[idx, (restart - 1) % aims.shape[1]]
            sub = _Sub(p.subset(idx), zl[idx], zu[idx], eps[idx], alpha[idx], k_l1[idx],
                       None if free is None else free[idx], aim)
            if restart == 0 and not cfg.random_init:
                z = torch.zeros_like(sub.p.x)
            else:
                z = _project(_random_start(norm, sub, gen), sub, norm, has_clip=p.lo is not None)
            _ascend(p, sub, idx, z, norm, cfg, model_w, best_z, best_m)
    return _finalize(p, best_z, eps, norm, model64)


def _l1_counts(p: _Problem, free: Tensor | None, sparsity: float) -> Tensor:
    """Coordinates one L1 step moves, per sample (B,) or per frame (B, T): the top ``sparsity`` fraction
    of the free coordinates, at least one."""
    batch, dim = p.x.shape
    per = dim // p.frames if p.frames else dim  # coordinates one L1 step spreads over (a frame, or all)
    if free is None:
        n_free = torch.full((batch,) if not p.frames else (batch, p.frames), per, device=p.x.device)
    else:
        n_free = free.sum(dim=1) if not p.frames else free.reshape(batch, p.frames, per).sum(dim=2)
    return torch.clamp(torch.ceil(sparsity * n_free.to(torch.float64)).long(), min=1, max=max(per, 1))


def _ascend(p: _Problem, sub: _Sub, idx: Tensor, z: Tensor, norm: str, cfg: PGDConfig, model_w: Model,
            best_z: Tensor, best_m: Tensor) -> None:
    """One restart's steps from z for the samples ``idx``; the best point and margin of each sample are
    kept in ``best_z`` / ``best_m`` (in place). A sample stops at its first success."""
    for step in range(cfg.steps + 1):
        z = z.detach().requires_grad_(True)
        x_in = sub.p.x + (z if sub.p.scale is None else sub.p.scale * z)
        logits = _logits(model_w, x_in, p.in_shape)
        m = _margin(logits, sub.p.y, sub.p.target)
        last = step == cfg.steps
        grad = None
        if not last:
            (grad,) = torch.autograd.grad(_objective(cfg.loss, logits, m, sub).sum(), z)
        z, m = z.detach(), m.detach().to(p.x.dtype)
        better = m > best_m[idx]
        if better.any():
            best_z[idx[better]] = z[better]
            best_m[idx[better]] = m[better]
        if last:
            break
        keep = m <= 0  # samples that succeeded stop here
        if not keep.all():
            if not keep.any():
                break
            idx, z, grad = idx[keep], z[keep], grad[keep]
            sub = sub.subset(keep)
        z = _project(z + _ascent_step(norm, z, grad, sub), sub, norm, has_clip=p.lo is not None)


def _objective(loss: str, logits: Tensor, margin: Tensor, sub: _Sub) -> Tensor:
    """The per-sample quantity a step ascends (B,)."""
    p = sub.p
    if sub.aim is not None:
        if loss == "ce":
            return -F.cross_entropy(logits, sub.aim, reduction="none")
        return logits.gather(1, sub.aim[:, None])[:, 0] - logits.gather(1, p.y[:, None])[:, 0]
    if loss == "ce":
        ce = F.cross_entropy(logits, p.y if p.target is None else p.target, reduction="none")
        return ce if p.target is None else -ce
    return margin


def _rank_aims(p: _Problem, norm: str, model: Model) -> Tensor:
    """Other classes ordered by linearised distance at x (DeepFool-style), (B, C), C <= _MAX_AIMS.

    Among the C other classes with the highest logits, class j is ranked by
    (f_y - f_j)^+ / ||scale * grad_x (f_j - f_y)||_q with q the dual norm of ``norm``."""
    q = {"inf": "1", "2": "2", "1": "inf"}[norm]
    with torch.enable_grad():
        z = torch.zeros_like(p.x).requires_grad_(True)
        logits = _logits(model, p.x + (z if p.scale is None else p.scale * z), p.in_shape)
        n_cand = min(p.n_classes - 1, _MAX_AIMS)
        others = logits.detach().scatter(1, p.y[:, None], float("-inf"))
        cand = others.topk(n_cand, dim=1).indices  # (B, C)
        own = logits.gather(1, p.y[:, None])[:, 0]
        dist = []
        for c in range(n_cand):  # a loop over candidate classes, batched over samples
            gap = logits.gather(1, cand[:, c:c + 1])[:, 0] - own
            (grad,) = torch.autograd.grad(gap.sum(), z, retain_graph=c + 1 < n_cand)
            dual = lp_norm(grad, q) if not p.frames else \
                lp_norm(grad.reshape(grad.shape[0] * p.frames, -1), q).reshape(grad.shape[0], -1).sum(dim=1)
            dist.append(torch.where(dual > 0, (-gap.detach()).clamp(min=0) / dual,
                                    torch.full_like(dual, float("inf"))))
    order = torch.stack(dist, dim=1).argsort(dim=1, stable=True)
    return cand.gather(1, order)


def _finalize(p: _Problem, z: Tensor, eps: Tensor, norm: str, model64: Model) -> AttackResult:
    """Map z to x_adv, enforce and verify the constraints in float64, and re-verify success in float64."""
    eps64 = eps.double()
    limit = eps64 * (1 + VERIFY_RTOL)
    tiny = torch.finfo(p.x.dtype).eps
    z = z.detach().clone()
    for k in range(_SHRINK_ROUNDS + 1):
        x_adv, z_eff, fixed_ok = _apply(p, z)
        dist = _distance(z_eff, norm, p.frames)
        ball_ok = (dist <= limit) & fixed_ok
        if bool(ball_ok.all()):
            break
        if k == _SHRINK_ROUNDS:  # give up: return x itself for those samples
            z = torch.where(ball_ok[:, None], z, torch.zeros_like(z))
            x_adv, z_eff, fixed_ok = _apply(p, z)
            dist = _distance(z_eff, norm, p.frames)
            ball_ok = (dist <= limit) & fixed_ok
            break
        factor = eps64 / torch.where(dist > 0, dist, torch.ones_like(dist)) * (1 - 4.0 ** k * 4 * tiny)
        z = torch.where(ball_ok[:, None], z, z * factor.to(z.dtype)[:, None])
    x64 = x_adv.double()
    clip_ok = torch.ones_like(ball_ok)
    if p.lo is not None:
        lo, hi = p.lo.double(), p.hi.double()
        clip_ok = ((x64 >= lo - VERIFY_RTOL * lo.abs().clamp(min=1))
                   & (x64 <= hi + VERIFY_RTOL * hi.abs().clamp(min=1))).all(dim=1)
    with torch.no_grad():
        margin = _margin(_logits(model64, x64, p.in_shape), p.y, p.target) if p.batch else x64.new_zeros(0)
    success = (margin > 0) & ball_ok & clip_ok
    return AttackResult(x_adv=x_adv.reshape(p.batch, *p.in_shape), success=success, distance=dist,
                        margin=margin, eps=eps64, norm=norm)
