"""certnn: certified robustness of neural networks.

Public API (one re-export per name)::

    import certnn
    graph = certnn.from_torch(model, input_shape=(784,))
    iv = certnn.compute_bounds(graph, x, eps=0.01, norm="inf", method="crown")
    res = certnn.certified_radius(graph, x, y, norm="2", method="crown")
    log = certnn.train_robust(model, x_train, y_train, (784,), certnn.RobustTrainConfig(method="crown-ibp"))

The names are imported on first use (``import certnn`` and ``certnn --help`` do not import torch).
"""
from __future__ import annotations

from . import _startup  # noqa: F401  (Ctrl-C during the command's start-up: exit 130, no traceback)
import sys
import types
from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .certify import (CertifyConfig, Certifier, CertifyResult, RadiusConfig, RadiusResult,  # noqa: F401
                          certified_radius, certify, compute_bounds)
    from .domains import Interval  # noqa: F401
    from .engine.methods import METHODS, Method, get_method, register_method  # noqa: F401
    from .errors import (CertnnError, ConfigError, DataError, ModelImportError, SoundnessError,  # noqa: F401
                         SpecError, UnsupportedOpError)
    from .graph import Graph  # noqa: F401
    from .graph.from_torch import from_torch  # noqa: F401
    from .graph.recurrent import embed_tokens  # noqa: F401
    from .specs import LpBall, frame_scale  # noqa: F401
    from .train.robust import RobustTrainConfig, TrainLog, train_robust  # noqa: F401

__version__ = "0.1.0"

_EXPORTS = {
    **dict.fromkeys(["CertifyConfig", "Certifier", "CertifyResult", "RadiusConfig", "RadiusResult",
                     "certified_radius", "compute_bounds"], ".certify"),
    "Interval": ".domains",
    **dict.fromkeys(["METHODS", "Method", "get_method", "register_method"], ".engine.methods"),
    **dict.fromkeys(["CertnnError", "ConfigError", "DataError", "ModelImportError", "SoundnessError", "SpecError",
                     "UnsupportedOpError"], ".errors"),
    "Graph": ".graph", "from_torch": ".graph.from_torch", "embed_tokens": ".graph.recurrent",
    "LpBall": ".specs", "frame_scale": ".specs",
    **dict.fromkeys(["RobustTrainConfig", "TrainLog", "train_robust"], ".train.robust"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _Package(types.ModuleType):
    """`certnn.certify` is the function, as before lazy imports: importing the subpackage certnn.certify
    binds the module to this name; the setter keeps the function (the module stays sys.modules'
    'certnn.certify')."""

    @property
    def certify(self):  # noqa: D401
        from .certify.radius import certify

        return certify

    @certify.setter
    def certify(self, value) -> None:
        pass


sys.modules[__name__].__class__ = _Package

__all__ = ["compute_bounds", "certify", "certified_radius", "Certifier", "CertifyConfig", "RadiusConfig",
           "RadiusResult", "CertifyResult", "Interval", "LpBall", "Graph", "from_torch", "embed_tokens", "frame_scale",
           "RobustTrainConfig", "TrainLog", "train_robust", "METHODS", "Method",
           "get_method", "register_method", "CertnnError", "ConfigError", "DataError", "ModelImportError",
           "SoundnessError", "SpecError", "UnsupportedOpError", "__version__"]
