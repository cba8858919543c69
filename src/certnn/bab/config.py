"""Settings of branch and bound (beta-CROWN on ReLU splits)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import Config
from ..errors import ConfigError
from ..optimize.config import AlphaConfig


@dataclass(frozen=True)
class BabConfig(Config):
    """root: alpha-CROWN at the root (intermediate bounds optimised too; its bounds are every sub-domain's
    starting intermediate bounds). domains: the optimiser of each round's sub-domains (alpha of the output
    and the split multipliers beta, warm-started from the parent). batch: sub-domains split per round
    (twice as many children are bounded in one batched computation). branching: 'fsb' (filtered smart
    branching: the `candidates` best neurons by the babsr score are tried and the one whose children's
    worse bound is best is split; fsb_reduce 'max': the one whose better child is best) or 'babsr' (the
    score alone). max_domains: the open sub-domains kept
    at most (beyond it the search gives up: unknown). attack_every: every this many rounds, a short PGD
    from the most violated sub-domains' points looks for counterexamples. finish: the optimiser of
    sub-domains with every unstable ReLU split (their exact bound is a linear program, which beta-CROWN
    reaches as beta converges: more and larger steps before giving up on them). recompute_intermediate:
    recompute every child's intermediate bounds (each intersected with the parent's, split neurons
    clipped) before bounding it, only the nodes after each round's shallowest split (bab/intermediate.py),
    with the root's optimised slopes (intermediate_lines 'alpha') or CROWN's lines ('crown'); a child
    whose recomputed bounds cannot meet its stored ones is empty and dropped as proved. Tighter per
    sub-domain but ~5x its cost on the VNN-COMP mnist_fc 256x4 net (docs/benchmarks.md: the worst open
    margin after 60 s about the same); off by default (beta carries the splits).

    refine: MILP-refined intermediate bounds before branching (bab/refine.py; ReLU MLPs only): 'auto'
    refines nets with at most refine_max_relus ReLU neurons whose root margin is below refine_below, 'on'
    every ReLU MLP, 'off' never. The unstable neurons of the first refine_layers layers with a ReLU
    upstream are tightened by one HiGHS solve per side (at most refine_solve_seconds each; the proved dual
    bound, never the incumbent), most influential first, within refine_share of the time left after the
    root: if refine_lp an LP pass (triangle relaxation) over every such neuron, then, if refine_milp, a
    MILP pass over those still unstable; then the root's alpha-CROWN runs again on the refined bounds."""

    root: AlphaConfig = AlphaConfig(iterations=50, lr=0.5)
    domains: AlphaConfig = AlphaConfig(iterations=10, lr=0.05, beta_lr=0.05)
    finish: AlphaConfig = AlphaConfig(iterations=200, lr=0.05, beta_lr=0.5, lr_decay=0.99)
    batch: int = 256
    branching: str = "fsb"
    candidates: int = 3
    fsb_reduce: str = "min"
    max_domains: int = 200_000
    attack_every: int = 4
    recompute_intermediate: bool = False
    intermediate_lines: str = "alpha"
    refine: str = "auto"
    refine_below: float = -10.0
    refine_share: float = 0.5
    refine_layers: int = 2
    refine_solve_seconds: float = 3.0
    refine_max_relus: int = 4096
    refine_lp: bool = False
    refine_milp: bool = True

    choices: ClassVar[dict] = {"branching": ("fsb", "babsr"), "fsb_reduce": ("min", "max"),
                               "intermediate_lines": ("alpha", "crown"), "refine": ("auto", "on", "off")}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch < 1 or self.candidates < 1 or self.max_domains < 1 or self.attack_every < 1:
            raise ConfigError("BabConfig: batch, candidates, max_domains and attack_every must be >= 1")
        if not 0 < self.refine_share <= 1 or self.refine_layers < 1 or self.refine_max_relus < 1:
            raise ConfigError("BabConfig: refine_share must be in (0, 1], refine_layers and refine_max_relus >= 1")
        if not self.refine_solve_seconds > 0:
            raise ConfigError("BabConfig: refine_solve_seconds must be > 0")
