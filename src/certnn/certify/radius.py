"""Certification at given radii, certified accuracy, and the certified radius search.

The certified radius of a correctly classified sample is the largest eps at which the method proves that
no point of the input set changes the prediction. It is found for the whole batch at once: a bracketing
phase (doubling up from `eps_init`, or halving down when eps_init fails) and then a narrowing of each
bracket to the precision of `bisection_steps` halvings (in log space by default, as CNN-Cert does; by default
interpolating on the margin bounds, certify/radius_search.py), every step one batched bound computation with
a per-sample eps.
The reported radius is the last eps actually certified (a proved lower bound on the minimal adversarial
distortion); it is 0 for misclassified samples and for samples not certified even at `eps_min`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import Config, parse_norm
from ..engine.methods import METHODS
from ..errors import ConfigError, DataError, SpecError
from ..graph.ir import Graph
from ..optimize.config import AlphaConfig
from .complete import CompleteConfig, complete_status
from .bounds import CertifyResult, Model, apply_precision, bounds_for_spec, make_spec, sound_graph, to_graph
from .radius_search import STRATEGIES, Bracket, bracket, max_steps, shrink
from .search_clock import SearchClock
from .staged_search import crown_stage
from .targets import TARGETS, margin_matrix, select_targets
from .warm_start import _Warm

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CertifyConfig(Config):
    """Settings shared by certify / radius / accuracy (one source of truth for the CLI flags)."""

    method: str = "crown"
    norm: str = "inf"
    target: str = "untargeted"
    clip: tuple[float, float] | None = None
    seed: int = 0
    batch_size: int = 32
    max_rows: int = 4096
    #: sequence inputs (T, d): perturb only these frames (None: all), each with its relative eps
    #: (specs/frames.py); the certified radius is then searched for the chosen frames
    frames: tuple[int, ...] | None = None
    frame_eps: tuple[float, ...] | None = None
    #: per-frame balls (specs/lp.py): the norm within each frame, frames independent (norm must be 'inf');
    #: POPQORN's threat model is frame_norm='2'
    frame_norm: str | None = None
    #: the optimiser of method 'alpha-crown' (iterations, step size, early stop)
    alpha: AlphaConfig = AlphaConfig()
    #: complete certification: samples the method does not prove go to branch and bound (certify/complete.py)
    complete: CompleteConfig | None = None

    def __post_init__(self) -> None:
        if self.frames is not None:
            fr = (self.frames,) if isinstance(self.frames, int) else self.frames
            object.__setattr__(self, "frames", tuple(int(f) for f in fr))
        if self.frame_eps is not None:
            fe = (self.frame_eps,) if isinstance(self.frame_eps, (int, float)) else self.frame_eps
            object.__setattr__(self, "frame_eps", tuple(float(v) for v in fe))
        object.__setattr__(self, "norm", parse_norm(self.norm))
        if self.frame_norm is not None:
            from ..specs.lp import check_frame_norm

            fn = parse_norm(self.frame_norm)
            try:
                check_frame_norm(self.norm, fn, (1, 1))
            except SpecError as exc:
                raise ConfigError(str(exc)) from None
            object.__setattr__(self, "frame_norm", fn)
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(sorted(METHODS))}")
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.batch_size < 1 or self.max_rows < 1:
            raise ConfigError("batch_size and max_rows must be >= 1")
        if self.clip is not None:
            if len(self.clip) != 2 or not self.clip[0] < self.clip[1]:
                raise ConfigError("clip must be (lo, hi) with lo < hi")
            object.__setattr__(self, "clip", (float(self.clip[0]), float(self.clip[1])))


@dataclass(frozen=True)
class RadiusConfig(Config):
    """Search settings: eps_init (default per norm), bracket [eps_min, eps_max], bisection steps."""

    eps_init: float | None = None
    eps_min: float = 1e-6
    eps_max: float = 1e3
    bracket_steps: int = 30
    bisection_steps: int = 14
    log_space: bool = True
    #: how the bracket is narrowed to the precision of `bisection_steps` halvings (certify/radius_search.py):
    #: 'itp' (interpolation on the margin bounds, at most two steps more than bisection) or 'bisection'
    strategy: str = "itp"
    #: alpha-crown: bracket from CROWN's radius, found first (certify/staged_search.py); False: from eps_init
    crown_stage: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.eps_min < self.eps_max:
            raise ConfigError("need 0 < eps_min < eps_max")
        if self.eps_init is not None and not self.eps_min <= self.eps_init <= self.eps_max:
            raise ConfigError("eps_init must lie in [eps_min, eps_max]")
        if self.bisection_steps < 0 or self.bracket_steps < 1:
            raise ConfigError("bisection_steps >= 0 and bracket_steps >= 1 required")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown search strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")

    def initial(self, norm: str) -> float:
        if self.eps_init is not None:
            return self.eps_init
        return {"inf": 0.01, "2": 0.1, "1": 1.0}[norm]


@dataclass(frozen=True)
class RadiusResult:
    """Per-sample certified radii (proved lower bounds) and bookkeeping."""

    certified_radius: Tensor  # (B,) float64, 0 where misclassified / never certified
    predicted: Tensor  # (B,)
    correct: Tensor  # (B,) bool
    target: Tensor | None  # (B,) target class or None (untargeted)
    time_s: Tensor  # (B,) wall time attributed per sample (batch time / batch size)
    evaluations: int  # batched bound computations
    #: complete search only: the smallest eps at which a checked adversarial example was found (an upper
    #: bound of the minimal adversarial distortion; inf where none was found), else None
    violated_at: Tensor | None = None


class Certifier:
    """A model imported once, with one method / norm / target setting; batched certification calls."""

    def __init__(self, model: Model, config: CertifyConfig = CertifyConfig(), input_shape=None,
                 scale: Tensor | None = None, dtype: torch.dtype | str = torch.float64, device=None):
        """dtype: torch.float64 (default), torch.float32 / "float32", or "float32-sound" (certify/precision.py).
        device: where the bounds are computed ("cpu" default, "cuda", "auto"); results come back on the cpu."""
        from .device import resolve_device
        from .precision import parse_precision

        from .profile import Profile

        self.device = resolve_device(device)
        self.config = config
        #: seconds per phase over every call of this Certifier (certify/profile.py; the JSON's "timers")
        self.profile = Profile()
        dtype, self.sound = parse_precision(dtype)
        self.graph: Graph = (sound_graph(model, input_shape, dtype) if self.sound
                             else to_graph(model, input_shape, dtype)).to(device=self.device)
        self.dtype = dtype
        #: float32-sound keeps the data in float64: the float32 set is built around it (make_spec)
        self.data_dtype = torch.float64 if self.sound else dtype
        if config.frames is not None or config.frame_eps is not None:
            from ..specs.frames import frame_scale

            fs = frame_scale(self.graph.input_shape, config.frames, config.frame_eps, dtype)
            scale = fs if scale is None else fs * torch.as_tensor(scale, dtype=dtype)
        self.scale = scale
        if config.frame_norm is not None:
            from ..specs.lp import check_frame_norm

            check_frame_norm(config.norm, config.frame_norm, self.graph.input_shape)
        K = 1
        for s in self.graph.output_shape:
            K *= s
        if len(self.graph.output_shape) != 1:
            raise DataError(f"the model's output has shape {self.graph.output_shape}; a classifier must output "
                            "one logit vector per sample")
        self.num_classes = K

    # ---------------------------------------------------------------- helpers
    def _prep(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.as_tensor(x).to(self.data_dtype)
        y = torch.as_tensor(y).long().reshape(-1)
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
        if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
            raise DataError(f"labels must lie in [0, {self.num_classes - 1}] for this model")
        if tuple(x.shape[1:]) != self.graph.input_shape:
            raise DataError(f"inputs have shape {tuple(x.shape[1:])} per sample; the model expects "
                            f"{self.graph.input_shape}")
        return x, y

    def predict(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.graph.forward(torch.as_tensor(x).to(dtype=self.dtype, device=self.device)).cpu()

    def targets(self, logits: Tensor, y: Tensor, index_offset: int = 0) -> Tensor | None:
        """Target per sample; 'random' is drawn per sample from (seed, index_offset + i) (certify/targets.py)."""
        return select_targets(logits, y, self.config.target, self.config.seed, index_offset)

    def margin_lower(self, x: Tensor, y: Tensor, eps: Tensor, target: Tensor | None, proof_only: bool = False,
                     warm: dict | None = None) -> Tensor:
        """Lower bounds (B, S) of f_y - f_j over the ball (no batching/chunking). proof_only: the optimiser
        of alpha-crown may stop a sample as soon as every bound is positive. warm: a dict the optimised
        parameters are read from and written to (alpha-crown; see _search)."""
        with self.profile.phase("bounds"):
            lo = self._margin_lower(x, y, eps, target, proof_only, warm)
        self.profile.count("bound_calls")
        self.profile.count("samples_bounded", int(lo.shape[0]))
        return lo

    def _margin_lower(self, x, y, eps, target, proof_only, warm) -> Tensor:
        if not self.sound:  # (float32-sound builds its set from the float64 data, then moves it)
            x = x.to(self.device)
        spec = make_spec(self.graph, x, torch.as_tensor(eps).to(x.device), self.config.norm,
                         self.config.clip, self.scale, self.config.frame_norm, sound=self.sound)
        C = margin_matrix(y, self.num_classes, target, self.dtype).to(self.device)
        if METHODS[self.config.method].engine == "optimized":
            from ..optimize import optimized_bounds
            from ..engine.context import RunContext

            cfg = self.config.alpha.replace(stop_at=0.0) if proof_only else self.config.alpha
            ctx = apply_precision(RunContext(self.graph, spec, METHODS[self.config.method],
                                             max_rows=self.config.max_rows), self.sound)
            res = optimized_bounds(ctx, C, lower=True, upper=False, config=cfg,
                                   warm=None if warm is None else warm.get("params"))
            if warm is not None:
                warm["params"] = res.params
            self.profile.add(ctx.timers)
            return res.lower.cpu()  # (B, S): the search's bookkeeping stays on the cpu
        lo, _, timers = bounds_for_spec(self.graph, spec, self.config.method, C, lower=True, upper=False,
                                        max_rows=self.config.max_rows, sound=self.sound)
        self.profile.add(timers if self.config.method != "lipschitz" else None)
        return lo.cpu()

    # ---------------------------------------------------------------- public
    def certify(self, x: Tensor, y: Tensor, eps, index_offset: int = 0) -> CertifyResult:
        """Verdicts at one eps (scalar or per-sample (B,)), batched by config.batch_size; index_offset: the
        global index of x[0] (keys the 'random' targets)."""
        x, y = self._prep(x, y)
        B = x.shape[0]
        eps_t = torch.as_tensor(eps, dtype=self.dtype)
        eps_t = eps_t.expand(B).clone() if eps_t.ndim == 0 else eps_t
        logits = self.predict(x)
        pred = logits.argmax(1)
        target = self.targets(logits, y, index_offset)
        S = 1 if target is not None else self.num_classes - 1
        ml = torch.full((B, S), -torch.inf, dtype=self.dtype)
        correct = pred == y
        bs = self.config.batch_size
        for i in range(0, B, bs):
            sl = slice(i, min(B, i + bs))
            idx = torch.nonzero(correct[sl]).flatten() + i
            if idx.numel() == 0:
                continue
            t = None if target is None else target[idx]
            ml[idx] = self.margin_lower(x[idx], y[idx], eps_t[idx], t, proof_only=True)
        certified = correct & (ml > 0).all(1)
        status = None
        if self.config.complete is not None:
            status = ["misclassified"] * B
            for i in range(0, B, bs):
                idx = torch.nonzero(correct[i:i + bs]).flatten() + i
                if idx.numel():
                    st, _ = self._complete(x[idx], y[idx], eps_t[idx], None if target is None else target[idx],
                                           certified[idx])
                    for k, j in enumerate(idx.tolist()):
                        status[j] = st[k]
            certified = torch.tensor([s == "holds" for s in status], dtype=torch.bool)
        return CertifyResult(pred, correct, certified, ml, target, status)

    def _complete(self, x, y, eps, t, proved) -> tuple[list, Tensor | None]:
        """Complete verdicts (certify/complete.py) for samples the method did (not) prove (`proved`)."""
        spec = make_spec(self.graph, x, eps, self.config.norm, self.config.clip, self.scale)
        C = margin_matrix(y, self.num_classes, t, self.dtype).to(self.device)
        res = complete_status(self.graph, spec, C, self.config.complete, proved, model=self.graph, y=y, target=t)
        return res.status, res.x_adv

    def certified_accuracy(self, x: Tensor, y: Tensor, eps_list: Sequence[float],
                           progress: Progress | None = None) -> dict[float, float]:
        """Fraction of samples that are correctly classified and certified, per eps."""
        out = {}
        for k, e in enumerate(eps_list):
            r = self.certify(x, y, float(e))
            out[float(e)] = r.certified.double().mean().item() if r.certified.numel() else float("nan")
            if progress:
                progress(k + 1, len(eps_list))
        return out

    def radius(self, x: Tensor, y: Tensor, search: RadiusConfig = RadiusConfig(),
               progress: Progress | None = None, on_step: Callable[[dict], None] | None = None,
               index_offset: int = 0) -> RadiusResult:
        """Certified radius per sample (doubling/halving to bracket, then bisection), batched.

        ``progress(done, total)`` after every batch; ``on_step(info)`` after every bound computation and
        ``time_s`` per sample as in certify/search_clock.py; index_offset as in :meth:`certify`."""
        x, y = self._prep(x, y)
        B = x.shape[0]
        logits = self.predict(x)
        pred = logits.argmax(1)
        target = self.targets(logits, y, index_offset)
        correct = pred == y
        radius = torch.zeros(B, dtype=torch.float64)
        times = torch.zeros(B, dtype=torch.float64)
        violated = torch.full((B,), math.inf, dtype=torch.float64)
        evals = 0
        bs = self.config.batch_size
        done = 0
        for i in range(0, B, bs):
            sl = torch.arange(i, min(B, i + bs))
            idx = sl[correct[sl]]
            t0 = time.perf_counter()
            clock = SearchClock(len(idx), on_step, {"batch": i // bs + 1})
            if idx.numel():
                r, n = self._search(x[idx], y[idx], None if target is None else target[idx], search, clock)
                radius[idx] = r
                violated[idx] = self._violated
                evals += n
            clock.share(times, sl, idx, time.perf_counter() - t0)
            done += len(sl)
            if progress:
                progress(done, B)
        return RadiusResult(radius, pred, correct, target, times, evals,
                            violated if self.config.complete is not None else None)

    def _certified_at(self, x, y, t, eps, warm: "_Warm | None" = None, index: Tensor | None = None):
        """(certified per sample, min margin lower bound per sample or None for a complete search's verdict)."""
        box = None if warm is None else {"params": warm.get(index)}
        lo = self.margin_lower(x, y, eps, t, proof_only=True, warm=box)
        if warm is not None:
            warm.put(index, box["params"])
        ok = (lo > 0).all(1)
        if self.config.complete is None:
            return ok, lo.min(1).values
        with self.profile.phase("complete"):
            status, _ = self._complete(x, y, eps, t, ok)
        viol = torch.tensor([s == "violated" for s in status], dtype=torch.bool)
        self._violated[index[viol]] = torch.minimum(self._violated[index[viol]], eps[viol].to(torch.float64).cpu())
        return torch.tensor([s == "holds" for s in status], dtype=torch.bool), None

    def _search(self, x: Tensor, y: Tensor, t: Tensor | None, cfg: RadiusConfig,
                clock: SearchClock | None = None) -> tuple[Tensor, int]:
        """(certified radius, bound computations); ``clock`` receives each sample's share of the time."""
        if self.config.method == "lipschitz":
            self._violated = torch.full((x.shape[0],), math.inf, dtype=torch.float64)
            return self._lipschitz_radius(x, y, t), 1
        n = x.shape[0]
        clock = SearchClock(n) if clock is None else clock
        self._violated = torch.full((n,), math.inf, dtype=torch.float64)
        # alpha-crown: each step starts from the parameters the previous step ended with (where shapes match)
        warm = _Warm(n) if METHODS[self.config.method].engine == "optimized" else None
        phase = {"name": "bracket", "k": 0, "steps": cfg.bracket_steps}

        def evaluate(a: Tensor, eps: Tensor):
            with clock.step(phase["name"], phase["k"], phase["steps"], a):
                ok, margin = self._certified_at(x[a], y[a], None if t is None else t[a], eps.to(self.dtype), warm, a)
            self.profile.count(f"{phase['name']}_steps")
            phase["k"] += 1
            return ok.cpu(), margin

        state = Bracket.empty(n)
        eps = torch.full((n,), cfg.initial(self.config.frame_norm or self.config.norm), dtype=torch.float64)
        tol, evals = None, 0
        if warm is not None and self.config.complete is None and cfg.log_space and cfg.crown_stage:
            with self.profile.phase("search:crown_stage"):
                eps, tol, evals = crown_stage(self, x, y, t, cfg, state, eps)
        with self.profile.phase("search:bracket"):
            evals += bracket(state, eps, evaluate, cfg.bracket_steps, cfg.eps_min, cfg.eps_max)
        # verdicts of a complete search and alpha-crown's early-stopped bounds (proof_only) carry no margin
        # worth interpolating: those searches bisect
        exact_margins = self.config.complete is None and warm is None
        strategy = cfg.strategy if exact_margins else "bisection"
        phase.update(name="bisection", k=0, steps=max_steps(cfg.bisection_steps, strategy))
        with self.profile.phase("search:bisection"):
            evals += shrink(state, evaluate, cfg.bisection_steps, cfg.log_space, strategy, tol)
        return state.lo, evals

    def _lipschitz_radius(self, x, y, t) -> Tensor:
        """Closed form: min_j margin_j(x0) / L_j (the ball is certified for every eps below it)."""
        from ..engine.lipschitz import lipschitz_constants

        C = margin_matrix(y, self.num_classes, t, self.dtype).to(self.device)
        with torch.no_grad():
            f0 = self.graph.forward(x.to(self.device))
            margins = torch.einsum("bsk,bk->bs", C, f0)
            L = lipschitz_constants(self.graph, C, self.config.norm, self.scale)
        r = (margins / L).min(1).values.clamp(min=0)
        # the ball of radius r touches the boundary; report a radius a hair below it (strict inequality)
        return (r * (1 - 1e-9)).to(torch.float64).cpu()


def certified_radius(model: Model, x: Tensor, y: Tensor, norm="inf", method: str = "crown",
                     target: str = "untargeted", clip=None, input_shape=None, search: RadiusConfig = RadiusConfig(),
                     dtype: torch.dtype | str = torch.float64, device=None, **kwargs) -> RadiusResult:
    """Certified radius of each sample (see :class:`Certifier`; dtype / device as there)."""
    cfg = CertifyConfig(method=method, norm=norm, target=target, clip=clip, **kwargs)
    shape = input_shape or tuple(torch.as_tensor(x).shape[1:])
    return Certifier(model, cfg, shape, dtype=dtype, device=device).radius(x, y, search)


def certify(model: Model, x: Tensor, y: Tensor, eps, norm="inf", method: str = "crown",
            target: str = "untargeted", clip=None, input_shape=None, dtype: torch.dtype | str = torch.float64,
            device=None, **kwargs) -> CertifyResult:
    """Verdicts at radius eps (scalar or per-sample; dtype / device as in :class:`Certifier`)."""
    cfg = CertifyConfig(method=method, norm=norm, target=target, clip=clip, **kwargs)
    shape = input_shape or tuple(torch.as_tensor(x).shape[1:])
    return Certifier(model, cfg, shape, dtype=dtype, device=device).certify(x, y, eps)
