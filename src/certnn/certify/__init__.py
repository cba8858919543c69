"""User-facing certification procedures."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .bounds import CertifyResult, compute_bounds, to_graph  # noqa: F401
    from .radius import CertifyConfig, Certifier, RadiusConfig, RadiusResult, certified_radius, certify  # noqa: F401
    from .targets import TARGETS, margin_matrix, select_targets  # noqa: F401

#: where each public name lives (imported on first access: `certnn --help` does not import torch)
_EXPORTS = {
    "CertifyResult": ".bounds", "compute_bounds": ".bounds", "to_graph": ".bounds", "CertifyConfig": ".radius",
    "Certifier": ".radius", "RadiusConfig": ".radius", "RadiusResult": ".radius", "certified_radius": ".radius",
    "certify": ".radius", "TARGETS": ".targets", "margin_matrix": ".targets", "select_targets": ".targets",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
