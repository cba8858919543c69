"""certnn: certified robustness of neural networks.

Public API (one re-export per name)::

    import certnn
    graph = certnn.from_torch(model, input_shape=(784,))
    iv = certnn.compute_bounds(graph, x, eps=0.01, norm="inf", method="crown")
    res = certnn.certified_radius(graph, x, y, norm="2", method="crown")
    log = certnn.train_robust(model, x_train, y_train, (784,), certnn.RobustTrainConfig(method="crown-ibp"))
"""
from __future__ import annotations

from . import _startup  # noqa: F401  (Ctrl-C during the command's start-up: exit 130, no traceback)
from .certify import (CertifyConfig, Certifier, CertifyResult, RadiusConfig, RadiusResult, certified_radius, certify,
                      compute_bounds)
from .domains import Interval
from .engine.methods import METHODS, Method, get_method, register_method
from .errors import (CertnnError, ConfigError, DataError, ModelImportError, SoundnessError, SpecError,
                     UnsupportedOpError)
from .graph import Graph
from .graph.from_torch import from_torch
from .graph.recurrent import embed_tokens
from .specs import LpBall, frame_scale
from .train.robust import RobustTrainConfig, TrainLog, train_robust

__version__ = "0.1.0"

__all__ = ["compute_bounds", "certify", "certified_radius", "Certifier", "CertifyConfig", "RadiusConfig",
           "RadiusResult", "CertifyResult", "Interval", "LpBall", "Graph", "from_torch", "embed_tokens", "frame_scale",
           "RobustTrainConfig", "TrainLog", "train_robust", "METHODS", "Method",
           "get_method", "register_method", "CertnnError", "ConfigError", "DataError", "ModelImportError",
           "SoundnessError", "SpecError", "UnsupportedOpError", "__version__"]
