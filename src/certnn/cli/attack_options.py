"""The attack flags shared by `radius --attack`, `attack`, `compare --attack` and `report --attack`:
--attack-method fmn|pgd (FMN, the minimum-norm attack, is the default), --attack-steps, --attack-restarts."""
from __future__ import annotations

#: defaults per method: (steps, restarts)
DEFAULTS = {"fmn": (50, 3), "pgd": (100, 5)}
METHOD_NAMES = {"fmn": "FMN", "pgd": "PGD bisection"}


def add_attack_args(g, steps_flag: str = "--attack-steps", restarts_flag: str = "--attack-restarts") -> None:
    """Add --attack-method and the step / restart flags (flag names given for commands that spell them
    without the prefix) to an argparse group."""
    g.add_argument("--attack-method", default="fmn", choices=sorted(DEFAULTS),
                   help="fmn: minimum-norm attack, one run gives a distance; pgd: PGD at fixed radii, bisected "
                        "(slower, the previous default)")
    g.add_argument(steps_flag, dest="attack_steps", type=int, default=None,
                   help="attack steps per run (fmn: 50, pgd: 100 per bisection step)")
    g.add_argument(restarts_flag, dest="attack_restarts", type=int, default=None,
                   help="attack restarts per sample (fmn: 3, pgd: 5)")


def attack_config(args):
    """FMNConfig or PGDConfig from the flags."""
    from ..attacks import FMNConfig, PGDConfig

    method = getattr(args, "attack_method", "fmn")
    steps_d, restarts_d = DEFAULTS[method]
    steps = steps_d if args.attack_steps is None else args.attack_steps
    restarts = restarts_d if args.attack_restarts is None else args.attack_restarts
    if method == "pgd":
        return PGDConfig(steps=steps, restarts=restarts, seed=getattr(args, "seed", 0))
    return FMNConfig(steps=steps, restarts=restarts)


def attack_name(config) -> str:
    """'FMN' or 'PGD bisection' for tables."""
    from ..attacks import PGDConfig

    return METHOD_NAMES["pgd" if isinstance(config, PGDConfig) else "fmn"]
