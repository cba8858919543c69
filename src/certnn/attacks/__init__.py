"""Attacks: found adversarial examples, i.e. UPPER bounds on the minimal adversarial distortion.

``attack_radius`` runs the minimum-norm attack FMN by default (``fmn``) or the PGD radius search
(``pgd``, with a ``PGDConfig``).

Never reported as certified; see ``certnn.certify`` for proved lower bounds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .fmn import FMNConfig, fmn_attack  # noqa: F401
    from .pgd import AttackResult, PGDConfig, as_dtype, pgd_attack  # noqa: F401
    from .projections import lp_norm, project_box_ball, project_l1_ball, project_l2_ball  # noqa: F401
    from .radius import RadiusAttackResult, attack_radius  # noqa: F401

#: where each public name lives (imported on first access: `certnn --help` does not import torch)
_EXPORTS = {
    "FMNConfig": ".fmn", "fmn_attack": ".fmn",
    "AttackResult": ".pgd", "PGDConfig": ".pgd", "as_dtype": ".pgd", "pgd_attack": ".pgd",
    "lp_norm": ".projections", "project_box_ball": ".projections", "project_l1_ball": ".projections",
    "project_l2_ball": ".projections", "RadiusAttackResult": ".radius", "attack_radius": ".radius",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
