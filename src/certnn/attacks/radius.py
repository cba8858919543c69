"""The attack radius: the distance of a found, float64-verified adversarial example, an UPPER bound on the
minimal adversarial distortion, per sample (never a certified radius).

:func:`attack_radius` runs the minimum-norm attack (:mod:`certnn.attacks.fmn`, the default: one run gives a
distance) or, given a :class:`~certnn.attacks.pgd.PGDConfig`, the PGD radius search below.

The PGD search is batched over samples: each round makes one :func:`~certnn.attacks.pgd.pgd_attack` call on
the samples still searching, each with its own eps. First the radius is bracketed (doubling up from
``eps_init`` until success or ``eps_max``; halving down while the initial guess already succeeds), then
``steps`` rounds of bisection between the largest failed and the smallest successful eps.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import ConfigError
from .fmn import FMNConfig, fmn_attack
from .placement import model_on, result_on, target_device, tensor_on
from .pgd import PGDConfig, _run
from .problem import Model, _norms, _prepare, as_dtype

__all__ = ["RadiusAttackResult", "attack_radius"]

#: How far below eps_init the bracketing phase may halve before giving up (2 ** -_MAX_HALVINGS).
_MAX_HALVINGS = 20


@dataclasses.dataclass(frozen=True)
class RadiusAttackResult:
    """Outcome of :func:`attack_radius`: attack evidence (upper bounds), never certified.

    Attributes:
        radius: (B,) float64: PGD: the smallest eps at which PGD found a verified adversarial example;
            FMN: the float64 distance of the example found, rounded up by (dim + 8) ulps. Either way an upper
            bound on the minimal adversarial distortion. 0 for samples misclassified at x (or already of
            the target class); ``inf`` where nothing was found up to ``eps_max``.
        x_adv: (B, *in_shape), dtype of x: the example found at ``radius`` (x itself where none).
        success: (B,) bool: an adversarial example was found and verified (float64 forward pass, inside
            the ball of radius ``radius`` and the clip box).
        distance: (B,) float64: ||z||_p of x_adv - x = scale * z; distance <= radius, also an upper bound.
            0 where ``success`` is False.
        margin: (B,) float64: margin at x_adv from the float64 pass (> 0 where ``success``).
        norm: 'inf', '2' or '1'.
        eps_max: the largest eps tried.
    """

    radius: Tensor
    x_adv: Tensor
    success: Tensor
    distance: Tensor
    margin: Tensor
    norm: str
    eps_max: float


def attack_radius(model: Model, x: Tensor, y: Tensor, norm: str, config: FMNConfig | PGDConfig | None = None,
                  target: Tensor | None = None, clip: tuple[float | Tensor, float | Tensor] | None = None,
                  scale: Tensor | None = None, *, eps_max: float | None = None, eps_init: float | None = None,
                  steps: int = 12, frame_norm: str | None = None,
                  progress: Callable[[dict], None] | None = None, device=None) -> RadiusAttackResult:
    """Per-sample attack radius: an UPPER bound on the minimal adversarial distortion (a real,
    float64-verified adversarial example lies at that distance).

    With ``config`` None or an :class:`~certnn.attacks.fmn.FMNConfig`: the minimum-norm attack
    (:func:`~certnn.attacks.fmn.fmn_attack`), one run per sample. With a :class:`PGDConfig`: the smallest
    PGD radius, found by bracketing then batched bisection (one PGD run per step). PGD is not monotone in
    eps, so a failure at a smaller eps proves nothing; the bisection only narrows where PGD starts to
    succeed.

    Args:
        model, x, y, norm, target, clip, scale, frame_norm: as in :func:`~certnn.attacks.pgd.pgd_attack`.
        config: None (FMN with default settings), an FMNConfig or a PGDConfig.
        eps_max: largest radius searched (> 0). FMN: None means unbounded; PGD: finite, None means 1.0.
        eps_init: PGD only: first eps tried, in (0, eps_max]; None means eps_max / 16.
        steps: PGD only: bisection rounds after bracketing (>= 0); the bracket shrinks by 2 ** steps.
        progress: called with a dict after every step (FMN: step, steps, samples, runs)
            or every PGD run (phase 'bracket' / 'bisection', round, searching, samples).
        device: where the attacks run (None: x's device); the result comes back on x's device.

    Returns:
        :class:`RadiusAttackResult`.
    """
    dev = target_device(x, device)
    if dev is not None and isinstance(x, Tensor):
        res = attack_radius(model_on(model, dev), x.to(dev), tensor_on(y, dev), norm, config, tensor_on(target, dev),
                            tensor_on(clip, dev), tensor_on(scale, dev), eps_max=eps_max, eps_init=eps_init,
                            steps=steps, frame_norm=frame_norm, progress=progress)
        return result_on(res, x.device)
    if config is None or isinstance(config, FMNConfig):
        return fmn_attack(model, x, y, norm, config or FMNConfig(), target, clip, scale, eps_max=eps_max,
                          frame_norm=frame_norm, progress=progress)
    norm, frames = _norms(norm, frame_norm, x)
    if not isinstance(config, PGDConfig):
        raise ConfigError(f"config must be an FMNConfig or a PGDConfig; got {type(config).__name__}")
    eps_max, eps_init = _search_bounds(eps_max, eps_init, steps)

    model64 = as_dtype(model, torch.float64)
    problem, clean_margin = _prepare(model64, x, y, target, clip, scale, frames)
    search = _PGDSearch(problem, clean_margin, norm, config, as_dtype(model, x.dtype), model64, progress)
    search.bracket(eps_init, eps_max)
    search.bisect(steps)
    return RadiusAttackResult(radius=search.hi, x_adv=search.x_adv.reshape(problem.batch, *problem.in_shape),
                              success=search.success, distance=search.distance, margin=search.margin, norm=norm,
                              eps_max=float(eps_max))


def _search_bounds(eps_max: float | None, eps_init: float | None, steps: int) -> tuple[float, float]:
    """(eps_max, eps_init) of the PGD search with their defaults, checked (ConfigError), and steps checked."""
    eps_max = 1.0 if eps_max is None else eps_max
    if not _positive_finite(eps_max):
        raise ConfigError(f"eps_max = {eps_max!r} must be a finite number > 0")
    eps_init = eps_max / 16 if eps_init is None else eps_init
    if not _positive_finite(eps_init) or eps_init > eps_max:
        raise ConfigError(f"eps_init = {eps_init!r} must be in (0, eps_max = {eps_max}]")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps = {steps!r} must be an integer >= 0")
    return eps_max, eps_init


class _PGDSearch:
    """The batched PGD radius search: per sample the example found, its distance and margin, the largest eps
    where PGD failed (lo) and the smallest where it succeeded (hi, inf while none)."""

    def __init__(self, problem, clean_margin: Tensor, norm: str, config: PGDConfig, model_w, model64,
                 progress: Callable[[dict], None] | None):
        self.problem, self.norm, self.config = problem, norm, config
        self.model_w, self.model64, self.progress = model_w, model64, progress
        batch, device = problem.batch, problem.x.device
        self.f64 = {"dtype": torch.float64, "device": device}
        self.x_adv = problem.x.clone()
        self.success = clean_margin > 0
        self.margin = clean_margin.clone()
        self.distance = torch.zeros(batch, **self.f64)
        self.lo = torch.zeros(batch, **self.f64)  # largest eps where PGD failed
        self.hi = torch.where(self.success, torch.zeros(batch, **self.f64), torch.full((batch,), math.inf, **self.f64))
        self.rounds = 0

    def attack(self, idx: Tensor, eps64: Tensor) -> Tensor:
        """Attack samples idx at eps64 (rounded to x's dtype); record the outcome; return success."""
        problem = self.problem
        eps_w = eps64.to(problem.x.dtype)
        used = eps_w.double()
        res = _run(problem.subset(idx), eps_w, self.norm, self.config, self.model_w, self.model64)
        won = res.success
        sel = idx[won]
        self.hi[sel] = used[won]
        self.x_adv[sel] = res.x_adv.reshape(len(idx), problem.x.shape[1])[won]
        self.distance[sel] = res.distance[won]
        self.margin[sel] = res.margin[won]
        self.success[sel] = True
        lost = idx[~won]
        self.lo[lost] = torch.maximum(self.lo[lost], used[~won])
        return won

    def report(self, phase: str, n: int) -> None:
        self.rounds += 1
        if self.progress is not None:
            self.progress({"phase": phase, "round": self.rounds, "searching": n, "samples": self.problem.batch,
                           "found": int(torch.isfinite(self.hi).sum())})

    def bracket(self, eps_init: float, eps_max: float) -> None:
        """Phase 1: failures double (up to eps_max); successes with no failure below halve."""
        lo, hi = self.lo, self.hi
        cur = torch.full((self.problem.batch,), float(eps_init), **self.f64)
        searching = ~self.success
        floor = eps_init * 2.0 ** -_MAX_HALVINGS
        while bool(searching.any()):
            idx = searching.nonzero()[:, 0]
            asked = cur[idx]
            won = self.attack(idx, asked)
            nxt = torch.where(won, asked / 2, torch.clamp(asked * 2, max=eps_max))
            done = torch.where(won, (lo[idx] > 0) | (nxt < floor), torch.isfinite(hi[idx]) | (asked >= eps_max))
            cur[idx] = nxt
            searching[idx[done]] = False
            self.report("bracket", int(searching.sum()))

    def bisect(self, steps: int) -> None:
        """Phase 2: bisection between the largest failure and the smallest success."""
        lo, hi, dtype = self.lo, self.hi, self.problem.x.dtype
        open_ = torch.isfinite(hi) & (hi > 0)
        for _ in range(steps):
            mid = (lo + hi) / 2
            # stop where the bracket cannot be split any more in x's dtype
            mid_w = mid.to(dtype).double()
            open_ &= (mid_w > lo) & (mid_w < hi)
            idx = open_.nonzero()[:, 0]
            if idx.numel() == 0:
                break
            self.attack(idx, mid[idx])
            self.report("bisection", int(idx.numel()))


def _positive_finite(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)
