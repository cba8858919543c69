"""Settings of the bound optimiser (alpha-CROWN)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..errors import ConfigError


@dataclass(frozen=True)
class AlphaConfig(Config):
    """alpha-CROWN's optimisation settings.

    iterations: bound evaluations (the first is CROWN's bound, each later one follows an Adam step on the
    relaxation parameters). lr / lr_decay: Adam's step size (for ReLU slopes; S-shaped tangent points and
    plane tilts take a fixed fraction of it, optimize/sshape_points.py, optimize/lines.py) and its decay per iteration. patience: a
    sample stops when the sum of its lower bounds has not improved for this many iterations (samples are
    stopped one by one, so a sample's bounds do not depend on its batch; the default never stops before
    20 iterations: stopping after 10 stale ones saved ~40% of the time on a 6x100 MNIST MLP for 0.25% of
    alpha's gain). stop_at: a sample also stops
    once every one of its lower bounds exceeds this value (e.g. 0 when only a proof is wanted; None never).
    intermediate: optimise the bounds of intermediate layers too, each with its own parameters per
    neuron (alpha-CROWN); False optimises the output's bound only, on CROWN's intermediate bounds.
    max_params: at most this many parameters per (backward pass, activation) pair; above it a pass's
    parameters are shared by its rows (sound, looser; bounds memory on wide conv layers).
    """

    iterations: int = 20
    lr: float = 0.5
    #: Adam step size of beta-CROWN's split multipliers (optimize/beta.py)
    beta_lr: float = 0.05
    lr_decay: float = 0.98
    patience: int = 20
    stop_at: float | None = None
    intermediate: bool = True
    max_params: int = 2 ** 25

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1:
            raise ConfigError("alpha iterations must be >= 1")
        if not self.lr > 0 or not self.beta_lr > 0 or not 0 < self.lr_decay <= 1:
            raise ConfigError("alpha lr must be > 0 and lr_decay in (0, 1]")
        if self.patience < 1 or self.max_params < 1:
            raise ConfigError("alpha patience and max_params must be >= 1")
