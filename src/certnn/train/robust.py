"""Verified robust training: IBP (Gowal et al. 2018), CROWN-IBP (Zhang et al. ICLR 2020) and Cert-RNN's
zonotopes (Du et al. CCS 2021) as training losses.

Each step minimises

    L = kappa * CE(f(x), y) + (1 - kappa) * CE(-[0, m], 0),     m_j <= f_y(x') - f_j(x')  on the ball,

the second term being the cross-entropy of the *worst-case logits*: the lower bounds m (B, K-1) of the
margins of the true class over every other class, from the method's bounds on C f with C's rows
e_y - e_j, padded with 0 for the true class (:func:`~certnn.train.margins.robust_cross_entropy`). kappa
weighs the clean loss, as in both papers; 1 - kappa is the weight of the robust loss.

Schedule (per optimiser step, :func:`schedule`): ``warmup_epochs`` of clean training (eps = 0,
kappa = 1), then ``ramp_epochs`` over which eps grows linearly from 0 to ``eps`` (the first ramp step
already has eps / ramp_steps), kappa falls linearly from 1 to ``kappa_final`` (Gowal et al.: 1 -> 0.5)
and, for CROWN-IBP, beta (the weight of the CROWN-IBP bound against the IBP bound) falls from 1 to
``beta_final`` (Zhang et al.'s default 1 -> 0); then eps, kappa_final, beta_final to the end.

Gradients flow from the bounds to the parameters: the graph is rebuilt on every step with
``from_torch(..., keep_grad=True)`` (its weights are the parameters), and the engines keep autograd
(no in-place writes into tensors that require grad, no no_grad regions on the bound path; candidate
points of exact relaxation offsets carry no gradient, which loses nothing at a stationary point). Training
runs in the parameters' dtype (float32 for a default module); the certificates of a trained model come
from the float64 certification path (`certnn.Certifier`), never from these training-time bounds.

Library code never prints: pass ``progress(done_epochs, total_epochs, record)`` to follow a run.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..config import Config, parse_norm
from ..errors import ConfigError, DataError
from .margins import TRAIN_METHODS, margin_lower_bounds, param_dtype, robust_cross_entropy

TRAIN_NORMS = ("inf", "2")


@dataclass(frozen=True)
class RobustTrainConfig(Config):
    """Settings of :func:`train_robust` (``from_mapping`` rejects unknown keys)."""

    #: bound used in the robust loss: 'ibp', 'crown-ibp' or 'certrnn'
    method: str = "ibp"
    #: final training radius (in the norm below; per-feature weights from `frames`)
    eps: float = 0.1
    #: 'inf' or '2'
    norm: str = "inf"
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    #: epochs of clean training before the ramp
    warmup_epochs: int = 0
    #: epochs over which eps ramps 0 -> eps, kappa 1 -> kappa_final, beta 1 -> beta_final
    ramp_epochs: int = 5
    #: final weight of the clean loss (the robust loss has 1 - kappa)
    kappa_final: float = 0.5
    #: CROWN-IBP: final weight of the CROWN-IBP bound in beta * CROWN-IBP + (1 - beta) * IBP
    beta_final: float = 0.0
    #: sequence models (T, d): perturb only these frames (None: all), specs.frames.frame_scale
    frames: tuple[int, ...] | None = None
    #: split the model's first nn.Embedding off: x holds tokens (B, T), the ball is on the embeddings
    embedded: bool = False
    seed: int = 0
    #: input domain box (lo, hi) intersected with the ball (e.g. (0, 1) for pixels)
    clip: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in TRAIN_METHODS:
            raise ConfigError(f"RobustTrainConfig.method = {self.method!r} is not one of {', '.join(TRAIN_METHODS)}")
        norm = parse_norm(self.norm)
        if norm not in TRAIN_NORMS:
            raise ConfigError(f"RobustTrainConfig.norm = {self.norm!r}: training supports {', '.join(TRAIN_NORMS)}")
        object.__setattr__(self, "norm", norm)
        for name in ("eps", "lr", "kappa_final", "beta_final"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"RobustTrainConfig.{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        for name in ("epochs", "batch_size", "warmup_epochs", "ramp_epochs", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"RobustTrainConfig.{name} must be an integer, got {v!r}")
        if self.eps < 0:
            raise ConfigError("RobustTrainConfig.eps must be >= 0")
        if self.lr <= 0:
            raise ConfigError("RobustTrainConfig.lr must be > 0")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("RobustTrainConfig.epochs and batch_size must be >= 1")
        if self.warmup_epochs < 0 or self.ramp_epochs < 0:
            raise ConfigError("RobustTrainConfig.warmup_epochs and ramp_epochs must be >= 0")
        if self.warmup_epochs + self.ramp_epochs > self.epochs:
            raise ConfigError(f"RobustTrainConfig: warmup_epochs + ramp_epochs = "
                              f"{self.warmup_epochs + self.ramp_epochs} exceeds epochs = {self.epochs}")
        for name in ("kappa_final", "beta_final"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"RobustTrainConfig.{name} must lie in [0, 1]")
        if self.frames is not None:
            fr = (self.frames,) if isinstance(self.frames, int) else self.frames
            try:
                object.__setattr__(self, "frames", tuple(int(f) for f in fr))
            except (TypeError, ValueError):
                raise ConfigError(f"RobustTrainConfig.frames must be integers, got {self.frames!r}") from None
        if not isinstance(self.embedded, bool):
            raise ConfigError("RobustTrainConfig.embedded must be true or false")
        if self.clip is not None:
            if len(self.clip) != 2 or not float(self.clip[0]) < float(self.clip[1]):
                raise ConfigError("RobustTrainConfig.clip must be (lo, hi) with lo < hi")
            object.__setattr__(self, "clip", (float(self.clip[0]), float(self.clip[1])))


@dataclass(frozen=True)
class ScheduleValues:
    """eps, kappa (clean-loss weight) and beta (CROWN-IBP weight) of one step; robust=False: clean only."""

    eps: float
    kappa: float
    beta: float
    robust: bool


def schedule(cfg: RobustTrainConfig, step: int, steps_per_epoch: int) -> ScheduleValues:
    """Values at optimiser step `step` (0-based, over the whole run) with `steps_per_epoch` steps an epoch.

    Warm-up steps are clean. Ramp step r (0-based, of R = ramp_epochs * steps_per_epoch) has
    t = (r + 1) / R, later steps t = 1; then eps = t * eps_final, kappa = 1 - t (1 - kappa_final),
    beta = 1 - t (1 - beta_final). A run with eps_final = 0 is clean throughout."""
    warm = cfg.warmup_epochs * steps_per_epoch
    ramp = cfg.ramp_epochs * steps_per_epoch
    if step < warm or cfg.eps == 0.0:
        return ScheduleValues(0.0, 1.0, 1.0, False)
    r = step - warm
    t = 1.0 if r >= ramp else (r + 1) / ramp
    return ScheduleValues(t * cfg.eps, 1.0 - t * (1.0 - cfg.kappa_final), 1.0 - t * (1.0 - cfg.beta_final), True)


@dataclass(frozen=True)
class EpochLog:
    """Averages over one epoch's steps (robust_loss / verified_err over its robust steps, None if none);
    eps / kappa / beta are the values of the epoch's last step."""

    epoch: int
    steps: int
    eps: float
    kappa: float
    beta: float
    clean_loss: float
    clean_acc: float
    robust_loss: float | None
    #: fraction of the batch's samples whose training-time bounds do not prove every margin > 0
    verified_err: float | None
    loss: float
    seconds: float


@dataclass(frozen=True)
class TrainLog:
    config: RobustTrainConfig
    epochs: tuple[EpochLog, ...]
    seconds: float

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "epochs": [asdict(e) for e in self.epochs], "seconds": self.seconds}


Progress = Callable[[int, int, EpochLog], None]


def robust_loss_terms(model: nn.Module, x: Tensor, y: Tensor, input_shape: tuple[int, ...],
                      cfg: RobustTrainConfig, eps: float, beta: float = 1.0,
                      scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(robust cross-entropy, margin lower bounds (B, K-1)) of one batch at radius eps."""
    m = margin_lower_bounds(model, x, y, input_shape, cfg.method, eps, cfg.norm, beta, scale, cfg.clip,
                            cfg.embedded)
    return robust_cross_entropy(m), m


def _frame_scale(cfg: RobustTrainConfig, input_shape: tuple[int, ...], dtype: torch.dtype) -> Tensor | None:
    if cfg.frames is None:
        return None
    from ..specs.frames import frame_scale

    return frame_scale(input_shape, cfg.frames, dtype=dtype)


def train_robust(model: nn.Module, x: Tensor, y: Tensor, input_shape: tuple[int, ...],
                 cfg: RobustTrainConfig = RobustTrainConfig(), progress: Progress | None = None,
                 on_batch: Callable[[dict], None] | None = None) -> TrainLog:
    """Train `model` in place (Adam, lr, minibatches of batch_size, reshuffled every epoch with `seed`)
    on the loss of the module docstring; returns the per-epoch log and leaves the model in eval mode.

    x: (N, *input_shape) inputs (for embedded=True: integer tokens (N, T), and input_shape is the
    embedded (T, E)); y: (N,) labels. Deterministic for a given seed and thread count.
    """
    input_shape = tuple(int(s) for s in input_shape)
    x, y, dtype = _checked_data(model, x, y, input_shape, cfg)
    scale = _frame_scale(cfg, input_shape, dtype)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n = x.shape[0]
    spe = (n + cfg.batch_size - 1) // cfg.batch_size
    logs: list[EpochLog] = []
    t_run = time.perf_counter()
    step = 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        sums = {"clean": 0.0, "acc": 0.0, "robust": 0.0, "verr": 0.0, "loss": 0.0}
        n_all = n_rob = 0
        sv = schedule(cfg, step, spe)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb, yb = x[idx], y[idx]
            sv = schedule(cfg, step, spe)
            loss, robust = _batch_step(model, opt, xb, yb, input_shape, cfg, sv, scale, sums)
            n_rob += robust
            n_all += yb.shape[0]
            step += 1
            if on_batch is not None:  # {epoch, epochs, batch, batches, eps, loss}: the CLI's progress lines
                on_batch({"epoch": epoch + 1, "epochs": cfg.epochs, "batch": i // cfg.batch_size + 1, "batches": spe,
                          "eps": float(sv.eps), "loss": float(loss.detach())})
        rec = EpochLog(epoch + 1, spe, sv.eps, sv.kappa, sv.beta, sums["clean"] / n_all, sums["acc"] / n_all,
                       sums["robust"] / n_rob if n_rob else None, sums["verr"] / n_rob if n_rob else None,
                       sums["loss"] / n_all, time.perf_counter() - t0)
        logs.append(rec)
        if progress is not None:
            progress(epoch + 1, cfg.epochs, rec)
    model.eval()
    return TrainLog(cfg, tuple(logs), time.perf_counter() - t_run)


def _checked_data(model: nn.Module, x: Tensor, y: Tensor, input_shape: tuple[int, ...],
                  cfg: RobustTrainConfig) -> tuple[Tensor, Tensor, torch.dtype]:
    """(x in the parameters' dtype unless embedded, y as int64 (N,), that dtype), shapes checked."""
    y = torch.as_tensor(y).long().reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
    if not cfg.embedded and tuple(x.shape[1:]) != input_shape:
        raise DataError(f"inputs have shape {tuple(x.shape[1:])} per sample; input_shape is {input_shape}")
    dtype = param_dtype(model)
    if not cfg.embedded:
        x = x.to(dtype)
    return x, y, dtype


def _batch_step(model: nn.Module, opt, xb: Tensor, yb: Tensor, input_shape: tuple[int, ...],
                cfg: RobustTrainConfig, sv: ScheduleValues, scale: Tensor | None, sums: dict) -> tuple[Tensor, int]:
    """One Adam step on a minibatch (kappa clean + (1 - kappa) robust loss once the schedule says so); adds
    to the epoch's sums; returns (the loss, the number of samples with a robust term)."""
    opt.zero_grad()
    logits = model(xb)
    clean = nn.functional.cross_entropy(logits, yb)
    loss = clean
    b = yb.shape[0]
    n_rob = 0
    if sv.robust:
        rob, m = robust_loss_terms(model, xb, yb, input_shape, cfg, sv.eps, sv.beta, scale)
        loss = sv.kappa * clean + (1.0 - sv.kappa) * rob
        sums["robust"] += rob.item() * b
        sums["verr"] += (m <= 0).any(1).double().sum().item()
        n_rob = b
    loss.backward()
    opt.step()
    sums["clean"] += clean.item() * b
    sums["acc"] += (logits.argmax(1) == yb).double().sum().item()
    sums["loss"] += loss.item() * b
    return loss, n_rob


__all__ = ["RobustTrainConfig", "ScheduleValues", "schedule", "EpochLog", "TrainLog", "train_robust",
           "robust_loss_terms", "TRAIN_METHODS", "TRAIN_NORMS"]
