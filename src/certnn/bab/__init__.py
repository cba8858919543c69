"""Branch and bound on ReLU splits with beta-CROWN bounds (complete verification).

    from certnn.bab import BabConfig, Problem, branch_and_bound
"""
from .config import BabConfig
from .driver import BabResult, Problem, branch_and_bound

__all__ = ["BabConfig", "BabResult", "Problem", "branch_and_bound"]
