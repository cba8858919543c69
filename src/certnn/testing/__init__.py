"""Soundness-testing helpers (public)."""
from .nets import random_cnn, random_mlp, random_relu_mlp
from .soundness import bound_violations, check_bounds_contain, pgd_against_bounds, sample_ball

__all__ = ["sample_ball", "check_bounds_contain", "pgd_against_bounds", "bound_violations", "random_relu_mlp",
           "random_mlp", "random_cnn"]
