"""Attacks: found adversarial examples, i.e. UPPER bounds on the minimal adversarial distortion.

``attack_radius`` runs the minimum-norm attack FMN by default (``fmn``) or the PGD radius search
(``pgd``, with a ``PGDConfig``).

Never reported as certified; see ``certnn.certify`` for proved lower bounds.
"""
from __future__ import annotations

from .fmn import FMNConfig, fmn_attack
from .pgd import AttackResult, PGDConfig, as_dtype, pgd_attack
from .projections import lp_norm, project_box_ball, project_l1_ball, project_l2_ball
from .radius import RadiusAttackResult, attack_radius

__all__ = [
    "AttackResult",
    "FMNConfig",
    "PGDConfig",
    "RadiusAttackResult",
    "as_dtype",
    "attack_radius",
    "fmn_attack",
    "lp_norm",
    "pgd_attack",
    "project_box_ball",
    "project_l1_ball",
    "project_l2_ball",
]
