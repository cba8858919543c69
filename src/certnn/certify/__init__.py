"""User-facing certification procedures."""
from .bounds import CertifyResult, compute_bounds, to_graph
from .radius import CertifyConfig, Certifier, RadiusConfig, RadiusResult, certified_radius, certify
from .targets import TARGETS, margin_matrix, select_targets

__all__ = ["compute_bounds", "to_graph", "CertifyResult", "CertifyConfig", "Certifier", "RadiusConfig",
           "RadiusResult", "certified_radius", "certify", "TARGETS", "margin_matrix", "select_targets"]
