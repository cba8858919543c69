"""Attacks: found adversarial examples, i.e. UPPER bounds on the minimal adversarial distortion.

Never reported as certified; see ``certnn.certify`` for proved lower bounds.
"""
from __future__ import annotations

from .pgd import AttackResult, PGDConfig, as_dtype, pgd_attack
from .projections import lp_norm, project_box_ball, project_l1_ball, project_l2_ball
from .radius import RadiusAttackResult, attack_radius

__all__ = [
    "AttackResult",
    "PGDConfig",
    "RadiusAttackResult",
    "as_dtype",
    "attack_radius",
    "lp_norm",
    "pgd_attack",
    "project_box_ball",
    "project_l1_ball",
    "project_l2_ball",
]
